# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.netns destroys only what it owns (issue #17, item 8).

A stand-in for /etc, made inside the hermetic host's private /run (never the real /etc), holds what a system
directory holds: a non-empty file, live symlinks (absolute and relative) and a directory with a
filesystem mounted on it. Pointing netns_dir or symlink_dir at it must never replace, remove or
unmount any of them.
"""

import pytest

from harness.assertions import assert_converges, assert_rejected
from harness.runner import run_module

MOD = "hostnet.isolation.netns"
# Under /run/mesos so that the harness's host snapshot lists its files as well.
STANDIN = "/run/mesos/etc"
PASSWD = "root:x:0:0:root:/root:/bin/sh\n"


def _make_standin(host):
    host.sh(
        "mkdir -p %(d)s/data /run/mesos/usr/zoneinfo"
        " && printf '%(passwd)s' > %(d)s/passwd"
        " && printf 'TZif2 not really\\n' > /run/mesos/usr/zoneinfo/UTC"
        " && printf 'ID=debian\\n' > /run/mesos/usr/os-release"
        " && ln -s /run/mesos/usr/zoneinfo/UTC %(d)s/localtime"
        " && ln -s ../usr/os-release %(d)s/os-release"
        " && mount -t tmpfs standin-data %(d)s/data && echo kept > %(d)s/data/file"
        % {"d": STANDIN, "passwd": PASSWD.replace("\n", "\\n")})


def _standin_state(host):
    """Every entry of the stand-in (type, size, link target, content) and the mounts below it."""
    listing = host.sh("cd %s && find . -printf '%%p %%y %%l\\n' | sort"
                      " && find . -type f -exec sha256sum {} + | sort" % STANDIN).stdout
    mounts = sorted(" ".join((line.split()[4], line.split(" - ")[1].split()[0]))
                    for line in open("/proc/%d/mountinfo" % host.pid)
                    if line.split()[4].startswith(STANDIN + "/"))
    return {"listing": listing, "mounts": mounts,
            "passwd": host.sh("cat %s/passwd" % STANDIN).stdout,
            "links resolve to": host.sh("cat %s/localtime %s/os-release" % (STANDIN, STANDIN)).stdout}


def _without(listing, *entries):
    """``listing`` less the lines about ``entries`` (the paths a run removed)."""
    gone = set("./" + entry for entry in entries)
    return "".join(line + "\n" for line in listing.splitlines() if not gone & set(line.split()))


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("name,what", [("passwd", "a non-empty regular file"), ("localtime", "a symlink"),
                                       ("data", "a directory and a mount point (tmpfs)")])
def test_what_is_no_handle_is_never_replaced_or_removed(host, python, name, what, state):
    _make_standin(host)
    before = _standin_state(host)
    result = assert_rejected(host, MOD, {"name": name, "state": state, "netns_dir": STANDIN}, python,
                             "name", "%s/%s exists and is %s, not a network namespace handle" % (STANDIN, name, what))
    assert result["field"] == "name"
    assert _standin_state(host) == before


def test_reconcile_leaves_what_is_no_orphan_handle_in_netns_dir_alone(host, python):
    _make_standin(host)
    app = host.start_app()
    host.sh("touch {d}/4242"  # the empty file a crashed `ip netns add` leaves
            " && touch {d}/in-use && mount --bind /proc/{app}/ns/net {d}/in-use"
            " && unshare --net sh -c 'touch {d}/orphan && mount --bind /proc/self/ns/net {d}/orphan'"
            .format(d=STANDIN, app=app))
    before = _standin_state(host)
    args = {"state": "reconciled", "netns_dir": STANDIN, "symlink_dir": "/run/mesos/netns", "handle_pattern": ".*"}
    result = assert_converges(host, MOD, args, python)
    assert result["removed"] == [STANDIN + "/4242", STANDIN + "/orphan"]
    left = dict((entry["path"], entry["reason"]) for entry in result["left_alone"])
    assert left == {
        STANDIN + "/data": "a directory and a mount point (tmpfs), not a network namespace handle",
        STANDIN + "/in-use": "its namespace is in use by pid %d" % app,
        STANDIN + "/localtime": "a symlink, not a network namespace handle",
        STANDIN + "/os-release": "a symlink, not a network namespace handle",
        STANDIN + "/passwd": "a non-empty regular file, not a network namespace handle",
    }
    after = _standin_state(host)
    assert after["mounts"] == [m for m in before["mounts"] if not m.startswith(STANDIN + "/orphan ")]
    assert after["listing"] == _without(before["listing"], "4242", "orphan")
    assert after["passwd"] == PASSWD and after["links resolve to"] == before["links resolve to"]
    # the namespace in use is still pinned by its handle
    assert host.sh("stat -L -c %%i %s/in-use /proc/%d/ns/net | uniq | wc -l" % (STANDIN, app)).stdout.strip() == "1"


def test_reconcile_removes_only_dead_links_into_netns_dir(host, python):
    _make_standin(host)
    host.sh("ip netns add web && ln -s /var/run/netns/web {d}/live-ns && ln -s /var/run/netns/31337 {d}/dead"
            " && ln -s ../../netns/31338 {d}/dead-relative && ln -s /run/nowhere/31339 {d}/elsewhere"
            .format(d=STANDIN))
    before = _standin_state(host)
    args = {"state": "reconciled", "symlink_dir": STANDIN}
    result = assert_converges(host, MOD, args, python)
    assert result["removed"] == [STANDIN + "/dead", STANDIN + "/dead-relative"]
    left = dict((entry["path"], entry["reason"].split(",")[0]) for entry in result["left_alone"])
    assert left == {
        STANDIN + "/data": "not a symlink (a directory and a mount point (tmpfs))",
        STANDIN + "/elsewhere": "a symlink to /run/nowhere/31339",
        STANDIN + "/localtime": "a symlink to /run/mesos/usr/zoneinfo/UTC",
        STANDIN + "/os-release": "a symlink to ../usr/os-release",
        STANDIN + "/passwd": "not a symlink (a non-empty regular file)",
    }
    after = _standin_state(host)
    assert after["listing"] == _without(before["listing"], "dead", "dead-relative")
    assert after["mounts"] == before["mounts"] and after["links resolve to"] == before["links resolve to"]
    assert host.sh("ip netns list").stdout.split() == ["web"]


def test_a_live_symlink_to_something_else_is_not_replaced(host, python):
    _make_standin(host)
    before = _standin_state(host)
    assert_rejected(host, MOD, {"name": "web", "symlinks": [STANDIN + "/localtime"]}, python, "symlinks[0]",
                    "%s/localtime is a symlink to /run/mesos/usr/zoneinfo/UTC, which is neither a network "
                    "namespace handle nor a dead handle in /var/run/netns; refusing to replace it" % STANDIN)
    assert _standin_state(host) == before


def test_a_dead_link_into_netns_dir_is_repointed(host, python):
    host.sh("mkdir -p /run/mesos/netns && ln -s /var/run/netns/gone /run/mesos/netns/c1")
    result = assert_converges(host, MOD, {"name": "web", "symlinks": ["/run/mesos/netns/c1"]}, python)
    assert [a["action"] for a in result["actions"]] == ["create_handle", "replace_symlink"]
    assert host.sh("readlink /run/mesos/netns/c1").stdout.strip() == "/var/run/netns/web"


def test_the_file_below_a_namespace_mount_is_not_removed(host, python):
    # someone mounted a namespace over a file of theirs: unpinning it must not delete their file
    _make_standin(host)
    app = host.start_app()
    host.sh("mount --bind /proc/%d/ns/net %s/passwd" % (app, STANDIN))
    result = run_module(host, MOD, {"name": "passwd", "state": "absent", "netns_dir": STANDIN}, python)
    assert result.get("failed"), result
    assert "%s/passwd: below the namespace mount is a non-empty regular file" % STANDIN in result["msg"]
    assert "rolled back cleanly" in result["msg"]
    # the namespace is pinned again, and below it the file is intact
    assert host.sh("stat -L -c %%i %s/passwd /proc/%d/ns/net | uniq | wc -l" % (STANDIN, app)).stdout.strip() == "1"
    host.sh("umount %s/passwd" % STANDIN)
    assert host.sh("cat %s/passwd" % STANDIN).stdout == PASSWD
