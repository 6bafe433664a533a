# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports watcher with real processes in real cgroups, inside a hermetic host.

Each test mounts cgroup v2 inside its hermetic host, makes its task cgroups under a directory of
its own (removed afterwards, its processes killed first), and starts listeners there. Sockets live
in the hermetic host's network namespace, which is the one the watcher scans.

They run on either cgroup layout: the machine's cgroup2 mount (/sys/fs/cgroup on a pure v2 host,
/sys/fs/cgroup/unified on a hybrid one) is found by the core's own detection.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from harness.hermetic import REPO
from harness.runner import INTERPRETERS, ansible_env, run_module, run_playbook

sys.path.insert(0, os.path.join(REPO, "plugins"))

from module_utils import cgroups  # noqa: E402  pylint: disable=wrong-import-position

WATCHER = os.path.join(REPO, ".build", "watcher", "hostnet-ports-watcher")
CGROOT = "/sys/fs/cgroup"  # as mounted inside the hermetic host
OUTER = cgroups.cgroup2_root()  # the same cgroups, seen from the machine: where its layout puts cgroup2

LISTEN = ("import socket, sys, time\n"
          "for spec in sys.argv[1:]:\n"
          "    proto, port = spec.split('/')\n"
          "    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)\n"
          "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "    try:\n"
          "        s.bind(('::', int(port)))\n"
          "    except OSError as e:\n"
          "        print('%s %s' % (spec, e.errno), flush=True)\n"
          "        continue\n"
          "    if proto == 'tcp':\n"
          "        s.listen()\n"
          "    print('%s ok' % spec, flush=True)\n"
          "    globals()['keep_' + port] = s\n"
          "time.sleep(3600)\n")


class Cgroups:
    """Task cgroups for one test, under a unique directory; removed with their processes."""

    def __init__(self):
        self.base = "hn-watch-%s" % uuid.uuid4().hex[:8]
        os.mkdir(os.path.join(OUTER, self.base))

    def make(self, rel):
        path = os.path.join(OUTER, self.base, rel)
        os.makedirs(path, exist_ok=True)
        return "%s/%s" % (self.base, rel)

    def pids(self, rel=""):
        out = []
        for dirpath, _dirs, _files in os.walk(os.path.join(OUTER, self.base, rel)):
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                out += [int(p) for p in f.read().split()]
        return out

    def remove(self):
        top = os.path.join(OUTER, self.base)
        if not os.path.isdir(top):
            return
        with open(os.path.join(top, "cgroup.kill"), "w") as f:
            f.write("1")
        deadline = time.time() + 5
        while self.pids() and time.time() < deadline:
            time.sleep(0.02)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            os.rmdir(dirpath)


@pytest.fixture
def cg(host):
    if OUTER is None:
        pytest.skip("needs cgroup v2, and this machine has no cgroup2 mounted (cgroup mode %s)"
                    % cgroups.host_layout()["mode"])
    host.sh("mount -t cgroup2 none %s" % CGROOT)
    groups = Cgroups()
    try:
        yield groups
    finally:
        groups.remove()


def start(host, cgroup, *ports, netns_of_its_own=False):
    """A listener process in ``cgroup`` (moved there before exec); returns it and what it printed."""
    out = "/run/listener-%s.out" % uuid.uuid4().hex[:6]
    host.sh("[ -f /run/listen.py ] || cat > /run/listen.py <<'EOF'\n%sEOF" % LISTEN)
    script = "echo $$ > %s/%s/cgroup.procs && exec %s python3 /run/listen.py %s > %s" % (
        CGROOT, cgroup, "unshare --net" if netns_of_its_own else "", " ".join(ports), out)
    proc = host.spawn(["sh", "-c", script])
    deadline = time.time() + 60  # a bound: well under a second here, seconds in a loaded TCG VM
    while time.time() < deadline:
        text = host.sh("cat %s 2>/dev/null || true" % out).stdout
        if len(text.splitlines()) >= len(ports):
            return proc, text
        time.sleep(0.05)
    raise AssertionError("listener in %s did not start: %r" % (cgroup, host.sh("cat %s" % out, check=False).stdout))


def write_config(host, config, policy=None):
    config.setdefault("cgroup_root", CGROOT)
    if config["cgroup_root"] is None:  # not given: the watcher finds it
        del config["cgroup_root"]
    config.setdefault("event_log", "/run/watcher/events.jsonl")
    config.setdefault("syslog", False)
    host.sh("mkdir -p /run/watcher/policy.d && cat > /run/watcher/config.json <<'EOF'\n%s\nEOF" % json.dumps(config))
    for name, task in (policy or {}).items():
        host.sh("cat > /run/watcher/policy.d/%s.json <<'EOF'\n%s\nEOF" % (name, json.dumps(task)))
    return "/run/watcher/config.json"


def once(host, config_path):
    proc = host.run(["/usr/bin/python3", WATCHER, "--config", config_path, "--once", "--json"], check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def events(host):
    text = host.sh("cat /run/watcher/events.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in text.splitlines()]


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_audit_logs_the_violation_and_touches_nothing(host, cg):
    web = cg.make("web")
    path = write_config(host, {"mode": "audit", "tasks": [{"name": "web", "cgroup": web, "ports": "31000-31009"}]})
    proc, _out = start(host, web, "tcp/31005", "tcp/31500", "tcp/8080")
    report = once(host, path)
    assert report["violations"] == {"web": "tcp 8080,31500"}
    assert report["tasks"]["web"]["listening"] == ["tcp/31005", "tcp/31500", "tcp/8080"]
    (event,) = events(host)
    assert event["event"] == "violation" and event["reason"] == "CONTAINER_LIMITATION"
    assert event["resources"] == [{"name": "ports", "type": "RANGES",
                                   "ranges": [{"begin": 8080, "end": 8080}, {"begin": 31500, "end": 31500}]}]
    assert alive(proc.pid) or cg.pids("web")  # audit kills nothing


def test_enforce_kills_the_whole_task_group_and_nothing_else(host, cg):
    app = cg.make("app")
    child = cg.make("app/worker")  # a task group: the worker's violation counts against "app"
    good = cg.make("good")
    other = cg.make("unmanaged")
    path = write_config(host, {"mode": "enforce", "check_agent_port_range_only": True, "tasks": [
        {"name": "app", "cgroup": app, "ports": "31000-31009"},
        {"name": "good", "cgroup": good, "ports": "31010"}]})
    start(host, app, "tcp/31001")
    start(host, child, "tcp/31777")
    start(host, good, "tcp/31010", "tcp/8080")  # 8080 is outside the agent range: not checked
    start(host, other, "tcp/31900")  # in no task: never signalled
    assert len(cg.pids("app")) == 2
    report = once(host, path)
    assert report["violations"] == {"app": "tcp 31777"}
    assert [a["task"] for a in report["actions"] if a["action"] == "killed"] == ["app"]
    assert cg.pids("app") == []
    assert len(cg.pids("good")) == 1 and len(cg.pids("unmanaged")) == 1
    assert events(host)[0]["action"] == "killed"


def test_report_only_looks_even_in_enforce_mode(host, cg):
    web = cg.make("web")
    path = write_config(host, {"mode": "enforce", "metrics_listen": "127.0.0.1:9613",
                               "tasks": [{"name": "web", "cgroup": web, "ports": "31000-31009"}]})
    start(host, web, "tcp/31005", "tcp/31500")
    proc = host.run(["/usr/bin/python3", WATCHER, "--config", path, "--report", "--json"], check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["violations"] == {"web": "tcp 31500"} and report["actions"] == []
    assert len(cg.pids("web")) == 1  # not killed
    assert events(host) == []  # nothing logged: the daemon's log stays the daemon's
    # and it acts for real without --report
    assert once(host, path)["violations"] == {"web": "tcp 31500"}
    assert cg.pids("web") == []


def test_isolated_port_range_limits_what_is_checked(host, cg):
    t = cg.make("t")
    path = write_config(host, {"isolated_port_range": "40000-40999",
                               "tasks": [{"name": "t", "cgroup": t, "ports": "40000"}]})
    start(host, t, "tcp/40000", "tcp/40500", "tcp/31500")
    assert once(host, path)["violations"] == {"t": "tcp 40500"}


def test_a_listener_in_another_network_namespace_is_not_the_hosts(host, cg):
    """A CNI task's sockets live in its own namespace: not in the host's dump, so never a violation."""
    cni = cg.make("cni-task")
    path = write_config(host, {"mode": "enforce", "tasks": [{"name": "cni", "cgroup": cni, "ports": "31000"}]})
    start(host, cni, "tcp/31999", netns_of_its_own=True)
    report = once(host, path)
    assert report["violations"] == {} and report["tasks"]["cni"]["listening"] == []
    assert len(cg.pids("cni-task")) == 1


def test_udp_is_checked_only_when_asked(host, cg):
    t = cg.make("t")
    path = write_config(host, {"tasks": [{"name": "t", "cgroup": t, "ports": "31000"}]})
    start(host, t, "udp/31555")
    assert once(host, path)["violations"] == {}
    path = write_config(host, {"include_udp": True, "tasks": [{"name": "t", "cgroup": t, "ports": "31000"}]})
    assert once(host, path)["violations"] == {"t": "udp 31555"}


def test_prevent_refuses_binds_and_follows_policy_changes(host, cg):
    t = cg.make("t")
    path = write_config(host, {"mode": "prevent", "policy_dir": "/run/watcher/policy.d"},
                        {"t": {"name": "t", "cgroup": t, "ports": "31000-31009"}})
    report = once(host, path)
    assert {"task": "t", "action": "bind filter attached"} in report["actions"]
    _proc, out = start(host, t, "tcp/31001", "tcp/31500", "udp/31600", "tcp/0")
    assert out.splitlines() == ["tcp/31001 ok", "tcp/31500 1", "udp/31600 1", "tcp/0 ok"]  # 1 = EPERM
    # the programs outlive the watcher process; a new one finds them, counts the refusals, and a policy
    # change rewrites the map without reloading them
    write_config(host, {"mode": "prevent", "policy_dir": "/run/watcher/policy.d"},
                 {"t": {"name": "t", "cgroup": t, "ports": "31000-31009,31500"}})
    report = once(host, path)
    assert {"task": "t", "action": "bind filter updated"} in report["actions"]
    assert report["tasks"]["t"]["denied_binds"] == 2
    _proc, out = start(host, t, "tcp/31500", "tcp/31501")
    assert out.splitlines() == ["tcp/31500 ok", "tcp/31501 1"]
    # audit mode takes the filter away again (a new watcher process finds the programs by name)
    path = write_config(host, {"mode": "audit", "policy_dir": "/run/watcher/policy.d"})
    report = once(host, path)
    assert {"task": "t", "action": "bind filter detached"} in report["actions"]
    _proc, out = start(host, t, "tcp/31501")
    assert out.splitlines() == ["tcp/31501 ok"]


def test_daemon_logs_once_per_change_reloads_and_keeps_the_last_good_policy(host, cg):
    t = cg.make("t")
    path = write_config(host, {"watch_interval": 0.2, "policy_dir": "/run/watcher/policy.d",
                               "metrics_textfile": "/run/watcher/metrics.prom"},
                        {"t": {"name": "t", "cgroup": t, "ports": "31000"}})
    start(host, t, "tcp/31000", "tcp/31444")
    daemon = host.spawn(["/usr/bin/python3", WATCHER, "--config", path])
    try:
        _wait(lambda: len(events(host)) >= 1)
        time.sleep(1.0)  # several scans: the same violation is not logged again
        assert [e["event"] for e in events(host)] == ["violation"]
        # a broken policy file is rejected; the last good policy stays in force
        host.sh("echo '{not json' > /run/watcher/policy.d/t.json")
        _wait(lambda: any(e["event"] == "policy_rejected" for e in events(host)))
        rejected = [e for e in events(host) if e["event"] == "policy_rejected"][0]
        assert "t.json" in rejected["error"] and rejected["tasks_in_force"] == 1
        metrics = host.sh("cat /run/watcher/metrics.prom").stdout
        assert "hostnet_ports_watcher_policy_reload_errors_total 1.0" in metrics
        assert "hostnet_ports_watcher_violations_total 1.0" in metrics
        # a fixed policy that assigns the port clears the violation
        host.sh("echo '{\"name\": \"t\", \"cgroup\": \"%s\", \"ports\": \"31000,31444\"}'"
                " > /run/watcher/policy.d/t.json" % t)
        _wait(lambda: any(e["event"] == "violation_cleared" for e in events(host)))
        assert "hostnet_ports_watcher_scans_total" in host.sh("cat /run/watcher/metrics.prom").stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


def _wait(condition, timeout=60):  # a bound, not a pace: a daemon starts in ~1 s here, 10-20 s in a loaded TCG VM
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met within %ss" % timeout)


@pytest.mark.parametrize("config,field", [
    ({"mode": "kill"}, "mode"),
    ({"watch_interval": 0.01}, "watch_interval"),
    ({"check_agent_port_range_only": True, "isolated_port_range": "1000-2000"}, "isolated_port_range"),
    ({"agent_port_range": "32000-31000"}, "agent_port_range"),
    ({"metrics_listen": "0.0.0.0:9613"}, "metrics_listen"),
    ({"colour": "blue"}, "colour"),
    ({"tasks": [{"name": "a", "ports": "1"}]}, "tasks[0].cgroup"),
    ({"tasks": [{"name": "a", "cgroup": "x", "ports": "99999"}]}, "tasks[0].ports"),
    ({"tasks": [{"name": "a", "cgroup": "x"}, {"name": "a", "cgroup": "y"}]}, "tasks[1].name"),
])
def test_invalid_config_exits_non_zero_naming_the_field(host, config, field):
    path = write_config(host, config)
    proc = host.run(["/usr/bin/python3", WATCHER, "--config", path, "--once", "--json"], check=False)
    assert proc.returncode == 2 and field in proc.stderr, (proc.returncode, proc.stderr)


@pytest.fixture
def v1(host):
    """Task cgroups in a cgroup v1 freezer hierarchy mounted inside the hermetic host at /run/cgv1: on a
    hybrid machine its own freezer hierarchy, on a pure cgroup v2 one a new hierarchy (the freezer is
    never a v2 controller, so the kernel mounts it beside cgroup2 while it has cgroup v1 support)."""
    mounted = host.sh("mkdir -p /run/cgv1 && mount -t cgroup -o freezer none /run/cgv1", check=False)
    if mounted.returncode != 0:
        pytest.skip("needs a cgroup v1 freezer hierarchy (cgroup mode here: %s), and this kernel mounts none: %s"
                    % (cgroups.host_layout()["mode"], mounted.stderr.strip()))
    base = "hn-watch-v1-%s" % uuid.uuid4().hex[:8]
    host.sh("mkdir -p /run/cgv1/%s/app/worker" % base)
    try:
        yield base
    finally:
        # thaw and kill what is left, deepest first, then remove the cgroups (retrying while they empty)
        host.sh("cd /run/cgv1/%s && for d in app/worker app .; do echo THAWED > $d/freezer.state;"
                " xargs -r kill -9 < $d/cgroup.procs; done; for i in $(seq 100); do"
                " rmdir app/worker app 2>/dev/null; [ -d app ] || break; sleep 0.05; done; cd / &&"
                " rmdir /run/cgv1/%s" % (base, base))


def test_cgroup_v1_tasks_are_found_through_their_processes_and_killed_with_the_freezer(host, v1):
    """Without cgroup v2 ids, sockets are matched to tasks by the inodes of their processes' fds."""
    config = {"mode": "enforce", "cgroup_root": "/run/cgv1",
              "tasks": [{"name": "app", "cgroup": "%s/app" % v1, "ports": "31000-31009"}]}
    host.sh("cat > /run/v1.json <<'EOF'\n%s\nEOF" % json.dumps(dict(config, syslog=False)))
    host.sh("[ -f /run/listen.py ] || cat > /run/listen.py <<'EOF'\n%sEOF" % LISTEN)
    for rel, port in (("app", "tcp/31001"), ("app/worker", "tcp/31666")):
        host.spawn(["sh", "-c", "echo $$ > /run/cgv1/%s/%s/cgroup.procs && exec python3 /run/listen.py %s"
                    " > /run/v1-%s.out" % (v1, rel, port, port[4:])])
    _wait(lambda: all(host.sh("cat /run/v1-%s.out 2>/dev/null || true" % p).stdout for p in ("31001", "31666")))
    report = once(host, "/run/v1.json")
    assert report["violations"] == {"app": "tcp 31666"}
    assert report["actions"][0]["action"] == "killed" and report["actions"][0]["complete"] is True
    for rel in ("app", "app/worker"):
        assert host.sh("cat /run/cgv1/%s/%s/cgroup.procs" % (v1, rel)).stdout.split() == []


def test_cgroup_root_is_found_on_this_layout_and_the_violator_killed(host, cg):
    """No cgroup_root: the watcher takes the cgroup2 mount it can reach. The hermetic host's own
    mount table still lists the machine's cgroup mounts (hidden under its sysfs; on a hybrid machine
    /sys/fs/cgroup/unified comes first), so only a reachable mount may be taken."""
    web = cg.make("web")
    path = write_config(host, {"mode": "enforce", "cgroup_root": None,
                               "tasks": [{"name": "web", "cgroup": web, "ports": "31000-31009"}]})
    start(host, web, "tcp/31001", "tcp/31999")
    report = once(host, path)
    assert report["tasks"]["web"]["cgroup"] == "%s/%s" % (CGROOT, web)
    assert report["violations"] == {"web": "tcp 31999"}
    assert [a["action"] for a in report["actions"]] == ["killed"] and cg.pids("web") == []


def test_the_demos_planted_violation_lands_in_the_tasks_cgroup_and_is_killed(host, cg):
    """playbooks/tasks/plant_violation.yml (make demo, molecule fleet) on this layout: the cgroup v2
    mount comes from the capabilities facts, the watcher finds it on its own."""
    web = cg.make("web")
    path = write_config(host, {"mode": "enforce", "cgroup_root": None, "watch_interval": 0.5,
                               "tasks": [{"name": "web", "cgroup": web, "ports": "31000-31009"}]})
    host.sh("mount -t tmpfs -o mode=1777 tmp /tmp")  # the task file's /tmp/hostnet-violation.out stays in here
    daemon = host.spawn(["/usr/bin/python3", WATCHER, "--config", path])
    try:
        play = PLANT_PLAY % (os.path.join(REPO, "playbooks", "tasks", "plant_violation.yml"), web)
        code, _stats, results = run_playbook(host, play, INTERPRETERS["os-pyroute2-0.7"])
        assert code == 0, [r for r in results if r.get("failed")]
        planted = [r for r in results if r["_task"].startswith("Start a process in the task's cgroup")][0]
        assert planted["stdout"].splitlines()[-1] == "procs: 0", planted["stdout"]
        (event,) = [e for e in events(host) if e["event"] == "violation"]
        assert event["cgroup"] == "%s/%s" % (CGROOT, web) and event["action"] == "killed"
        assert event["resources"][0]["ranges"] == [{"begin": 31999, "end": 31999}]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


PLANT_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Plant the violation
      ansible.builtin.include_tasks: %s
      vars:
        hostnet_violation_task: {ports: "31000-31009", cgroup: "%s"}
"""


@pytest.fixture
def v1_only(host):
    """The hermetic host made a cgroup v1-only host: a tmpfs at /sys/fs/cgroup and, where the kernel
    has it, the freezer v1 hierarchy at /sys/fs/cgroup/freezer; no cgroup2 anywhere it can reach."""
    host.sh("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/freezer")
    freezer = host.sh("mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer", check=False).returncode == 0
    return freezer


def test_without_cgroup2_the_watcher_refuses_naming_what_is_missing(host, v1_only):
    path = write_config(host, {"mode": "enforce", "cgroup_root": None,
                               "tasks": [{"name": "web", "cgroup": "hostnet-tasks/web", "ports": "31000"}]})
    for flag in ("--check", "--once"):
        proc = host.run(["/usr/bin/python3", WATCHER, "--config", path, flag], check=False)
        assert proc.returncode == 2, (flag, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("hostnet-ports-watcher: invalid configuration: cgroup_root: not given, and "
                                      "no cgroup v2 hierarchy is mounted here"), proc.stderr
    if v1_only:  # the hierarchy of the tasks given: cgroup v1 tasks are watched
        path = write_config(host, {"mode": "enforce", "cgroup_root": "/sys/fs/cgroup/freezer",
                                   "tasks": [{"name": "web", "cgroup": "hostnet-tasks/web", "ports": "31000"}]})
        assert once(host, path)["tasks"]["web"]["status"] == "not running"


def test_without_cgroup2_the_facts_say_so_and_the_role_refuses(host, v1_only):
    python = INTERPRETERS["os-pyroute2-0.7"]
    facts = run_module(host, "hostnet.isolation.capabilities", {}, python)["ansible_facts"]["hostnet_capabilities"]
    assert facts["cgroup"]["v2_mount"] is None and facts["cgroup_v2"]["available"] is False
    assert facts["cgroup"]["mode"] == ("v1" if v1_only else "none")
    assert "no cgroup2 file system mounted" in facts["cgroup_v2"]["detail"]
    code, _stats, results = run_playbook(host, ROLE_PLAY, python)
    failed = [r for r in results if r.get("failed")]
    assert code != 0 and [r["_task"].split(" : ")[-1] for r in failed] == ["Check the host's prerequisites"], results
    assert failed[0]["missing"] == ["cgroup_v2"]
    assert "cgroup_v2 (a mounted cgroup v2 hierarchy): cgroup mode" in failed[0]["msg"]
    assert host.sh("ls /run/hostnet-watcher 2>/dev/null || true").stdout == ""  # nothing installed


ROLE_PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: hostnet.isolation.ports_watcher
      vars:
        ports_watcher_install_packages: false
        ports_watcher_lib_dir: /run/hostnet-watcher/lib
        ports_watcher_bin: /run/hostnet-watcher/bin/watcher
        ports_watcher_config_file: /run/hostnet-watcher/etc/config.json
        ports_watcher_policy_dir: /run/hostnet-watcher/etc/policy.d
        ports_watcher_event_log: /run/hostnet-watcher/log/events.jsonl
        ports_watcher_tasks: [{name: web, cgroup: hostnet-tasks/web, ports: "31000"}]
"""


def test_yaml_configuration_and_check(host, cg):
    t = cg.make("t")
    host.sh("mkdir -p /run/watcher && cat > /run/watcher/config.yml <<'EOF'\n"
            "mode: audit\nsyslog: false\ncgroup_root: %s\ntasks:\n  - name: t\n    cgroup: %s\n    ports: 31000-31001\n"
            "EOF" % (CGROOT, t))
    check = host.run(["/usr/bin/python3", WATCHER, "--config", "/run/watcher/config.yml", "--check"])
    assert "valid, 1 tasks" in check.stdout
    start(host, t, "tcp/31002")
    assert once(host, "/run/watcher/config.yml")["violations"] == {"t": "tcp 31002"}


def test_sighup_reloads_a_policy_edit_the_change_check_cannot_see(host, cg):
    """Same size, same inode, mtime put back: only SIGHUP makes the daemon read the file again."""
    t = cg.make("t")
    path = write_config(host, {"watch_interval": 0.2, "policy_dir": "/run/watcher/policy.d"},
                        {"t": {"name": "t", "cgroup": t, "ports": "31000"}})
    start(host, t, "tcp/31444")
    daemon = host.spawn(["/usr/bin/python3", WATCHER, "--config", path])
    try:
        _wait(lambda: [e["event"] for e in events(host)] == ["violation"])
        daemon.send_signal(signal.SIGSTOP)  # no scan between the write and the mtime put back
        host.sh("f=/run/watcher/policy.d/t.json; touch -r $f /run/ref; c=$(sed 's/31000/31444/' $f);"
                " printf '%s\\n' \"$c\" > $f; touch -r /run/ref $f")
        daemon.send_signal(signal.SIGCONT)
        time.sleep(1.0)  # several scans: the edit went unnoticed
        assert [e["event"] for e in events(host)] == ["violation"]
        daemon.send_signal(signal.SIGHUP)  # (nsenter exec'd the daemon: this is its pid)
        _wait(lambda: [e["event"] for e in events(host)] == ["violation", "violation_cleared"])
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


def test_the_daemon_is_ready_only_after_its_first_scan_and_survives_a_reload_right_after(host, cg):
    """Type=notify: systemd's start/restart return at READY=1, so a reload can follow at once.

    A SIGHUP before the handler is in place would end the daemon, and systemd counts that as a
    clean exit it does not restart (seen on a loaded 12-host rollout before the unit was notify).
    """
    t = cg.make("t")
    path = write_config(host, {"watch_interval": 30, "policy_dir": "/run/watcher/policy.d"},
                        {"t": {"name": "t", "cgroup": t, "ports": "31000"}})
    start(host, t, "tcp/31444")
    address = os.path.join(REPO, ".build", "notify-%s.sock" % uuid.uuid4().hex[:8])
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(20)
    daemon = host.spawn(["env", "NOTIFY_SOCKET=%s" % address, "/usr/bin/python3", WATCHER, "--config", path])
    try:
        assert receiver.recv(100) == b"READY=1"
        assert [e["event"] for e in events(host)] == ["violation"]  # the first scan came before READY
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert daemon.poll() is None, "the daemon ended on a SIGHUP right after READY"
    finally:
        receiver.close()
        os.unlink(address)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)


BUILD_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.import_role:
        name: hostnet.isolation.ports_watcher
        tasks_from: build
    - ansible.builtin.set_fact:
        shebang: "{{ (ports_watcher_module_args.executable_content | b64decode(encoding='latin-1')).splitlines()[0] }}"
        shared: "{{ ports_watcher_module_args.executable_content == ports_watcher_build.content }}"
"""


def test_the_build_is_made_once_and_again_only_for_a_host_with_another_python(tmp_path):
    """The host_network role templates ports_watcher_module_args in its module task: the run_once build
    serves every host whose #! line it fits; a host with another ports_watcher_python gets its own."""
    inventory = {"all": {"hosts": {
        "same-1": {"ansible_connection": "local"}, "same-2": {"ansible_connection": "local"},
        "other": {"ansible_connection": "local", "ports_watcher_python": "/usr/bin/python3.11"}}}}
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(BUILD_PLAY)
    proc = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(tmp_path / "hosts.json"),
                           str(tmp_path / "play.yml"), "-e", json.dumps({"ports_watcher_build_dir": str(tmp_path / "cache")})],
                          env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = {}
    for play in json.loads(proc.stdout)["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                facts.setdefault(host, {}).update(result.get("ansible_facts") or {})
    assert facts["same-1"]["shebang"] == facts["same-2"]["shebang"] == "#!/usr/bin/python3"
    assert facts["same-1"]["shared"] and facts["same-2"]["shared"]
    assert facts["other"]["shebang"] == "#!/usr/bin/python3.11" and not facts["other"]["shared"]
