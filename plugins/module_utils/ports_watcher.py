# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports watcher on a host: its configuration, policy and systemd unit, and its service, in one call.

The front door is the ``ports_watcher`` module (the daemon itself is ``watcher.py``); the role copies
the executable first and hands everything else to one run of it. ``spec`` checks the input (no host
I/O), ``read_state`` reads the files and asks systemd once, ``plan`` is pure (spec and state in, the
actions with their sentences and diff out), ``apply`` runs a plan. ``converge`` does all four.

Every file is written beside its destination under a name starting with '.' (the watcher and systemd
ignore those), then renamed over it. A configuration or policy the executable refuses
(``--config FILE --check``) fails before anything is written. The service is restarted when its
configuration, unit or executable changed (or changed since its main process started: a run that
failed after the executable's copy does not leave the old one running), reloaded when only the
policy changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

from .errors import ApplyError, HostnetError, ValidationError
from .watcher_policy import POLICY_SUFFIXES

POLICY_NAME = "ansible.json"
OLD_POLICY_RE = re.compile(r"^ansible-.*\.json\Z")  # the earlier one-file-per-task layout
OLD_SOURCES = ("src/hostnet_core", "src/__main__.py")  # where earlier versions built the executable on the host
FILE_MODE = 0o644
DIR_MODE = 0o755
RUNNING = ("active", "reloading")
# systemd's unit name alphabet (systemd.unit(5)), without the .service suffix and not an option
_SERVICE_RE = re.compile(r"^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]{0,246}\Z")
PROPERTIES = ("LoadState", "ActiveState", "UnitFileState", "MainPID", "ExecMainStartTimestampMonotonic",
              "NeedDaemonReload")

OPTIONS = {
    "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
    "service": {"type": "str", "default": "hostnet-ports-watcher"},
    "config": {"type": "dict"},
    "config_file": {"type": "path", "default": "/etc/hostnet/ports-watcher.json"},
    "policy": {"type": "list", "elements": "dict", "default": []},
    "unit": {"type": "str"},
    "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
    "executable": {"type": "path", "default": "/usr/local/sbin/hostnet-ports-watcher"},
    "python": {"type": "path", "default": "/usr/bin/python3"},
    "executable_changed": {"type": "bool", "default": False},
    "old_lib_dir": {"type": "path"},
    "executable_content": {"type": "str", "no_log": True},
    "packages": {"type": "list", "elements": "str", "default": []},
    "report": {"type": "bool", "default": False},
}
EXECUTABLE_MODE = 0o755
# Debian's package name alphabet (deb-src-control(5)), with an optional :arch
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?\Z")
REPORT_TIMEOUT = 120


def dump_json(value):
    """The text written for a configuration or policy: Ansible's to_nice_json(indent=2) and a newline, so the
    files an earlier version of the role wrote read as unchanged."""
    return json.dumps(value, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


class Spec:
    """The validated input (see OPTIONS); paths of the files it writes, and their texts."""

    def __init__(self, params):
        given = params
        params = dict((key, option.get("default")) for key, option in OPTIONS.items())
        params.update((key, value) for key, value in given.items() if value is not None)
        self.state = params["state"]
        if self.state not in ("started", "stopped"):
            raise ValidationError("state", "%r is not started or stopped" % (self.state,))
        self.service = params["service"]
        if not isinstance(self.service, str) or not _SERVICE_RE.match(self.service):
            raise ValidationError("service", "%r is not a systemd unit name (letters, digits, ':_.\\@-', not "
                                             "starting with '-')" % (self.service,))
        if self.service.endswith(".service"):
            raise ValidationError("service", "%r: give the name without .service" % self.service)
        for key in ("config_file", "unit_dir", "executable", "python", "old_lib_dir"):
            value = params[key]
            if value is not None and (not isinstance(value, str) or not os.path.isabs(value) or "\0" in value):
                raise ValidationError(key, "%r is not an absolute path" % (value,))
            setattr(self, key, os.path.normpath(value) if value is not None else None)
        self.executable_changed = bool(params.get("executable_changed", False))
        self.executable_bytes = None
        content = params.get("executable_content")
        if content is not None:
            try:
                self.executable_bytes = base64.b64decode(content.encode("ascii") if isinstance(content, str)
                                                         else content, validate=True)
            except (binascii.Error, ValueError, TypeError, UnicodeError) as exc:
                raise ValidationError("executable_content", "is not base64: %s" % exc)
            if not self.executable_bytes:
                raise ValidationError("executable_content", "is empty")
        self.packages = list(params.get("packages") or [])
        for i, name in enumerate(self.packages):
            if not isinstance(name, str) or not _PACKAGE_RE.match(name):
                raise ValidationError("packages[%d]" % i, "%r is not a Debian package name" % (name,))
        self.report = bool(params.get("report", False))
        self.unit_path = os.path.join(self.unit_dir, self.service + ".service")
        self.config = params.get("config")
        self.policy = params.get("policy") or []
        self.unit = params.get("unit")
        self.config_text = self.policy_text = self.policy_dir = self.policy_path = self.event_log_dir = None
        if self.state == "stopped":
            return  # only the service: the files are left as they are
        if not isinstance(self.config, dict):
            raise ValidationError("config", "required with state=started, a mapping of the watcher's options")
        if not isinstance(self.unit, str) or not self.unit.strip():
            raise ValidationError("unit", "required with state=started, the text of the systemd unit")
        if not isinstance(self.policy, list):
            raise ValidationError("policy", "is not a list of tasks")
        for i, task in enumerate(self.policy):
            if not isinstance(task, dict):
                raise ValidationError("policy[%d]" % i, "a task is a mapping with name, cgroup (or systemd_unit) and "
                                                        "ports")
        policy_dir = self.config.get("policy_dir")
        if policy_dir is not None:
            if not isinstance(policy_dir, str) or not os.path.isabs(policy_dir) or "\0" in policy_dir:
                raise ValidationError("config.policy_dir", "%r is not an absolute path" % (policy_dir,))
            self.policy_dir = os.path.normpath(policy_dir)
            self.policy_path = os.path.join(self.policy_dir, POLICY_NAME)
        elif self.policy:
            raise ValidationError("config.policy_dir", "required with a policy: it is written to "
                                                       "<policy_dir>/%s" % POLICY_NAME)
        event_log = self.config.get("event_log")
        if isinstance(event_log, str) and os.path.isabs(event_log) and "\0" not in event_log:
            self.event_log_dir = os.path.dirname(os.path.normpath(event_log))
        for field, value in (("config", self.config), ("policy", self.policy)):
            try:
                text = dump_json(value)
            except (TypeError, ValueError) as exc:
                raise ValidationError(field, "cannot be written as JSON: %s" % exc)
            setattr(self, field + "_text", text)
        if not self.policy_dir:
            self.policy_text = None
        if self.policy_path in (self.config_file, self.unit_path) or self.config_file == self.unit_path:
            raise ValidationError("config_file", "the configuration, the policy (%s) and the unit (%s) need three "
                                                 "different paths" % (self.policy_path, self.unit_path))

    def targets(self):
        """(field, path, text) of each file written with state=started."""
        out = [("config", self.config_file, self.config_text)]
        if self.policy_path:
            out.append(("policy", self.policy_path, self.policy_text))
        out.append(("unit", self.unit_path, self.unit))
        return out

    def directories(self):
        """(field, directory) of each directory that must exist: the files' and the event log's (systemd's
        LogsDirectory= adopts one below /var/log)."""
        fields = {"config": "config_file", "policy": "config.policy_dir", "unit": "unit_dir"}
        dirs = [(fields[field], os.path.dirname(path)) for field, path, _text in self.targets()]
        if self.event_log_dir:
            dirs.append(("config.event_log", self.event_log_dir))
        if self.executable_bytes is not None:
            dirs.append(("executable", os.path.dirname(self.executable)))
        return dirs


def spec(params):
    return Spec(params)


class State:
    """What read_state found: plain data, so plan() can be tested without a host.

    ``files``: {path: (text, mode) or None}; ``missing_dirs``: directories to make, parents first;
    ``old_policy``: (path, text) of the ansible-*.json files in the policy directory; ``old_sources``: earlier versions' sources
    present; ``mtimes``: {"executable"|"config"|"unit": st_mtime or None}; ``service``: systemctl show's
    properties; ``main_started``: when the service's main process started (time.time() scale) or None;
    ``executable_sha256``: the installed executable's (None when missing or not asked); ``missing_packages``: of
    the spec's packages, those dpkg does not list as installed.
    """

    def __init__(self, files=None, missing_dirs=(), old_policy=(), old_sources=(), mtimes=None, service=None,
                 main_started=None, executable_sha256=None, missing_packages=()):
        self.executable_sha256 = executable_sha256
        self.missing_packages = list(missing_packages)
        self.files = dict(files or {})
        self.missing_dirs = list(missing_dirs)
        self.old_policy = list(old_policy)
        self.old_sources = list(old_sources)
        self.mtimes = dict(mtimes or {})
        self.service = dict(service or {})
        self.main_started = main_started


def _read_text(path, field):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValidationError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(field, "%s is not a regular file" % path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValidationError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    return data.decode("utf-8", "surrogateescape"), stat.S_IMODE(st.st_mode)


def _missing_dirs(dirs):
    missing = []
    for field, path in dirs:
        while path not in missing:
            if os.path.isdir(path):
                break
            if os.path.lexists(path):
                raise ValidationError(field, "%s is not a directory" % path)
            missing.append(path)
            path = os.path.dirname(path)
    return sorted(set(missing), key=lambda p: (p.count("/"), p))


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def systemctl(*argv):
    """systemctl's exit status and output (stdout and stderr together)."""
    try:
        # AnsibleModule.run_command has no timeout: a hung systemd must fail the task, not hang it.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(("systemctl",) + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False, timeout=300)
    except OSError as exc:
        raise ApplyError("service", "cannot run systemctl: %s" % (exc.strerror or exc))
    except subprocess.TimeoutExpired:
        raise ApplyError("service", "systemctl %s did not finish in 300 s" % " ".join(argv))
    return proc.returncode, proc.stdout.strip()


def service_properties(name):
    code, out = systemctl("show", name + ".service", "--property=" + ",".join(PROPERTIES))
    if code != 0:
        raise ApplyError("service", "systemctl show %s.service: %s" % (name, out))
    props = {}
    for line in out.splitlines():
        key, _sep, value = line.partition("=")
        props[key] = value
    return props


def _main_started(props):
    """When the main process started, on time.time()'s scale (systemd gives CLOCK_MONOTONIC microseconds)."""
    try:
        monotonic_us = int(props.get("ExecMainStartTimestampMonotonic") or 0)
        pid = int(props.get("MainPID") or 0)
    except ValueError:
        return None
    if not monotonic_us or not pid:
        return None
    return time.time() - (time.clock_gettime(time.CLOCK_MONOTONIC) - monotonic_us / 1e6)


def _sha256(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValidationError("executable", "cannot read %s: %s" % (path, exc.strerror or exc))


def missing_packages(names):
    """Of ``names``, the Debian packages dpkg does not list as installed."""
    if not names:
        return []
    try:
        # AnsibleModule.run_command has no timeout: a hung dpkg-query must fail the task, not hang it.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n"] + list(names),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              check=False, timeout=60)
    except OSError as exc:
        raise ValidationError("packages", "cannot ask dpkg-query which are installed (%s): install %s yourself and "
                                          "give packages: []" % (exc.strerror or exc, ", ".join(names)))
    except subprocess.TimeoutExpired:
        raise ValidationError("packages", "dpkg-query did not finish in 60 s")
    installed = set()
    for line in proc.stdout.splitlines():
        name, _sep, status = line.partition(" ")
        if status.startswith("ii"):
            installed.add(name)
    return [name for name in names if name.split(":")[0] not in installed]


def read_state(sp):
    service = service_properties(sp.service)
    if sp.state == "stopped":
        return State(service=service)
    files = {}
    for field, path, _text in sp.targets():
        files[path] = _read_text(path, field)
    old_policy = []
    if sp.policy_dir and os.path.isdir(sp.policy_dir):
        for name in sorted(os.listdir(sp.policy_dir)):
            path = os.path.join(sp.policy_dir, name)
            if OLD_POLICY_RE.match(name) and not os.path.isdir(path):
                found = None if os.path.islink(path) else _read_text(path, "config.policy_dir")
                old_policy.append((path, found[0] if found else ""))
    old_sources = [os.path.join(sp.old_lib_dir, rel) for rel in OLD_SOURCES
                   if sp.old_lib_dir and os.path.lexists(os.path.join(sp.old_lib_dir, rel))]
    return State(files=files, missing_dirs=_missing_dirs(sp.directories()), old_policy=old_policy,
                 old_sources=old_sources,
                 mtimes={"executable": _mtime(sp.executable), "config": _mtime(sp.config_file),
                         "unit": _mtime(sp.unit_path)},
                 service=service, main_started=_main_started(service),
                 executable_sha256=_sha256(sp.executable) if sp.executable_bytes is not None else None,
                 missing_packages=missing_packages(sp.packages))


class Plan:
    """``steps``: (kind, argument, sentence) in the order they run; kinds: mkdir, write (argument: (field, path,
    text)), chmod, remove, daemon-reload, enable, start, restart, reload, stop, disable."""

    def __init__(self):
        self.steps = []
        self.diff = []
        self.active_state = None  # what it is after the plan ran

    def add(self, kind, argument, sentence):
        self.steps.append((kind, argument, sentence))

    @property
    def changes(self):
        return [sentence for _kind, _argument, sentence in self.steps]

    @property
    def changed(self):
        return bool(self.steps)

    @property
    def action(self):
        for kind, _argument, _sentence in self.steps:
            if kind in ("start", "restart", "reload", "stop"):
                return kind
        return None

    @property
    def installs_executable(self):
        return any(kind == "install" for kind, _argument, _sentence in self.steps)

    def written(self, field):
        return any(kind == "write" and argument[0] == field for kind, argument, _sentence in self.steps)


WHAT = {"config": "its configuration", "policy": "its policy", "unit": "its unit", "executable": "its executable"}


def plan(sp, state):
    """The steps that bring the host to ``sp`` from ``state`` (pure)."""
    out = Plan()
    svc = state.service
    name = sp.service + ".service"
    active = svc.get("ActiveState") or "inactive"
    known = svc.get("LoadState") not in (None, "", "not-found")
    if sp.state == "stopped":
        if known and active not in ("inactive", "failed"):
            out.add("stop", name, "stop %s" % name)
        if known and svc.get("UnitFileState") in ("enabled", "enabled-runtime"):
            out.add("disable", name, "disable %s" % name)
        out.active_state = "inactive" if out.action else active
        return out
    if state.missing_packages:
        out.add("packages", list(state.missing_packages),
                "install %s (apt-get)" % ", ".join(state.missing_packages))
    for path in state.missing_dirs:
        out.add("mkdir", path, "create directory %s" % path)
    if sp.executable_bytes is not None and state.executable_sha256 != hashlib.sha256(sp.executable_bytes).hexdigest():
        out.add("install", (sp.executable, sp.executable_bytes), "%s %s (%d bytes)" % (
            "replace" if state.executable_sha256 else "install", sp.executable, len(sp.executable_bytes)))
    for field, path, text in sp.targets():
        found = state.files.get(path)
        if found is None or found[0] != text:
            out.add("write", (field, path, text), "%s %s (%s)" % ("write" if found else "create", path, field))
            out.diff.append({"before_header": path, "after_header": path,
                             "before": found[0] if found else "", "after": text})
        elif found[1] != FILE_MODE:
            out.add("chmod", path, "set mode %04o on %s (was %04o)" % (FILE_MODE, path, found[1]))
    for path, text in state.old_policy:
        out.add("remove", path, "remove %s (the earlier one-file-per-task policy layout)" % path)
        out.diff.append({"before_header": path, "after_header": path, "before": text, "after": ""})
    for path in state.old_sources:
        out.add("remove", path, "remove %s (sources an earlier version built the executable from)" % path)
    if out.written("unit") or svc.get("NeedDaemonReload") == "yes":
        out.add("daemon-reload", None, "systemctl daemon-reload (%s)" % (
            "the unit changed" if out.written("unit") else "systemd's copy of the unit is stale"))
    if svc.get("UnitFileState") != "enabled":
        out.add("enable", name, "enable %s" % name)
    installed = sp.executable_changed or out.installs_executable
    changed = [f for f in ("config", "unit") if out.written(f)] + (["executable"] if installed else [])
    reasons = ["%s changed" % " and ".join(WHAT[f] for f in changed)] if changed else []
    started = state.main_started
    for field in ("executable", "config", "unit"):
        mtime = state.mtimes.get(field)  # (not ctime: a chmod is no new content)
        if field not in changed and started is not None and mtime is not None and mtime > started:
            reasons.append("%s is newer than its main process" % WHAT[field])
    if active not in RUNNING:
        out.add("start", name, "start %s (it is %s)" % (name, active))
    elif reasons:
        out.add("restart", name, "restart %s (%s)" % (name, "; ".join(reasons)))
    elif out.written("policy") or state.old_policy:
        out.add("reload", name, "reload %s (its policy changed)" % name)
    out.active_state = "active" if out.action in ("start", "restart") else active
    return out


# -- apply ---------------------------------------------------------------------------------------

def write_atomic(path, text, mode=FILE_MODE):
    """``text`` (or bytes) at ``path``: a temporary file beside it whose name starts with '.', then renamed over
    it."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % base, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _copy_entry(src, dst):
    """A policy directory's entry into the check's copy, as the watcher would find it (a link stays a link)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isfile(src):
        shutil.copyfile(src, dst)


def check_with_executable(sp, state):
    """Run ``python executable --config FILE --check`` on the new configuration and policy, beside the drop-ins
    others wrote (the ones the watcher reads with them): nothing is written where the watcher looks.
    ValidationError naming ``config``, ``policy`` or ``config.policy_dir`` when the watcher refuses it."""
    scratch = tempfile.mkdtemp(prefix="hostnet-ports-watcher-check.")
    try:
        executable = sp.executable
        if sp.executable_bytes is not None:  # the executable that will run checks, not the one installed now
            executable = os.path.join(scratch, os.path.basename(sp.executable))
            with open(executable, "wb") as f:
                f.write(sp.executable_bytes)
        config_path = os.path.join(scratch, "config.json")
        policy_dir = os.path.join(scratch, "policy.d")
        config = dict(sp.config)
        if sp.policy_dir:
            os.mkdir(policy_dir, 0o700)
            config["policy_dir"] = policy_dir
            if os.path.isdir(sp.policy_dir):
                for entry in sorted(os.listdir(sp.policy_dir)):
                    path = os.path.join(sp.policy_dir, entry)
                    if (entry.startswith(".") or not entry.endswith(POLICY_SUFFIXES) or entry == POLICY_NAME
                            or path in dict(state.old_policy)):
                        continue
                    _copy_entry(path, os.path.join(policy_dir, entry))
            with open(os.path.join(policy_dir, POLICY_NAME), "w") as f:
                f.write(sp.policy_text)
        with open(config_path, "w") as f:
            f.write(dump_json(config))
        try:
            # AnsibleModule.run_command has no timeout: a hung --check must fail the task, not hang it.
            # pylint: disable-next=ansible-bad-function
            proc = subprocess.run([sp.python, executable, "--config", config_path, "--check"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                  check=False, timeout=120)
        except OSError as exc:
            raise ValidationError("python", "cannot run %s: %s" % (sp.python, exc.strerror or exc))
        except subprocess.TimeoutExpired:
            raise ValidationError("executable", "%s --check did not finish in 120 s" % sp.executable)
        if proc.returncode == 0:
            return
        text = (proc.stderr.strip() or proc.stdout.strip() or "exit status %d" % proc.returncode)
        text = text.replace(policy_dir, sp.policy_dir or policy_dir).replace(config_path, sp.config_file)
        raise ValidationError(*refusal(sp, text))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def refusal(sp, text):
    """(field, reason) for the watcher's refusal ``text``, its field named as this module's option
    (``config.mode``, ``policy[0].ports``); a drop-in of others is ``config.policy_dir``."""
    for prefix in ("hostnet-ports-watcher: ", "invalid configuration: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    where, sep, reason = text.partition(": ")
    if not sep or " " in where:
        return "config", "refused by the watcher's --check: %s" % text
    if sp.policy_path and where.startswith(sp.policy_path):
        return "policy" + where[len(sp.policy_path):], "%s (refused by the watcher's --check)" % reason
    if where.startswith("/"):  # another policy file
        return "config.policy_dir", "%s: %s (refused by the watcher's --check)" % (where, reason)
    return "config" if where == "config" else "config." + where, "%s (refused by the watcher's --check)" % reason


def _journal(name):
    try:
        # AnsibleModule.run_command has no timeout, and this only decorates an error: it must not hang.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(["journalctl", "-u", name, "-n", "5", "--no-pager", "-o", "cat"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = proc.stdout.strip()
    return "; its last log lines: %s" % " | ".join(lines.splitlines()) if lines else ""


def _run_service(*argv):
    code, out = systemctl(*argv)
    if code != 0:
        name = argv[-1]
        raise ApplyError("service", "systemctl %s failed: %s%s" % (" ".join(argv), out, _journal(name)))


def apply(sp, state, pl, checked=False):
    """Run the plan: the executable checks the new configuration and policy, then each step in order.

    A step that fails (a service that does not start) leaves the earlier ones done: the exception's ``done``
    lists them.
    """
    done = []
    steps = list(pl.steps)
    try:
        if steps and steps[0][0] == "packages":  # what the executable imports, before it checks anything
            _run_step(*steps[0][:2])
            done.append(steps.pop(0)[2])
        if (pl.written("config") or pl.written("policy")) and not checked:
            check_with_executable(sp, state)
        for kind, argument, sentence in steps:
            _run_step(kind, argument)
            done.append(sentence)
    except (HostnetError, OSError) as exc:
        exc.done = done
        raise
    if pl.action or any(kind in ("enable", "disable") for kind, _argument, _sentence in pl.steps):
        pl.active_state = service_properties(sp.service).get("ActiveState")


def _install_packages(names):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        # AnsibleModule.run_command has no timeout: a hung apt-get must fail the task, not hang it.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + list(names),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False, timeout=1800, env=env)
    except OSError as exc:
        raise ApplyError("packages", "cannot run apt-get to install %s: %s" % (", ".join(names), exc.strerror or exc))
    except subprocess.TimeoutExpired:
        raise ApplyError("packages", "apt-get install %s did not finish in 30 min" % " ".join(names))
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-5:])
        raise ApplyError("packages", "apt-get install %s failed: %s" % (" ".join(names), tail))


def _run_step(kind, argument):
    if kind == "packages":
        _install_packages(argument)
    elif kind == "install":
        write_atomic(argument[0], argument[1], mode=EXECUTABLE_MODE)
    elif kind == "mkdir":
        os.mkdir(argument, DIR_MODE)
        os.chmod(argument, DIR_MODE)  # the umask does not decide
    elif kind == "write":
        write_atomic(argument[1], argument[2])
    elif kind == "chmod":
        os.chmod(argument, FILE_MODE)
    elif kind == "remove":
        if os.path.isdir(argument) and not os.path.islink(argument):
            shutil.rmtree(argument)
        else:
            os.unlink(argument)
    elif kind == "daemon-reload":
        _run_service("daemon-reload")
    else:
        _run_service(kind, argument)


def watcher_report(sp):
    """What the watcher sees now (``--report --json``: it only looks) with the installed executable and
    configuration: its parsed report, or None when either is missing."""
    executable, config_file = sp.executable, sp.config_file
    if not (os.path.isfile(executable) and os.path.isfile(config_file)):
        return None
    try:
        # AnsibleModule.run_command has no timeout: a hung --report must fail the task, not hang it.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run([sp.python, executable, "--config", config_file, "--report", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              check=False, timeout=REPORT_TIMEOUT)
    except OSError as exc:
        raise ApplyError("report", "cannot run %s: %s" % (executable, exc.strerror or exc))
    except subprocess.TimeoutExpired:
        raise ApplyError("report", "%s --report did not finish in %d s" % (executable, REPORT_TIMEOUT))
    try:
        report = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        text = proc.stderr.strip() or proc.stdout.strip() or "exit status %d" % proc.returncode
        raise ApplyError("report", "%s --report failed: %s" % (executable, text))
    return report


def exposure(service):
    """systemd-analyze security's overall exposure line for the service, or None where it cannot tell."""
    try:
        # AnsibleModule.run_command has no timeout, and this only reports a score: it must not hang.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(["systemd-analyze", "security", "--no-pager", service + ".service"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in proc.stdout.splitlines():
        if "Overall exposure" in line:
            return line.strip().lstrip("\u2192").strip()
    return None


class Run:
    """One converge in two halves, so a caller can do other work in between: the constructor checks the input,
    reads the host, plans, asks the watcher what it sees (``report``) and has the new executable check the new
    configuration and policy (unless packages it imports are still to be installed); nothing is changed yet.
    ``finish()`` applies the plan (not in check mode) and returns the result."""

    def __init__(self, params, check_mode=False):
        self.check_mode = check_mode
        self.sp = sp = spec(params)
        self.state = state = read_state(sp)
        self.pl = pl = plan(sp, state)
        self.checked = False
        self.must_check = pl.written("config") or pl.written("policy")
        self.report = None
        if sp.report and sp.state == "started":
            try:
                before = watcher_report(sp)
            except ApplyError as exc:  # an executable or configuration that no longer works: the run replaces it
                before = {"error": exc.reason}
            self.report = {"before": before, "after": None}
        if sp.state == "started" and not check_mode and sp.executable_bytes is None \
                and not os.path.isfile(sp.executable):
            raise ValidationError("executable", "%s is missing (give executable_content, or install it before "
                                                "this module runs)" % sp.executable)
        can_check = sp.executable_bytes is not None or (not sp.executable_changed and os.path.isfile(sp.executable))
        if self.must_check and can_check and not state.missing_packages:
            check_with_executable(sp, state)
            self.checked = True

    def finish(self, others_changed=False):
        """Apply the plan; ``others_changed``: the caller changed the host in between (so even a run of its own
        that changes nothing asks the watcher again; otherwise what it saw before is what it sees after)."""
        sp, pl = self.sp, self.pl
        if not self.check_mode:
            apply(sp, self.state, pl, checked=self.checked)
            self.checked = self.must_check
            if self.report is not None:
                before = self.report["before"]
                unchanged = not (pl.changed or others_changed) and before is not None and "error" not in before
                self.report["after"] = before if unchanged else watcher_report(sp)
        result = {"changed": pl.changed, "changes": pl.changes, "diff": pl.diff, "active_state": pl.active_state,
                  "unit_changed": pl.written("unit"), "checked": self.checked,
                  "executable_changed": pl.installs_executable or sp.executable_changed,
                  "exposure": exposure(sp.service) if pl.written("unit") and not self.check_mode else None}
        if self.report is not None:
            result["report"] = self.report
        return result


def converge(params, check_mode=False):
    """The result: changed, changes, diff, active_state, unit_changed, checked (whether the executable checked
    the new configuration and policy), executable_changed, exposure (systemd-analyze security's score when the
    unit was written), report (with ``report``: the watcher's --report before and after the run; ``after`` is
    None in check mode, ``before`` when nothing was installed yet)."""
    return Run(params, check_mode=check_mode).finish()
