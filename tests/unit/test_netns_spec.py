# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of netns input happens before any host access that could change something."""

import pytest

from module_utils.errors import ValidationError
from module_utils.netns import NetnsSpec


@pytest.mark.parametrize("kwargs,field", [
    ({"name": "a/b"}, "name"),
    ({"state": "present"}, "name"),
    ({"name": "x", "state": "gone"}, "state"),
    ({"name": "x", "netns_dir": "relative"}, "netns_dir"),
    ({"name": "x", "pid": 0}, "pid"),
    ({"name": "x", "symlinks": ["/a", "/a"]}, "symlinks[1]"),
    ({"name": "x", "symlinks": ["/var/run/netns/x"]}, "symlinks[0]"),
    ({"state": "reconciled"}, "symlink_dir"),
    ({"state": "reconciled", "symlink_dir": "/var/run/netns"}, "symlink_dir"),
    ({"state": "reconciled", "symlink_dir": "/m", "name": "x"}, "name"),
    ({"state": "reconciled", "symlink_dir": "/m", "handle_pattern": "("}, "handle_pattern"),
    ({"name": "x", "keep": ["y"]}, "keep"),
    ({"name": "x", "netns_dir": "/"}, "netns_dir"),
    ({"name": "x", "netns_dir": "//proc/1"}, "netns_dir"),
    ({"name": "x", "netns_dir": "/sys/fs"}, "netns_dir"),
    ({"name": "x", "netns_dir": "/dev"}, "netns_dir"),
    ({"name": "x", "netns_dir": "/run/netns/../../etc"}, "netns_dir"),
    ({"name": "x", "symlinks": ["/run/a/../b"]}, "symlinks[0]"),
    ({"state": "reconciled", "symlink_dir": "/proc/self"}, "symlink_dir"),
    ({"state": "reconciled", "symlink_dir": "/"}, "symlink_dir"),
])
def test_bad_specs_name_their_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        NetnsSpec(**kwargs)
    assert err.value.field == field


def test_paths_are_normalised():
    spec = NetnsSpec(name="web", netns_dir="/var/run/netns/", symlinks=["/var/run/mesos//netns/c1"])
    assert spec.handle == "/var/run/netns/web" and spec.symlinks == ["/var/run/mesos/netns/c1"]


def test_a_directory_merely_named_like_a_kernel_one_is_fine():
    assert NetnsSpec(name="x", netns_dir="/devices/netns").handle == "/devices/netns/x"


def test_validation_reads_nothing_from_the_host():
    # it runs on the controller too; whether the pid or the paths exist is checked when planning
    spec = NetnsSpec(name="x", pid=2 ** 22 + 1, symlinks=["/etc/passwd"])
    assert spec.pid == 2 ** 22 + 1 and spec.symlinks == ["/etc/passwd"]
