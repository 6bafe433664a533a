# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports watcher: Mesos' network/ports isolator as a daemon for any container host.

Every ``watch_interval`` it lists the listening sockets of the host's network namespace
(sock_diag), attributes each to a task by the socket's cgroup v2 id (or, for cgroup v1 tasks, by a
walk of the task's processes' file descriptors), and compares the ports with the task's assignment.
What happens to a violation depends on ``mode``:

- ``audit``: log it (Mesos with ``--enforce_container_ports=false``);
- ``enforce``: kill the whole task, every process of its root cgroup (``cgroup.kill``, race-free);
- ``prevent``: cgroup BPF programs on the task's cgroup refuse ``bind()`` to unassigned ports at
  once (EPERM); the scan keeps running as the audit of what got through before.

A violation is an event (a JSON line, and syslog) when a task's set of offending ports changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import signal
import socket
import syslog
import time

from . import portranges, sockdiag
from .errors import ValidationError

MODES = ("audit", "enforce", "prevent")
DEFAULTS = {
    "watch_interval": 30.0, "include_udp": False, "agent_port_range": "31000-32000",
    "check_agent_port_range_only": False, "isolated_port_range": None, "mode": "audit", "policy_dir": None,
    "tasks": [], "event_log": None, "metrics_listen": None, "metrics_textfile": None, "cgroup_root": None,
    "syslog": True,
}
ALL_PORTS = [(1, 65535)]
UNIT_RECHECK = 5.0
REASON = "CONTAINER_LIMITATION"


# -- configuration and policy --------------------------------------------------------------------

def _load_file(path, field):
    """A dict from a JSON or YAML file."""
    try:
        with open(path) as f:
            text = f.read()
    except (IOError, OSError) as exc:
        raise ValidationError(field, "cannot read %s: %s" % (path, exc.strerror or exc))
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValidationError(field, "%s is not valid JSON: %s" % (path, exc))
    try:
        import yaml
    except ImportError:
        raise ValidationError(field, "%s is YAML but PyYAML is not installed (python3-yaml); use JSON" % path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(field, "%s is not valid YAML: %s" % (path, exc))


class Task:
    __slots__ = ("name", "cgroup", "systemd_unit", "ports", "ports_text", "source")

    def __init__(self, data, field, source):
        if not isinstance(data, dict):
            raise ValidationError(field, "a task is a mapping with name, cgroup (or systemd_unit) and ports")
        unknown = sorted(set(data) - {"name", "cgroup", "systemd_unit", "ports"})
        if unknown:
            raise ValidationError("%s.%s" % (field, unknown[0]), "unknown key (use name, cgroup, systemd_unit, ports)")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("%s.name" % field, "required, a non-empty string")
        self.name = name
        self.cgroup = data.get("cgroup")
        self.systemd_unit = data.get("systemd_unit")
        if (self.cgroup is None) == (self.systemd_unit is None):
            raise ValidationError("%s.cgroup" % field, "give exactly one of cgroup and systemd_unit")
        for key in ("cgroup", "systemd_unit"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip() or ".." in value.split("/")):
                raise ValidationError("%s.%s" % (field, key), "%r is not a cgroup path or unit name" % (value,))
        self.ports = portranges.parse("%s.ports" % field, data.get("ports", []), low=1)
        self.ports_text = portranges.format_set(self.ports)
        self.source = source


class Config:
    def __init__(self, data, source="config"):
        if not isinstance(data, dict):
            raise ValidationError("config", "%s is not a mapping of options" % source)
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise ValidationError(unknown[0], "unknown option (known: %s)" % ", ".join(sorted(DEFAULTS)))
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
            if value is not None and (not isinstance(value, str) or not value.startswith("/")):
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
        self.cgroup_root = opts["cgroup_root"] or cgroup2_root()
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


def load_config(path):
    return Config(_load_file(path, "config"), path)


def load_policy(config):
    """Every task: the config's own list, then one file per task in policy_dir (sorted by name)."""
    tasks, names = [], {}
    entries = [(t, "tasks[%d]" % i, "config") for i, t in enumerate(config.inline_tasks)]
    if config.policy_dir is not None and os.path.isdir(config.policy_dir):
        for fname in sorted(os.listdir(config.policy_dir)):
            if fname.startswith(".") or not fname.endswith((".json", ".yml", ".yaml")):
                continue
            path = os.path.join(config.policy_dir, fname)
            entries.append((_load_file(path, path), path, path))
    for data, field, source in entries:
        task = Task(data, field, source)
        if task.name in names:
            raise ValidationError(field + ".name", "task %r is also defined in %s" % (task.name, names[task.name]))
        names[task.name] = source
        tasks.append(task)
    return tasks


def policy_signature(config):
    """What changes when a policy file is edited, added or removed."""
    if config.policy_dir is None or not os.path.isdir(config.policy_dir):
        return ()
    sig = []
    for fname in sorted(os.listdir(config.policy_dir)):
        try:
            st = os.stat(os.path.join(config.policy_dir, fname))
        except OSError:
            continue
        sig.append((fname, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(sig)


# -- cgroups -------------------------------------------------------------------------------------

def cgroup2_root():
    """Where cgroup v2 is mounted (/sys/fs/cgroup or, on hybrid hosts, /sys/fs/cgroup/unified)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _sep, right = line.partition(" - ")
                if right.split()[0] == "cgroup2":
                    return left.split()[4]
    except (IOError, OSError):
        pass
    return None


def is_cgroup2(path):
    """Whether ``path`` is on a cgroup v2 file system (statfs magic CGROUP2_SUPER_MAGIC)."""
    try:
        return _fs_magic(path) == 0x63677270
    except OSError:
        return False


_STATFS = []


def _fs_magic(path):
    import ctypes
    if not _STATFS:
        class StatFs(ctypes.Structure):
            _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]
        _STATFS.append((ctypes.CDLL(None, use_errno=True), StatFs))
    libc, statfs_type = _STATFS[0]
    buf = statfs_type()
    if libc.statfs(path.encode(), ctypes.byref(buf)) != 0:
        raise OSError(ctypes.get_errno(), "statfs %s" % path)
    return buf.f_type & 0xFFFFFFFF


def _has(pairs, port):
    for first, last in pairs:
        if first <= port <= last:
            return True
    return False


def _child_ids(path, out):
    """Inode numbers (cgroup ids) of every cgroup below ``path``, from directory entries alone."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            out.append(entry.inode())
            _child_ids(entry.path, out)


def _top_pid(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            first = f.readline().strip()
        return int(first) if first else None
    except (IOError, OSError, ValueError):
        return None


def _first_pid(path):
    """One process of the cgroup or of a cgroup below it (None when the task has none)."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            first = f.readline().strip()
        if first:
            return int(first)
    except (IOError, OSError):
        pass
    for dirpath, _dirs, files in os.walk(path):
        name = "cgroup.procs" if "cgroup.procs" in files else "tasks"
        try:
            with open(os.path.join(dirpath, name)) as f:
                first = f.readline().strip()
        except (IOError, OSError):
            continue
        if first:
            return int(first)
    return None


def _procs(path):
    pids = []
    for dirpath, _dirs, files in os.walk(path):
        name = "cgroup.procs" if "cgroup.procs" in files else "tasks"
        try:
            with open(os.path.join(dirpath, name)) as f:
                pids.extend(int(x) for x in f.read().split())
        except (IOError, OSError):
            continue
    return pids


def kill_cgroup(path, timeout=5.0):
    """Kill every process of a cgroup and its children: cgroup.kill (v2), else freeze-kill-thaw (v1)."""
    if os.path.exists(os.path.join(path, "cgroup.kill")):
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    elif os.path.exists(os.path.join(path, "freezer.state")):
        state = os.path.join(path, "freezer.state")
        with open(state, "w") as f:
            f.write("FROZEN")
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(state) as f:
                if f.read().strip() == "FROZEN":
                    break
            time.sleep(0.005)
        for pid in _procs(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        with open(state, "w") as f:
            f.write("THAWED")
    else:
        # neither: signal the task's own processes, freezing being unavailable (not race-free)
        for pid in _procs(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    deadline = time.time() + timeout
    while _procs(path) and time.time() < deadline:
        time.sleep(0.01)
    return not _procs(path)


# -- the watcher ---------------------------------------------------------------------------------

class Watcher:
    """The scanner. With ``act=False`` (``--report``) it only looks: no kill, no bind filter attached
    or detached, no event, no metrics, so it can run beside the daemon without disturbing it."""

    def __init__(self, config, now=time.time, act=True):
        if not act:
            config = copy.copy(config)
            config.metrics_listen = config.metrics_textfile = None
        self.act = act
        self.config = config
        self.now = now
        self.tasks = []
        self.policy_error = None
        self.signature = None
        self.logged = {}      # task -> frozenset of offending (protocol, port) last logged
        self.filters = {}     # task -> BindFilter (prevent mode)
        self.denied_seen = {}
        self.metrics = Metrics(config)
        self.own_netns = os.stat("/proc/self/ns/net").st_ino
        self.swept = False
        self._fs_cache = {}
        self._ids, self._id_tops, self._foreign = {}, None, set()
        self._units = {}  # systemd unit -> (its cgroup path or None, when systemd was asked)
        self.reload(force=True)

    # policy --------------------------------------------------------------
    def reload(self, force=False):
        signature = policy_signature(self.config)
        if not force and signature == self.signature:
            return False
        self.signature = signature
        try:
            self.tasks = load_policy(self.config)
            self.policy_error = None
            self.metrics.set_policy(True, len(self.tasks))
            return True
        except ValidationError as exc:
            # the last good policy stays in force
            self.policy_error = str(exc)
            self.metrics.policy_error()
            self._event({"event": "policy_rejected", "error": str(exc), "tasks_in_force": len(self.tasks)})
            return False

    def task_path(self, task):
        root = self.config.cgroup_root
        if task.cgroup is not None:
            rel = task.cgroup
        else:
            # a unit's cgroup path does not change while it runs: ask systemd again only when that
            # path is gone, and then at most every UNIT_RECHECK seconds (not a subprocess per scan)
            cached, asked = self._units.get(task.systemd_unit, (None, 0.0))
            if cached is not None and root and os.path.isdir(os.path.join(root, cached.lstrip("/"))):
                rel = cached
            elif time.time() - asked < UNIT_RECHECK:
                rel = cached
            else:
                rel = _unit_cgroup(task.systemd_unit)
                self._units[task.systemd_unit] = (rel, time.time())
            if rel is None:
                return None
        return os.path.join(root, rel.lstrip("/")) if root else None

    # one scan ------------------------------------------------------------
    def scan(self):
        started = time.time()
        cpu = time.process_time()
        self.reload()
        config = self.config
        listeners = sockdiag.listeners(config.include_udp)
        report = {"mode": config.mode, "tasks": {}, "violations": {}, "actions": [],
                  "listeners": len(listeners), "policy_error": self.policy_error}
        proc_tasks = []
        active = {}
        v2 = self._is_cgroup2(config.cgroup_root)
        tops = {}
        for task in self.tasks:
            path = self.task_path(task)
            entry = {"cgroup": path, "ports": task.ports_text, "status": "running", "listening": []}
            report["tasks"][task.name] = entry
            try:
                top_id = os.stat(path).st_ino if path else None
            except OSError:
                top_id = None
            if top_id is None:
                entry["status"] = "not running"
                continue
            # the netns check reads one cgroup.procs; a task whose top cgroup is empty is looked at
            # more closely only where it matters, before a bind filter is attached to it
            pid = _top_pid(path)
            if pid is None and config.mode == "prevent":
                pid = _first_pid(path)
            if pid is not None and not self._in_our_netns(pid):
                entry["status"] = "ignored: its processes are in another network namespace"
                continue
            active[task.name] = (task, path, entry)
            if v2:
                tops[task.name] = (top_id, path)
            else:
                proc_tasks.append((task.name, _procs(path)))
        by_id = self._cgroup_ids(tops, listeners) if v2 else {}
        by_inode = {}
        for name, pids in proc_tasks:
            for inode in sockdiag.socket_inodes_of_pids(pids):
                by_inode[inode] = name
        considered = config.considered()
        offending = dict((name, set()) for name in active)
        for sock in listeners:
            name = by_id.get(sock.cgroup_id) or by_inode.get(sock.inode)
            if name is None or name not in active:
                continue
            task, _path, entry = active[name]
            entry["listening"].append("%s/%d" % (sock.protocol, sock.port))
            if not _has(considered, sock.port):
                continue
            if not _has(task.ports, sock.port):
                offending[name].add((sock.protocol, sock.port))
        for name, (task, path, entry) in active.items():
            entry["listening"] = sorted(set(entry["listening"]))
            bad = frozenset(offending[name])
            if bad:
                report["violations"][name] = _ports_text(bad)
            if not self.act:
                continue
            self._act(task, path, bad, report)
            if config.mode == "prevent":
                self._prevent(task, path, report)
        if not self.act:
            pass
        elif config.mode != "prevent":
            self._drop_filters(set())
            if not self.swept:  # filters a previous watcher (in prevent mode) left on policy tasks
                self._sweep(active, report)
        else:
            self._drop_filters(set(active))
        for name in list(self.logged):
            if name not in active:
                del self.logged[name]
        duration = time.time() - started
        report["scan_seconds"] = round(duration, 6)
        report["scan_cpu_seconds"] = round(time.process_time() - cpu, 6)
        self.metrics.scanned(duration, len(listeners), len(report["violations"]))
        self.metrics.flush()
        return report

    def _cgroup_ids(self, tops, listeners):
        """cgroup id -> task name, for every task cgroup and the cgroups below them (task groups).

        Kept between scans: it is rebuilt (a stat and a directory listing per task) only when a
        task's top cgroup was re-created or a listener carries a cgroup id not seen before.
        """
        stale = self._id_tops != tops
        if not stale:
            for sock in listeners:
                if sock.cgroup_id not in self._ids and sock.cgroup_id not in self._foreign:
                    stale = True
                    break
        if stale:
            ids = {}
            for name, (top_id, path) in tops.items():
                found = [top_id]
                _child_ids(path, found)
                for cgroup_id in found:
                    ids[cgroup_id] = name
            self._ids, self._id_tops = ids, dict(tops)
            self._foreign = set(s.cgroup_id for s in listeners if s.cgroup_id not in ids)
        return self._ids

    def _in_our_netns(self, pid):
        try:
            return os.stat("/proc/%d/ns/net" % pid).st_ino == self.own_netns
        except OSError:
            return True  # gone meanwhile: nothing of it to judge

    def _is_cgroup2(self, root):
        if root not in self._fs_cache:
            self._fs_cache[root] = bool(root) and is_cgroup2(root)
        return self._fs_cache[root]

    def _act(self, task, path, bad, report):
        mode = self.config.mode
        if bad != self.logged.get(task.name, frozenset()):
            self.logged[task.name] = bad
            if bad:
                action = {"audit": "logged", "enforce": "killed",
                          "prevent": "logged (new binds to these ports are refused)"}[mode]
                self._event({"event": "violation", "task": task.name, "cgroup": path, "mode": mode,
                             "action": action, "reason": REASON,
                             "message": "Task %s is listening on ports it was not assigned: %s (assigned: %s)"
                                        % (task.name, _ports_text(bad), portranges.format_set(task.ports) or "none"),
                             "resources": [{"name": "ports", "type": "RANGES", "ranges": _ports_ranges(bad)}]})
                self.metrics.violation()
            else:
                self._event({"event": "violation_cleared", "task": task.name, "cgroup": path})
        if bad and mode == "enforce":
            gone = kill_cgroup(path)
            self.metrics.killed()
            report["actions"].append({"task": task.name, "action": "killed", "cgroup": path, "complete": gone})

    def _prevent(self, task, path, report):
        from . import bpfbind
        value = bpfbind.bitmap(*([self._allowed(task)] * 2))
        flt = self.filters.get(task.name)
        try:
            if flt is None or flt.path != path:
                if flt is not None:
                    flt.detach()
                flt = bpfbind.BindFilter(path)
                if flt.attached():
                    if flt.update(value):
                        report["actions"].append({"task": task.name, "action": "bind filter updated"})
                else:
                    flt.attach(value)
                    report["actions"].append({"task": task.name, "action": "bind filter attached"})
                self.filters[task.name] = flt
            elif flt.update(value):
                report["actions"].append({"task": task.name, "action": "bind filter updated"})
            denied = bpfbind.denied(flt.map_fd)
            delta = denied - self.denied_seen.get(task.name, 0)
            self.denied_seen[task.name] = denied
            if delta > 0:
                self.metrics.denied(delta)
            report["tasks"][task.name]["denied_binds"] = denied
        except (OSError, ValueError) as exc:
            report["actions"].append({"task": task.name, "action": "bind filter failed", "error": str(exc)})

    def _sweep(self, active, report):
        from . import bpfbind
        self.swept = True
        for name, (_task, path, _entry) in active.items():
            if not self._is_cgroup2(self.config.cgroup_root):
                continue
            try:
                flt = bpfbind.BindFilter(path)
                if flt.attached():
                    flt.detach()
                    report["actions"].append({"task": name, "action": "bind filter detached"})
                else:
                    flt.close()
            except OSError as exc:
                report["actions"].append({"task": name, "action": "bind filter detach failed", "error": str(exc)})

    def _allowed(self, task):
        """Ports a bind may use: the task's own, and everything the watcher does not check."""
        return portranges.union(task.ports, portranges.difference(ALL_PORTS, self.config.considered()))

    def _drop_filters(self, keep):
        for name in list(self.filters):
            if name not in keep:
                self.filters.pop(name).detach()
                self.denied_seen.pop(name, None)

    def close(self):
        """Stop: leave prevent-mode filters attached (they keep protecting), release our handles."""
        for flt in self.filters.values():
            flt.close()
        self.filters = {}
        self.metrics.close()

    def _event(self, event):
        if not self.act:
            return
        event = dict({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now()))}, **event)
        line = json.dumps(event, sort_keys=True)
        if self.config.event_log:
            directory = os.path.dirname(self.config.event_log)
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            with open(self.config.event_log, "a") as f:
                f.write(line + "\n")
        if self.config.syslog:
            syslog.openlog("hostnet-ports-watcher", 0, syslog.LOG_DAEMON)
            syslog.syslog(syslog.LOG_WARNING if event["event"] != "violation_cleared" else syslog.LOG_INFO, line)


def _unit_cgroup(unit):
    import subprocess
    try:
        out = subprocess.run(["systemctl", "show", "-P", "ControlGroup", unit], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    path = out.stdout.strip()
    return path or None


def _ports_text(bad):
    by_proto = {}
    for proto, port in sorted(bad):
        by_proto.setdefault(proto, []).append((port, port))
    return "; ".join("%s %s" % (p, portranges.format_set(portranges.normalize(r))) for p, r in sorted(by_proto.items()))


def _ports_ranges(bad):
    pairs = portranges.normalize([(port, port) for _proto, port in bad])
    return [{"begin": a, "end": b} for a, b in pairs]


# -- metrics -------------------------------------------------------------------------------------

class Metrics:
    """Prometheus metrics (prometheus_client), served on loopback and/or written to a textfile."""

    def __init__(self, config):
        self.config = config
        self.enabled = bool(config.metrics_listen or config.metrics_textfile)
        self.server = None
        if not self.enabled:
            return
        try:
            import prometheus_client as prom
        except ImportError:
            raise ValidationError("metrics_listen" if config.metrics_listen else "metrics_textfile",
                                  "needs prometheus_client (python3-prometheus-client)")
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        p = "hostnet_ports_watcher_"
        self.scans = prom.Counter(p + "scans_total", "Scans done", registry=self.registry)
        self.duration = prom.Gauge(p + "scan_duration_seconds", "Wall time of the last scan", registry=self.registry)
        self.listeners = prom.Gauge(p + "listeners", "Listening sockets seen by the last scan", registry=self.registry)
        self.violating = prom.Gauge(p + "violating_tasks", "Tasks in violation at the last scan",
                                    registry=self.registry)
        self.violations = prom.Counter(p + "violations_total", "Violation events (a task's offending set changed)",
                                       registry=self.registry)
        self.kills = prom.Counter(p + "kills_total", "Tasks killed (enforce mode)", registry=self.registry)
        self.denied_binds = prom.Counter(p + "denied_binds_total", "bind() calls refused (prevent mode)",
                                         registry=self.registry)
        self.reload_errors = prom.Counter(p + "policy_reload_errors_total", "Policy loads rejected",
                                          registry=self.registry)
        self.policy_ok = prom.Gauge(p + "policy_valid", "1 when the last policy load succeeded", registry=self.registry)
        self.tasks = prom.Gauge(p + "tasks", "Tasks in the policy in force", registry=self.registry)
        if config.metrics_listen:
            result = prom.start_http_server(config.metrics_listen[1], addr=config.metrics_listen[0],
                                            registry=self.registry)
            self.server = result[0] if isinstance(result, tuple) else None

    def set_policy(self, ok, count):
        if self.enabled:
            self.policy_ok.set(1 if ok else 0)
            self.tasks.set(count)

    def policy_error(self):
        if self.enabled:
            self.reload_errors.inc()
            self.policy_ok.set(0)

    def scanned(self, duration, listeners, violating):
        if self.enabled:
            self.scans.inc()
            self.duration.set(duration)
            self.listeners.set(listeners)
            self.violating.set(violating)

    def violation(self):
        if self.enabled:
            self.violations.inc()

    def killed(self):
        if self.enabled:
            self.kills.inc()

    def denied(self, count):
        if self.enabled:
            self.denied_binds.inc(count)

    def flush(self):
        if self.enabled and self.config.metrics_textfile:
            self.prom.write_to_textfile(self.config.metrics_textfile, self.registry)

    def close(self):
        if self.server is not None:
            self.server.shutdown()


# -- the command ---------------------------------------------------------------------------------

def notify_ready():
    """Tell systemd the daemon is up (``Type=notify``); nothing without ``$NOTIFY_SOCKET``.

    Until then ``systemctl start``/``restart`` wait, so a ``reload`` (SIGHUP) that follows can never
    reach the process before its handler is in place: SIGHUP's default action ends the process,
    which systemd counts as a clean exit and would not restart.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]                      # abstract namespace
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(path)
        sock.sendall(b"READY=1")
    finally:
        sock.close()
    return True


def main(argv=None):
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="hostnet-ports-watcher",
                                     description="Find tasks listening on ports they were not assigned, and log, "
                                                 "kill or prevent them.")
    parser.add_argument("--config", default="/etc/hostnet/ports-watcher.yml", help="YAML or JSON configuration")
    parser.add_argument("--once", action="store_true", help="scan once (acting per mode) and exit")
    parser.add_argument("--json", action="store_true", help="with --once or --report: print the state as JSON")
    parser.add_argument("--report", action="store_true",
                        help="scan once without acting (no kill, no filter change, no event, no metrics) and "
                             "print the state; safe beside a running daemon")
    parser.add_argument("--check", action="store_true", help="validate the configuration and policy, then exit")
    args = parser.parse_args(argv)
    daemon = not (args.check or args.once or args.report)
    hup = []
    stop = []
    if daemon:                                        # before anything slow: a reload may come early
        signal.signal(signal.SIGHUP, lambda *_: hup.append(1))
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if args.check:
        try:
            config = load_config(args.config)
            tasks = load_policy(config)
        except ValidationError as exc:
            sys.stderr.write("hostnet-ports-watcher: invalid configuration: %s\n" % exc)
            return 2
        sys.stdout.write("%s: valid, %d tasks\n" % (args.config, len(tasks)))
        return 0
    try:
        watcher = Watcher(load_config(args.config), act=not args.report)
    except ValidationError as exc:
        sys.stderr.write("hostnet-ports-watcher: invalid configuration: %s\n" % exc)
        return 2
    if watcher.policy_error:
        sys.stderr.write("hostnet-ports-watcher: invalid policy: %s\n" % watcher.policy_error)
        if args.once or args.report:
            return 2
    if args.once or args.report:
        report = watcher.scan()
        watcher.close()
        if args.json:
            sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        else:
            for name, ports in sorted(report["violations"].items()):
                sys.stdout.write("%s: %s\n" % (name, ports))
        return 0
    ready = False
    try:
        while not stop:
            if hup:
                del hup[:]
                watcher.reload(force=True)
            watcher.scan()
            if not ready:
                ready = True
                notify_ready()                        # after the first scan: "active" has looked once
            deadline = time.time() + watcher.config.watch_interval
            while not stop and not hup and time.time() < deadline:
                time.sleep(min(0.05, watcher.config.watch_interval))
    finally:
        watcher.close()
    return 0
