# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports watcher's configuration and policy: what it may touch, checked before it touches it.

The watcher's blast radius is its task cgroups. A task's cgroup must lie strictly below
``cgroup_root``, may not contain another task's cgroup, and may not contain the watcher's own: the
same checks (and messages) for the daemon's ``--check``, its reloads, and the controller's policy
check (``policy.py``).

Policy files come from a directory others write into, so they are read as untrusted input: never
through a symbolic link, regular files only, at most ``MAX_POLICY_BYTES``, a file that changes while
it is read is not used, and no error quotes a file's text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import stat
import unicodedata

from . import portranges
from .errors import ValidationError

MODES = ("audit", "enforce", "prevent")
DEFAULTS = {
    "watch_interval": 30.0, "include_udp": False, "agent_port_range": "31000-32000",
    "check_agent_port_range_only": False, "isolated_port_range": None, "mode": "audit", "policy_dir": None,
    "tasks": [], "event_log": None, "metrics_listen": None, "metrics_textfile": None, "cgroup_root": None,
    "syslog": True,
}
ALL_PORTS = [(1, 65535)]
MAX_POLICY_BYTES = 1 << 20
POLICY_SUFFIXES = (".json", ".yml", ".yaml")
# systemd's unit name alphabet (systemd.unit(5)); the name is also an argument to systemctl
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,255}\Z")


class PolicyChanging(Exception):
    """A policy file changed while it was read: it is read again at the next scan."""


def _shown(value):
    """A value for an error message: repr, cut short (a message is one line of a log)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def task_cgroup(field, value):
    """The cgroup path of a task, relative to ``cgroup_root`` and normalised ('mesos/web-1').

    Refused: anything but a string, NUL and other control or invisible characters, text that is
    not a file name, '..', and a path that is empty or names the root itself ('/', '.', '//',
    '/./'): enforce mode kills every process of a task's cgroup tree.
    """
    if not isinstance(value, str):
        raise ValidationError(field, "%s is not a cgroup path (a string like mesos/web-1)" % _shown(value))
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise ValidationError(field, "%s contains the control or invisible character %r; a cgroup path "
                                         "is printable text" % (_shown(value), char))
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValidationError(field, "%s contains '..'; a task's cgroup lies below cgroup_root" % _shown(value))
    if not parts:
        raise ValidationError(field, "%s is the cgroup root; a task's cgroup must lie below it (enforce mode "
                                     "kills every process of a task's cgroup)" % _shown(value))
    if not "".join(parts).strip():
        raise ValidationError(field, "%s is blank, not a cgroup path" % _shown(value))
    return "/".join(parts)


def systemd_unit(field, value):
    """A systemd unit name; what systemd reports as its cgroup is checked with task_cgroup."""
    if not isinstance(value, str) or not _UNIT_RE.match(value):
        raise ValidationError(field, "%s is not a systemd unit name (letters, digits and :_.\\@-)" % _shown(value))
    return value


def contains(outer, inner):
    """Whether cgroup path ``outer`` is ``inner`` or one of its ancestors (normalised relative paths)."""
    return inner == outer or inner.startswith(outer + "/")


def nested(paths):
    """(i, j) for each path i that is or contains path j (i != j), from a list of normalised paths.

    Sorted, every cgroup's descendants follow it contiguously, so one pass with a stack of the
    open ancestors finds each path's nearest enclosing one.
    """
    order = sorted(range(len(paths)), key=lambda i: (paths[i] + "/", i))
    pairs, stack = [], []
    for j in order:
        while stack and not contains(paths[stack[-1]], paths[j]):
            stack.pop()
        if stack:
            pairs.append((stack[-1], j))
        stack.append(j)
    return pairs


def check_task_cgroups(tasks, own=None):
    """ValidationError for the first task (in policy order) whose cgroup contains or is another
    task's, or contains ``own`` (the watcher's own cgroup, relative to cgroup_root)."""
    fixed = [t for t in tasks if t.cgroup is not None]
    problems = []
    for i, j in nested([t.cgroup for t in fixed]):
        outer, inner = fixed[i], fixed[j]
        if outer.cgroup == inner.cgroup:          # the same cgroup twice: the later one is refused
            outer, inner = (outer, inner) if tasks.index(outer) > tasks.index(inner) else (inner, outer)
        problems.append((tasks.index(outer), "%s.cgroup" % outer.field, "%s %s the cgroup of task %r (%s); a "
                         "task's cgroup may not contain another's" % (
                             _shown(outer.cgroup), "is also" if outer.cgroup == inner.cgroup else "contains",
                             inner.name, inner.field)))
    if own is not None:
        for task in fixed:
            if contains(task.cgroup, own):
                problems.append((tasks.index(task), "%s.cgroup" % task.field,
                                 "%s contains the watcher's own cgroup (%s)" % (_shown(task.cgroup), own)))
    if problems:
        _index, field, reason = min(problems)
        raise ValidationError(field, reason)


class Task:
    __slots__ = ("name", "cgroup", "systemd_unit", "ports", "ports_text", "source", "field")

    def __init__(self, data, field, source):
        if not isinstance(data, dict):
            raise ValidationError(field, "a task is a mapping with name, cgroup (or systemd_unit) and ports (a policy "
                                         "file holds one task, or a list of them)")
        unknown = sorted(set(data) - {"name", "cgroup", "systemd_unit", "ports"}, key=str)
        if unknown:
            raise ValidationError("%s.%s" % (field, unknown[0]), "unknown key (use name, cgroup, systemd_unit, ports)")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("%s.name" % field, "required, a non-empty string")
        self.name = name
        self.field = field
        if (data.get("cgroup") is None) == (data.get("systemd_unit") is None):
            raise ValidationError("%s.cgroup" % field, "give exactly one of cgroup and systemd_unit")
        self.cgroup = self.systemd_unit = None
        if data.get("cgroup") is not None:
            self.cgroup = task_cgroup("%s.cgroup" % field, data["cgroup"])
        else:
            self.systemd_unit = systemd_unit("%s.systemd_unit" % field, data["systemd_unit"])
        self.ports = portranges.parse("%s.ports" % field, data.get("ports", []), low=1)
        self.ports_text = portranges.format_set(self.ports)
        self.source = source


class Config:
    def __init__(self, data, source="config"):
        if not isinstance(data, dict):
            raise ValidationError("config", "%s is not a mapping of options" % source)
        unknown = sorted(set(data) - set(DEFAULTS), key=str)
        if unknown:
            raise ValidationError(str(unknown[0]), "unknown option (known: %s)" % ", ".join(sorted(DEFAULTS)))
        opts = dict(DEFAULTS, **data)
        interval = opts["watch_interval"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0.1:
            raise ValidationError("watch_interval", "%r is not a number of seconds >= 0.1" % (interval,))
        self.watch_interval = float(interval)
        for key in ("include_udp", "check_agent_port_range_only", "syslog"):
            if not isinstance(opts[key], bool):
                raise ValidationError(key, "%r is not true or false" % (opts[key],))
        self.include_udp = opts["include_udp"]
        self.check_agent_port_range_only = opts["check_agent_port_range_only"]
        self.syslog = opts["syslog"]
        self.agent_port_range = portranges.parse("agent_port_range", opts["agent_port_range"], low=1)
        self.isolated_port_range = None
        if opts["isolated_port_range"] is not None:
            if self.check_agent_port_range_only:
                raise ValidationError("isolated_port_range", "is mutually exclusive with check_agent_port_range_only")
            self.isolated_port_range = portranges.parse("isolated_port_range", opts["isolated_port_range"], low=1)
        if opts["mode"] not in MODES:
            raise ValidationError("mode", "%r is not one of %s" % (opts["mode"], ", ".join(MODES)))
        self.mode = opts["mode"]
        for key in ("policy_dir", "event_log", "metrics_textfile", "cgroup_root"):
            value = opts[key]
            if value is not None and (not isinstance(value, str) or not value.startswith("/") or "\0" in value):
                raise ValidationError(key, "%r is not an absolute path" % (value,))
        self.policy_dir = opts["policy_dir"]
        self.event_log = opts["event_log"]
        self.metrics_textfile = opts["metrics_textfile"]
        self.metrics_listen = None
        if opts["metrics_listen"] is not None:
            host, _sep, port = str(opts["metrics_listen"]).rpartition(":")
            if host not in ("127.0.0.1", "::1", "localhost", "[::1]") or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValidationError("metrics_listen", "%r is not a loopback address:port like 127.0.0.1:9613"
                                      % (opts["metrics_listen"],))
            self.metrics_listen = (host.strip("[]"), int(port))
        self.cgroup_root = opts["cgroup_root"]
        if not isinstance(opts["tasks"], list):
            raise ValidationError("tasks", "is not a list of tasks")
        self.inline_tasks = opts["tasks"]

    def considered(self):
        """The ports the watcher checks (Mesos: the agent range, the isolated range, or all)."""
        if self.check_agent_port_range_only:
            return self.agent_port_range
        if self.isolated_port_range is not None:
            return self.isolated_port_range
        return ALL_PORTS


# -- reading files -------------------------------------------------------------------------------

def file_signature(st):
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_file(path, field, follow=True, expect=None):
    """The bytes of a regular file of at most MAX_POLICY_BYTES, read in one consistent state
    (and, given ``expect``, the state the caller saw: its file_signature).

    O_NONBLOCK: opening a FIFO must not wait for a writer; the file type is checked on the open
    descriptor (fstat), so nothing can be swapped in between. A file whose identity, size or mtime
    differ after the read was being written: PolicyChanging.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        if not follow:  # devices and FIFOs are not even opened
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise ValidationError(field, "%s is a symbolic link; policy files are read only as regular files"
                                      % path)
            if not stat.S_ISREG(mode):
                raise ValidationError(field, "%s is not a regular file" % path)
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT and expect is not None:
            raise PolicyChanging(path)  # removed since it was listed
        if exc.errno == errno.ELOOP and not follow:
            raise ValidationError(field, "%s is a symbolic link; policy files are read only as regular files" % path)
        raise ValidationError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise ValidationError(field, "%s is not a regular file" % path)
        if before.st_size > MAX_POLICY_BYTES:
            raise ValidationError(field, "%s is larger than %d bytes" % (path, MAX_POLICY_BYTES))
        chunks, size = [], 0
        while size <= MAX_POLICY_BYTES:
            chunk = os.read(fd, MAX_POLICY_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_POLICY_BYTES:
            raise ValidationError(field, "%s is larger than %d bytes" % (path, MAX_POLICY_BYTES))
        after = os.fstat(fd)
        try:
            now = os.stat(path) if follow else os.lstat(path)
        except OSError:
            raise PolicyChanging(path)
        if not file_signature(before) == file_signature(after) == file_signature(now) or size != after.st_size or (
                expect is not None and file_signature(now) != expect):
            raise PolicyChanging(path)
        return b"".join(chunks)
    except OSError as exc:
        raise ValidationError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    finally:
        os.close(fd)


def parse_document(data, path, field):
    """A JSON or YAML document; errors give a position, never the text (a file may be secret)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(field, "%s is not UTF-8 text (byte %d)" % (path, exc.start))
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValidationError(field, "%s is not valid JSON: %s (line %d, column %d)"
                                  % (path, getattr(exc, "msg", "syntax error"), getattr(exc, "lineno", 0),
                                     getattr(exc, "colno", 0)))
    try:
        import yaml
    except ImportError:
        raise ValidationError(field, "%s is YAML but PyYAML is not installed (python3-yaml); use JSON" % path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        raise ValidationError(field, "%s is not valid YAML%s" % (path, where))


def read_config(path):
    return Config(parse_document(read_file(path, "config"), path, "config"), path)


def policy_files(config):
    """{file name: (ino, size, mtime)} of the drop-ins in policy_dir (lstat: links are not followed)."""
    if config.policy_dir is None:
        return {}
    try:
        names = os.listdir(config.policy_dir)
    except OSError:
        return {}
    found = {}
    for fname in names:
        if fname.startswith(".") or not fname.endswith(POLICY_SUFFIXES):
            continue
        try:
            found[fname] = file_signature(os.lstat(os.path.join(config.policy_dir, fname)))
        except OSError:
            continue
    return found


def load_policy(config, own=None, files=None):
    """Every task: the config's own list, then the files in policy_dir (sorted by name), each one task
    (a mapping) or a list of tasks (the role writes all of its tasks into one file).

    ``own`` is the watcher's own cgroup relative to cgroup_root (None when it is not below it);
    ``files`` what policy_files found, which is what must be read (else PolicyChanging).
    Raises ValidationError (the policy is refused as a whole) or PolicyChanging.
    """
    tasks, names = [], {}
    entries = [(t, "tasks[%d]" % i, "config") for i, t in enumerate(config.inline_tasks)]
    files = policy_files(config) if files is None else files
    for fname in sorted(files):
        path = os.path.join(config.policy_dir, fname)
        document = parse_document(read_file(path, path, follow=False, expect=files[fname]), path, path)
        if isinstance(document, list):
            entries.extend((data, "%s[%d]" % (path, i), path) for i, data in enumerate(document))
        else:
            entries.append((document, path, path))
    for data, field, source in entries:
        task = Task(data, field, source)
        if task.name in names:
            raise ValidationError(field + ".name", "task %r is also defined in %s" % (task.name, names[task.name]))
        names[task.name] = source
        tasks.append(task)
    check_task_cgroups(tasks, own)
    return tasks
