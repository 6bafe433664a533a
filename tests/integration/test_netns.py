# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.netns in a hermetic host: what `ip netns` and a process would see."""

import os
import pytest

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.runner import run_module

MOD = "hostnet.isolation.netns"


def _ns_inode(host, path):
    return host.sh("stat -L -c %%i %s" % path).stdout.strip()


def test_create_with_symlinks(host, python):
    result = assert_converges(host, MOD, {"name": "web", "symlinks": ["/var/run/mesos/netns/c1"]}, python)
    assert result["netns"]["exists"] is True
    assert host.sh("ip netns list").stdout.split()[0] == "web"
    assert host.sh("readlink /var/run/mesos/netns/c1").stdout.strip() == "/var/run/netns/web"
    # the namespace is usable through the handle and through the symlink, and it is a new one
    inode = _ns_inode(host, "/var/run/netns/web")
    assert inode == str(result["netns"]["namespace_inode"])
    assert inode != _ns_inode(host, "/proc/self/ns/net")
    assert host.sh("nsenter --net=/var/run/mesos/netns/c1 ip -br link").stdout.split()[0] == "lo"


def test_name_is_matched_exactly(host, python):
    host.sh("ip netns add web-frontend")
    result = assert_converges(host, MOD, {"name": "web"}, python)
    assert [a["action"] for a in result["actions"]] == ["create_handle"]
    assert sorted(host.sh("ip netns list").stdout.split()) == ["web", "web-frontend"]


def test_adopt_and_repoint_process_namespace(host, python):
    pid = host.start_app()
    args = {"name": str(pid), "pid": pid, "symlinks": ["/var/run/mesos/netns/app-1"]}
    assert_converges(host, MOD, args, python)
    assert _ns_inode(host, "/var/run/netns/%d" % pid) == _ns_inode(host, "/proc/%d/ns/net" % pid)
    # the container restarts: the same handle now follows the new process
    pid2 = host.start_app()
    result = assert_converges(host, MOD, dict(args, pid=pid2), python)
    assert [a["action"] for a in result["actions"]] == ["replace_handle"]
    assert _ns_inode(host, "/var/run/netns/%d" % pid) == _ns_inode(host, "/proc/%d/ns/net" % pid2)


def test_absent_removes_handle_and_symlink(host, python):
    run_module(host, MOD, {"name": "web", "symlinks": ["/var/run/mesos/netns/c1", "/run/other/c1"]}, python)
    host.sh("ln -sfn /somewhere/else /run/mesos/netns/c2")
    args = {"name": "web", "state": "absent", "symlinks": ["/var/run/mesos/netns/c1", "/run/mesos/netns/c2"]}
    assert_converges(host, MOD, args, python)
    assert host.sh("ip netns list").stdout.strip() == ""
    assert not os.path.lexists("/proc/%d/root/run/mesos/netns/c1" % host.pid)
    # a listed symlink that points elsewhere is not ours to remove; an unlisted one stays as well
    assert host.sh("readlink /run/mesos/netns/c2").stdout.strip() == "/somewhere/else"
    assert host.sh("readlink /run/other/c1").stdout.strip() == "/var/run/netns/web"


def test_stale_handle_file_is_replaced(host, python):
    host.sh("mkdir -p /run/netns && touch /run/netns/web")
    assert host.sh("ip netns exec web true", check=False).returncode != 0
    result = assert_converges(host, MOD, {"name": "web"}, python)
    assert [a["action"] for a in result["actions"]] == ["remove_stale_handle", "create_handle"]
    host.sh("ip netns exec web true")


def test_reconcile_removes_dangling_symlinks_and_orphans(host, python):
    pid = host.start_app()
    host.sh("ip netns attach %d %d && ip netns add 4242 && ip netns add keepme && ip netns add 777" % (pid, pid))
    host.sh("mkdir -p /run/mesos/netns && ln -s /var/run/netns/%d /run/mesos/netns/live"
            " && ln -s /var/run/netns/31337 /run/mesos/netns/dead" % pid)
    args = {"state": "reconciled", "symlink_dir": "/var/run/mesos/netns", "keep": ["777"]}
    result = assert_converges(host, MOD, args, python)
    assert result["removed"] == ["/var/run/mesos/netns/dead", "/var/run/netns/4242"]
    assert sorted(host.sh("ls /run/netns").stdout.split()) == sorted([str(pid), "777", "keepme"])
    assert host.sh("ls /run/mesos/netns").stdout.split() == ["live"]


def test_failure_midway_leaves_nothing_behind(host, python):
    # the second symlink's parent is a regular file: the handle and the first symlink must be undone
    host.sh("mkdir -p /run/mesos && touch /run/mesos/not-a-dir")
    before = host.snapshot()
    args = {"name": "web", "symlinks": ["/run/mesos/netns/ok", "/run/mesos/not-a-dir/link"]}
    result = run_module(host, MOD, args, python)
    assert result.get("failed")
    assert "/run/mesos/not-a-dir/link" in result["msg"] and "rolled back cleanly" in result["msg"]
    assert_same(before, host.snapshot(), "a failed run")


BAD = [
    ({"name": "a/b"}, "name", "not a valid namespace name"),
    ({"name": ".."}, "name", "not a valid namespace name"),
    ({"name": "x" * 256}, "name", "not a valid namespace name"),
    ({"state": "present"}, "name", None),
    ({"name": "web", "state": "running"}, "state", None),
    ({"name": "web", "pid": 999999999}, "pid", "no process"),
    ({"name": "web", "pid": -5}, "pid", "not a process id"),
    ({"name": "web", "state": "absent", "pid": 1}, "pid", "only used with state=present"),
    ({"name": "web", "symlinks": ["relative/link"]}, "symlinks[0]", "not an absolute path"),
    ({"name": "web", "symlinks": ["/run/a", "/run/a"]}, "symlinks[1]", "listed twice"),
    ({"name": "web", "symlinks": ["/run/regular-file"]}, "symlinks[0]", "not a symlink"),
    ({"name": "web", "symlinks": ["/var/run/netns/web"]}, "symlinks[0]", "the handle itself"),
    ({"name": "web", "netns_dir": "netns"}, "netns_dir", "not an absolute path"),
    ({"state": "reconciled"}, "symlink_dir", None),
    ({"state": "reconciled", "symlink_dir": "/run/m", "handle_pattern": "(["}, "handle_pattern",
     "not a regular expression"),
    ({"state": "reconciled", "symlink_dir": "/run/m", "keep": ["a/b"]}, "keep[0]", None),
    ({"name": "web", "symlink_dir": "/run/m"}, "symlink_dir", "only used with state=reconciled"),
]


@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field, reason):
    host.sh("touch /run/regular-file")
    assert_rejected(host, MOD, args, python, field, reason)
