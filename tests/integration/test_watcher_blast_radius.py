# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile policy never widens what the ports watcher touches (issue #17 items 1, 4 and 9).

Safety: every watcher here runs with ``cgroup_root`` set to a cgroup subtree this test made
(``<base>/root``), holding only processes the test started, so even a watcher that kills
"everything below the root" (the bug) can only kill test processes. The daemon itself runs in a
cgroup of that subtree, to show whether it kills itself. Policy files are read under a 1 GiB
address-space limit, so a watcher that reads /dev/zero to the end fails instead of eating memory.
"""

import json
import signal
import time

import pytest

import test_ports_watcher
from test_ports_watcher import CGROOT, WATCHER, _wait, alive, events, start

cg = test_ports_watcher.cg  # the fixture: test cgroups under the machine's cgroup2 mount, removed afterwards

LIMIT = ["prlimit", "--as=1073741824", "--"]
POLICY_DIR = "/run/watcher/policy.d"


def write(host, name, text, mode="0644"):
    """A policy drop-in written in place (the tests that need rename say so)."""
    host.sh("mkdir -p %s && cat > %s/%s <<'EOF'\n%s\nEOF\nchmod %s %s/%s"
            % (POLICY_DIR, POLICY_DIR, name, text, mode, POLICY_DIR, name))


def config(host, root, **options):
    options = dict({"mode": "enforce", "watch_interval": 0.2, "policy_dir": POLICY_DIR, "syslog": False,
                    "cgroup_root": "%s/%s" % (CGROOT, root), "event_log": "/run/watcher/events.jsonl"}, **options)
    host.sh("mkdir -p %s && cat > /run/watcher/config.json <<'EOF'\n%s\nEOF" % (POLICY_DIR, json.dumps(options)))
    return "/run/watcher/config.json"


def check(host, path, env=()):
    return host.run(["env"] + list(env) + LIMIT + ["/usr/bin/python3", WATCHER, "--config", path, "--check"],
                    check=False, timeout=20)


def once(host, path, env=()):
    proc = host.run(["env"] + list(env) + LIMIT + ["/usr/bin/python3", WATCHER, "--config", path,
                                                   "--once", "--json"], check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def daemon_in(host, cg, rel, path, env=()):
    """The daemon, in the test's cgroup ``rel`` (nsenter and sh exec: the Popen's pid is the daemon)."""
    script = "echo $$ > %s/%s/cgroup.procs && exec env %s %s /usr/bin/python3 %s --config %s" % (
        CGROOT, cg.make(rel), " ".join(env), " ".join(LIMIT), WATCHER, path)
    return host.spawn(["sh", "-c", script])


def stop(daemon):
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=10)


def rejected(host):
    return [e for e in events(host) if e["event"] == "policy_rejected"]


@pytest.fixture
def world(host, cg):
    """Under <base>/root: a task 'web' on its assigned port and a bystander in no task."""
    web = cg.make("root/apps/web")
    path = config(host, cg.make("root"))
    write(host, "web.json", json.dumps({"name": "web", "cgroup": "apps/web", "ports": "31001"}))
    web_proc, _out = start(host, web, "tcp/31001")
    other_proc, _out = start(host, cg.make("root/other"), "tcp/31500")
    report = once(host, path)  # the setup is seen as meant: web runs on its port, no violation
    assert report["tasks"]["web"]["listening"] == ["tcp/31001"] and report["violations"] == {}, report
    host.sh("rm -f /run/watcher/events.jsonl")
    return path, [web_proc, other_proc]


# -- item 1: the watcher can kill every process on the host ---------------------------------------

ROOTS = ["/", ".", "//", "/./"]


@pytest.mark.parametrize("spelling", ROOTS)
def test_a_task_at_the_cgroup_root_is_refused_by_check(host, cg, world, spelling):
    path, procs = world
    write(host, "all.json", json.dumps({"name": "all", "cgroup": spelling, "ports": "31000"}))
    proc = check(host, path)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "%s/all.json.cgroup: %r is the cgroup root" % (POLICY_DIR, spelling) in proc.stderr
    assert all(alive(p.pid) for p in procs)


@pytest.mark.parametrize("spelling", ROOTS)
def test_the_daemon_refuses_a_task_at_the_cgroup_root_and_kills_nothing(host, cg, world, spelling):
    path, procs = world
    daemon = daemon_in(host, cg, "root/watcher", path)
    try:
        time.sleep(1.0)  # scans with the good policy
        write(host, "all.json", json.dumps({"name": "all", "cgroup": spelling, "ports": "31000"}))
        _wait(lambda: rejected(host) or daemon.poll() is not None)
        time.sleep(1.0)  # several scans with the last good policy
        assert daemon.poll() is None, "the watcher is gone"
        assert all(alive(p.pid) for p in procs), "a process was killed"
        (event,) = rejected(host)
        assert "all.json.cgroup" in event["error"] and "cgroup root" in event["error"]
        assert event["tasks_in_force"] == 1
    finally:
        stop(daemon)


def test_a_drop_in_naming_the_parent_of_two_tasks_is_refused(host, cg, world):
    path, procs = world
    write(host, "zz-api.json", json.dumps({"name": "api", "cgroup": "apps/api", "ports": "31002"}))
    procs.append(start(host, cg.make("root/apps/api"), "tcp/31002")[0])
    daemon = daemon_in(host, cg, "root/watcher", path)
    try:
        time.sleep(1.0)
        write(host, "apps.json", json.dumps({"name": "apps", "cgroup": "apps/", "ports": "31000"}))
        proc = check(host, path)
        assert proc.returncode == 2 and "apps.json.cgroup: 'apps' contains the cgroup of task" in proc.stderr, \
            proc.stderr
        _wait(lambda: rejected(host) or daemon.poll() is not None)
        time.sleep(1.0)
        assert all(alive(p.pid) for p in procs) and daemon.poll() is None
        assert "contains the cgroup of task" in rejected(host)[0]["error"]
    finally:
        stop(daemon)


def test_a_task_holding_the_watchers_own_cgroup_is_refused(host, cg, world):
    path, procs = world
    procs.append(start(host, cg.make("root/ops/tool"), "tcp/31777")[0])
    daemon = daemon_in(host, cg, "root/ops/watcher", path)
    try:
        time.sleep(1.0)
        write(host, "ops.json", json.dumps({"name": "ops", "cgroup": "ops", "ports": "31000"}))
        _wait(lambda: rejected(host) or daemon.poll() is not None)
        time.sleep(1.0)
        assert daemon.poll() is None, "the watcher killed itself"
        assert all(alive(p.pid) for p in procs)
        assert "ops.json.cgroup: 'ops' contains the watcher's own cgroup" in rejected(host)[0]["error"]
    finally:
        stop(daemon)


@pytest.mark.parametrize("reported,why", [("/", "is the cgroup root"), ("/apps", "overlaps the cgroup of task 'web'")])
def test_a_unit_whose_cgroup_is_the_root_or_holds_a_task_is_never_killed_through_it(host, cg, world, reported, why):
    """systemd is faked by a stub systemctl on PATH inside the hermetic host."""
    path, procs = world
    host.sh("mkdir -p /run/stub && printf '#!/bin/sh\\necho %s\\n' > /run/stub/systemctl && chmod +x /run/stub/systemctl"
            % reported)
    write(host, "batch.json", json.dumps({"name": "batch", "systemd_unit": "batch.service", "ports": "31000"}))
    report = once(host, path, env=["PATH=/run/stub:/usr/sbin:/usr/bin:/sbin:/bin"])
    status = report["tasks"]["batch"]["status"]
    assert status.startswith("refused: %s/batch.json.systemd_unit" % POLICY_DIR) and why in status, status
    assert report["violations"] == {} and report["actions"] == []
    assert all(alive(p.pid) for p in procs)
    assert [e["event"] for e in events(host)] == ["task_refused"]


# -- item 4: a task escapes by moving its first process into a netns of its own --------------------

def test_a_task_whose_first_process_is_in_another_netns_is_still_killed(host, cg):
    t = cg.make("root/t")
    path = config(host, cg.make("root"), tasks=[{"name": "t", "cgroup": "t", "ports": "31000"}], policy_dir=None)
    start(host, t, "tcp/31999", netns_of_its_own=True)   # first in cgroup.procs
    start(host, t, "tcp/31500")                           # the host's: a violation
    report = once(host, path)
    assert report["violations"] == {"t": "tcp 31500"}
    assert [a["action"] for a in report["actions"]] == ["killed"]
    assert cg.pids("root/t") == []


def test_prevent_keeps_the_filter_of_a_task_whose_first_process_is_in_another_netns(host, cg):
    t = cg.make("root/t")
    path = config(host, cg.make("root"), mode="prevent", tasks=[{"name": "t", "cgroup": "t", "ports": "31000"}],
                  policy_dir=None)
    start(host, t, "tcp/31999", netns_of_its_own=True)
    assert {"task": "t", "action": "bind filter attached"} in once(host, path)["actions"]
    _proc, out = start(host, t, "tcp/31501")
    assert out.splitlines() == ["tcp/31501 1"]  # EPERM
    assert once(host, path)["tasks"]["t"]["status"] == "running"


# -- item 9: the policy files can stop enforcement -----------------------------------------------

def test_a_cgroup_with_nul_is_refused_and_the_daemon_keeps_enforcing(host, cg):
    t = cg.make("root/t")
    path = config(host, cg.make("root"))
    write(host, "t.json", json.dumps({"name": "t", "cgroup": "t", "ports": "31000"}))
    write(host, "nul.json", json.dumps({"name": "n", "cgroup": "t\u0000x", "ports": "31000"}))
    proc = check(host, path)
    assert proc.returncode == 2 and "nul.json.cgroup" in proc.stderr and "control" in proc.stderr, proc.stderr
    host.sh("rm %s/nul.json" % POLICY_DIR)
    daemon = daemon_in(host, cg, "root/watcher", path)
    try:
        time.sleep(1.0)
        write(host, "nul.json", json.dumps({"name": "n", "cgroup": "t\u0000x", "ports": "31000"}))
        _wait(lambda: rejected(host) or daemon.poll() is not None)
        violator, _out = start(host, t, "tcp/31444")
        _wait(lambda: not alive(violator.pid) or daemon.poll() is not None)
        assert daemon.poll() is None and not alive(violator.pid)
    finally:
        stop(daemon)


@pytest.mark.parametrize("make,why", [
    ("mkfifo $F", "is not a regular file"),
    ("ln -s /dev/zero $F", "is a symbolic link"),
    ("{ printf '{\"name\": \"big\", \"cgroup\": \"b\"}'; head -c 2000000 /dev/zero | tr '\\0' ' '; } > $F",
     "is larger than 1048576 bytes"),
], ids=["fifo", "symlink-to-dev-zero", "oversized"])
def test_a_hostile_policy_file_is_refused_without_hanging(host, cg, make, why):
    path = config(host, cg.make("root"))
    f = "%s/bad.json" % POLICY_DIR
    host.sh("F=%s; %s" % (f, make))
    proc = check(host, path)  # a hang is a TimeoutExpired, a memory blow-up a MemoryError
    assert proc.returncode == 2 and "%s: %s %s" % (f, f, why) in proc.stderr, proc.stderr


def test_a_yaml_error_never_quotes_the_file(host, cg):
    t = cg.make("root/t")
    path = config(host, cg.make("root"))
    write(host, "t.yml", "name: t\ncgroup: t\nports: 31000")
    daemon = daemon_in(host, cg, "root/watcher", path)
    try:
        time.sleep(1.0)
        write(host, "t.yml", "name: t\ncgroup: t\ntoken: hunter2-secret: [\nports: 31000", mode="0600")
        _wait(lambda: rejected(host))
        assert "hunter2" not in host.sh("cat /run/watcher/events.jsonl").stdout
        assert "t.yml is not valid YAML (line 3, column" in rejected(host)[0]["error"]
        assert "hunter2" not in check(host, path).stderr
    finally:
        stop(daemon)


def test_a_policy_file_rewritten_in_place_never_gets_a_legitimate_task_killed(host, cg):
    """A writer that truncates and writes in two steps: a scan between them sees 'ports: 31000'."""
    t = cg.make("root/t")
    path = config(host, cg.make("root"))
    write(host, "t.yml", "name: t\ncgroup: t\nports: 31000,31444")
    task, _out = start(host, t, "tcp/31444")
    daemon = daemon_in(host, cg, "root/watcher", path)
    try:
        time.sleep(1.0)
        host.sh("f=%s/t.yml; for i in $(seq 15); do printf 'name: t\\ncgroup: t\\nports: 31000' > $f; sleep 0.08;"
                " printf ',31444\\n' >> $f; sleep 0.3; done" % POLICY_DIR)
        time.sleep(0.5)
        assert alive(task.pid), "a task on its assigned port was killed"
        assert daemon.poll() is None
    finally:
        stop(daemon)
