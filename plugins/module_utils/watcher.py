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

The parts: ``watcher_policy`` says what may be watched (and refuses what would widen the blast
radius beyond the task cgroups), ``watcher_judge`` turns a scan into violations, and here a
responder per mode acts on them, ``EventLog`` records them and ``Watcher`` runs the scans.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os
import posixpath
import signal
import socket
import syslog
import time

from . import portranges, sockdiag
from .cgroups import cgroup2_root, is_cgroup2
from . import watcher_policy as wp
from .errors import ValidationError
from .watcher_judge import TaskScan, judge, ports_ranges, ports_text

UNIT_RECHECK = 5.0
REASON = "CONTAINER_LIMITATION"
NO_CGROUP2 = ("not given, and no cgroup v2 hierarchy is mounted here (no cgroup2 file system: a cgroup "
              "v1-only host); mount cgroup2, or set cgroup_root to the cgroup v1 hierarchy holding the tasks "
              "(such as /sys/fs/cgroup/freezer)")


def load_config(path):
    """The configuration; ``cgroup_root`` defaults to where cgroup v2 is mounted, and without it
    (a cgroup v1-only host) must be given: ValidationError naming it otherwise."""
    config = wp.read_config(path)
    if config.cgroup_root is None:
        config.cgroup_root = cgroup2_root()
        if config.cgroup_root is None:
            raise ValidationError("cgroup_root", NO_CGROUP2)
    return config


# -- cgroups -------------------------------------------------------------------------------------

def own_cgroup(root):
    """This process's cgroup in the hierarchy holding ``root``, relative to ``root`` ('' when it is
    ``root`` itself; None when it lies elsewhere or cannot be known)."""
    if not root:
        return None
    root = os.path.realpath(root)
    best = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _sep, right = line.partition(" - ")
                fields, kind = left.split(), right.split()
                if kind[0] in ("cgroup", "cgroup2") and (root == fields[4] or root.startswith(fields[4].rstrip("/") + "/")):
                    if best is None or len(fields[4]) > len(best[0]):
                        best = (fields[4], fields[3], kind[0], set(kind[2].split(",")))
        if best is None:
            return None
        mount, mount_root, kind, options = best
        with open("/proc/self/cgroup") as f:
            for line in f:
                hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
                if (kind == "cgroup2" and hierarchy == "0" and not controllers) or (
                        kind == "cgroup" and controllers and set(controllers.split(",")) <= options):
                    break
            else:
                return None
    except (IOError, OSError, IndexError, ValueError):
        return None
    if not wp.contains(mount_root.rstrip("/"), path.rstrip("/")) and mount_root != "/":
        return None
    mine = posixpath.join(mount, posixpath.relpath(path, mount_root))
    if not wp.contains(root.rstrip("/"), mine.rstrip("/")):
        return None
    rel = posixpath.relpath(mine, root)
    return "" if rel == "." else rel


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


def kill_cgroup(path, root, timeout=5.0):
    """Kill every process of a cgroup and its children: cgroup.kill (v2), else freeze-kill-thaw (v1).

    Only ever strictly below ``root``, never a hierarchy's root (a mount point) and never around the
    watcher itself, whatever the policy said: ValueError then, and nothing is signalled.
    """
    real, top = os.path.realpath(path), os.path.realpath(root)
    if not real.startswith(top.rstrip("/") + "/") or os.path.ismount(real):
        raise ValueError("%s is not a cgroup below cgroup_root %s" % (path, root))
    if own_cgroup(real) is not None:
        raise ValueError("%s contains the watcher's own cgroup" % path)
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


def _unit_cgroup(unit):
    import subprocess
    try:
        # The watcher daemon runs outside Ansible: there is no AnsibleModule.run_command.
        # pylint: disable-next=ansible-bad-function
        out = subprocess.run(["systemctl", "show", "-P", "ControlGroup", "--", unit], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    path = out.stdout.strip()
    return path or None


# -- events --------------------------------------------------------------------------------------

class EventLog:
    """Events as JSON lines in ``event_log`` and syslog; nothing at all when not acting (--report)."""

    def __init__(self, config, now, enabled):
        self.config = config
        self.now = now
        self.enabled = enabled

    def emit(self, event):
        if not self.enabled:
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


# -- responders: what each mode does about a verdict ---------------------------------------------

class Responder:
    """audit: log only. Filters a previous watcher left in prevent mode are taken away."""

    action = "logged"

    def __init__(self, watcher):
        self.watcher = watcher
        self.swept = False

    def ready(self, fresh):
        """Whether to act on a task now; ``fresh``: its policy file changed since the last scan."""
        return True

    def respond(self, task, path, bad, report):
        pass

    def finish(self, active, report):
        from . import bpfbind
        filters = self.watcher.filters
        for name in list(filters):
            filters.pop(name).detach()
        if self.swept:
            return
        self.swept = True
        if not self.watcher.is_v2():
            return
        for name, (_task, path) in active.items():
            try:
                flt = bpfbind.BindFilter(path)
                if flt.attached():
                    flt.detach()
                    report["actions"].append({"task": name, "action": "bind filter detached"})
                else:
                    flt.close()
            except OSError as exc:
                report["actions"].append({"task": name, "action": "bind filter detach failed", "error": str(exc)})

    def close(self):
        pass


class EnforceResponder(Responder):
    """enforce: kill the whole task cgroup, and never on a policy file seen for the first time (a
    file written in place may be caught half-written; it is read again at the next scan)."""

    action = "killed"

    def ready(self, fresh):
        return not fresh

    def respond(self, task, path, bad, report):
        if not bad:
            return
        try:
            gone = kill_cgroup(path, self.watcher.config.cgroup_root)
        except ValueError as exc:
            report["actions"].append({"task": task.name, "action": "kill refused", "error": str(exc)})
            return
        self.watcher.metrics.killed()
        report["actions"].append({"task": task.name, "action": "killed", "cgroup": path, "complete": gone})


class PreventResponder(Responder):
    """prevent: a bind filter on every watched task's cgroup, whatever its verdict."""

    action = "logged (new binds to these ports are refused)"

    def __init__(self, watcher):
        Responder.__init__(self, watcher)
        self.denied_seen = {}

    def respond(self, task, path, bad, report):
        from . import bpfbind
        watcher = self.watcher
        allowed = portranges.union(task.ports, portranges.difference(wp.ALL_PORTS, watcher.config.considered()))
        value = bpfbind.bitmap(allowed, allowed)
        flt = watcher.filters.get(task.name)
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
                watcher.filters[task.name] = flt
            elif flt.update(value):
                report["actions"].append({"task": task.name, "action": "bind filter updated"})
            denied = bpfbind.denied(flt.map_fd)
            delta = denied - self.denied_seen.get(task.name, 0)
            self.denied_seen[task.name] = denied
            if delta > 0:
                watcher.metrics.denied(delta)
            report["tasks"][task.name]["denied_binds"] = denied
        except (OSError, ValueError) as exc:
            report["actions"].append({"task": task.name, "action": "bind filter failed", "error": str(exc)})

    def finish(self, active, report):
        """Filters of tasks that left the policy (or stopped running) go; the others stay."""
        filters = self.watcher.filters
        for name in list(filters):
            if name not in active:
                filters.pop(name).detach()
                self.denied_seen.pop(name, None)


RESPONDERS = {"audit": Responder, "enforce": EnforceResponder, "prevent": PreventResponder}


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
        self.files_seen = None  # policy_dir's files as the previous scan found them
        self.logged = {}        # task -> frozenset of offending (protocol, port) last logged
        self.refused = {}       # task -> why its cgroup is not watched (systemd units), last logged
        self.filters = {}       # task -> BindFilter (prevent mode)
        self.metrics = Metrics(config)
        self.events = EventLog(config, now, act)
        self.responder = RESPONDERS[config.mode](self)
        self._v2 = None
        self._ids, self._known, self._id_tops, self._foreign = {}, set(), None, set()
        self._units = {}  # systemd unit -> (its cgroup path or None, when systemd was asked)
        self.reload(force=True)

    # policy --------------------------------------------------------------
    def reload(self, force=False, files=None):
        files = wp.policy_files(self.config) if files is None else files
        signature = tuple(sorted(files.items()))
        if not force and signature == self.signature:
            return False
        try:
            tasks = wp.load_policy(self.config, own_cgroup(self.config.cgroup_root), files)
        except wp.PolicyChanging:
            self.signature = None  # being written: the last good policy stays, read again next scan
            return False
        except ValidationError as exc:
            # the last good policy stays in force
            self.signature = signature
            self.policy_error = str(exc)
            self.metrics.policy_error()
            self.events.emit({"event": "policy_rejected", "error": str(exc), "tasks_in_force": len(self.tasks)})
            return False
        self.signature = signature
        self.tasks = tasks
        self.policy_error = None
        self.metrics.set_policy(True, len(self.tasks))
        return True

    def is_v2(self):
        if self._v2 is None:
            self._v2 = bool(self.config.cgroup_root) and is_cgroup2(self.config.cgroup_root)
        return self._v2

    def task_cgroup(self, task):
        """The task's cgroup relative to cgroup_root (None: not running), or ValidationError."""
        if task.cgroup is not None:
            return task.cgroup
        # a unit's cgroup path does not change while it runs: ask systemd again only when that
        # path is gone, and then at most every UNIT_RECHECK seconds (not a subprocess per scan)
        root = self.config.cgroup_root
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
        try:
            return wp.task_cgroup("%s.systemd_unit" % task.field, rel)
        except ValidationError as exc:
            raise ValidationError(exc.field, "systemd reports the cgroup of %s as %s" % (task.systemd_unit, exc.reason))

    def _unit_conflicts(self, rels, own):
        """{name: reason} for unit tasks whose cgroup holds, or lies in, another task's, or holds ours."""
        out = {}
        for task in self.tasks:
            rel = rels.get(task.name)
            if task.systemd_unit is None or rel is None:
                continue
            if own is not None and wp.contains(rel, own):
                out[task.name] = "%s.systemd_unit: its cgroup %s contains the watcher's own" % (task.field, rel)
                continue
            for other, other_rel in rels.items():
                if other != task.name and other_rel is not None and (
                        wp.contains(rel, other_rel) or wp.contains(other_rel, rel)):
                    out[task.name] = ("%s.systemd_unit: its cgroup %s overlaps the cgroup of task %r (%s); a task's "
                                      "cgroup may not contain another's" % (task.field, rel, other, other_rel))
                    break
        return out

    def _watched(self, report):
        """name -> (task, path) of the running tasks it is safe to act on; the report says why not."""
        root = self.config.cgroup_root
        rels, refused = {}, {}
        for task in self.tasks:
            try:
                rels[task.name] = self.task_cgroup(task)
            except ValidationError as exc:
                rels[task.name], refused[task.name] = None, str(exc)
        if any(task.systemd_unit is not None for task in self.tasks):
            refused.update(self._unit_conflicts(rels, own_cgroup(root)))
        watched = {}
        for task in self.tasks:
            rel = rels[task.name]
            path = os.path.join(root, rel) if root and rel is not None else None
            entry = {"cgroup": path, "ports": task.ports_text, "status": "running", "listening": []}
            report["tasks"][task.name] = entry
            if task.name in refused:
                entry["status"] = "refused: %s" % refused[task.name]
            elif path is None or not os.path.isdir(path):
                entry["status"] = "not running"
            else:
                watched[task.name] = (task, path)
        for name, why in refused.items():
            if self.refused.get(name) != why:
                self.events.emit({"event": "task_refused", "task": name, "error": why})
        self.refused = refused
        return watched

    # one scan ------------------------------------------------------------
    def scan(self):
        started = time.time()
        cpu = time.process_time()
        files = wp.policy_files(self.config)
        self.reload(files=files)
        config = self.config
        listeners = sockdiag.listeners(config.include_udp)
        report = {"mode": config.mode, "tasks": {}, "violations": {}, "actions": [],
                  "listeners": len(listeners), "policy_error": self.policy_error}
        watched = self._watched(report)
        if self.is_v2():
            tops = {}
            for name, (_task, path) in watched.items():
                try:
                    tops[name] = (os.stat(path).st_ino, path)
                except OSError:
                    continue  # gone meanwhile: no socket of it to judge
            ids = self._cgroup_ids(tops, listeners)
            scans = [TaskScan(name, task.ports, cgroup_ids=ids.get(name, ())) for name, (task, _p) in watched.items()]
        else:
            scans = []
            for name, (task, path) in watched.items():
                scans.append(TaskScan(name, task.ports, inodes=sockdiag.socket_inodes_of_pids(_procs(path))))
        verdicts = judge(listeners, scans, config.considered())
        fresh = self._fresh(files)
        for name, (task, path) in watched.items():
            verdict = verdicts[name]
            report["tasks"][name]["listening"] = verdict.listening
            bad = verdict.offending
            if bad:
                report["violations"][name] = ports_text(bad)
            if not self.act:
                continue
            if bad and not self.responder.ready(name in fresh):
                report["actions"].append({"task": name, "action": "deferred",
                                          "reason": "its policy file changed since the last scan"})
                continue
            self._log(task, path, bad)
            self.responder.respond(task, path, bad, report)
        if self.act:
            self.responder.finish(watched, report)
        for name in list(self.logged):
            if name not in watched:
                del self.logged[name]
        duration = time.time() - started
        report["scan_seconds"] = round(duration, 6)
        report["scan_cpu_seconds"] = round(time.process_time() - cpu, 6)
        self.metrics.scanned(duration, len(listeners), len(report["violations"]))
        self.metrics.flush()
        return report

    def _fresh(self, files):
        """Tasks whose policy file is not the one the previous scan found (none at the first scan)."""
        previous, self.files_seen = self.files_seen, files
        if previous is None:
            return set()
        return set(t.name for t in self.tasks if t.source != "config"
                   and previous.get(os.path.basename(t.source)) != files.get(os.path.basename(t.source)))

    def _log(self, task, path, bad):
        if bad == self.logged.get(task.name, frozenset()):
            return
        self.logged[task.name] = bad
        if bad:
            self.events.emit({"event": "violation", "task": task.name, "cgroup": path, "mode": self.config.mode,
                              "action": self.responder.action, "reason": REASON,
                              "message": "Task %s is listening on ports it was not assigned: %s (assigned: %s)"
                                         % (task.name, ports_text(bad), task.ports_text or "none"),
                              "resources": [{"name": "ports", "type": "RANGES", "ranges": ports_ranges(bad)}]})
            self.metrics.violation()
        else:
            self.events.emit({"event": "violation_cleared", "task": task.name, "cgroup": path})

    def _cgroup_ids(self, tops, listeners):
        """task name -> cgroup ids of its cgroup and the cgroups below it (task groups).

        Kept between scans: it is rebuilt (a stat and a directory listing per task) only when a
        task's top cgroup was re-created or a listener carries a cgroup id not seen before.
        """
        stale = self._id_tops != tops
        if not stale:
            for sock in listeners:
                if sock.cgroup_id not in self._known and sock.cgroup_id not in self._foreign:
                    stale = True
                    break
        if stale:
            ids, known = {}, set()
            for name, (top_id, path) in tops.items():
                found = [top_id]
                _child_ids(path, found)
                ids[name] = found
                known.update(found)
            self._ids, self._known, self._id_tops = ids, known, dict(tops)
            self._foreign = set(s.cgroup_id for s in listeners if s.cgroup_id not in known)
        return self._ids

    def close(self):
        """Stop: leave prevent-mode filters attached (they keep protecting), release our handles."""
        for flt in self.filters.values():
            flt.close()
        self.filters = {}
        self.metrics.close()


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
            tasks = wp.load_policy(config)  # the daemon also refuses a task holding its own cgroup
        except wp.PolicyChanging as exc:
            sys.stderr.write("hostnet-ports-watcher: %s changed while it was read; check again\n" % exc)
            return 2
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
