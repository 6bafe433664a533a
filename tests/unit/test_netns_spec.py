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


# -- the contract: spec(host=False) refuses on the controller what the host would -------------------------------

@pytest.mark.parametrize("params,field", [
    # a symlink where a directory the handles need is, or in the kernel's filesystems: it failed on the host
    # ("exists and is not a symlink") after the run had changed other things
    ({"name": "x", "symlinks": ["/var/run/netns"]}, "symlinks[0]"),
    ({"name": "x", "symlinks": ["/var/run"]}, "symlinks[0]"),
    ({"name": "x", "symlinks": ["/"]}, "symlinks[0]"),
    ({"name": "x", "symlinks": ["/proc/self/ns/x"]}, "symlinks[0]"),
    ({"name": "x", "symlinks": ["run/mesos/netns/x"]}, "symlinks[0]"),
    # a bad pattern was only found with state=reconciled; a policy carrying one passed the preflight
    ({"name": "x", "handle_pattern": "[0-9+$"}, "handle_pattern"),
    ({"name": "x", "pid": "1e3"}, "pid"), ({"name": "x", "pid": True}, "pid"),
    ({"state": "reconciled", "symlink_dir": "/m", "keep": {"a": 1}}, "keep"),
])
def test_spec_refuses_without_the_host_naming_the_field(params, field):
    from module_utils import netns
    with pytest.raises(ValidationError) as err:
        netns.spec(params, host=False)
    assert err.value.field == field


def test_every_bad_value_of_the_schema_is_refused_naming_its_field():
    from module_utils import netns
    for name, option in netns.OPTIONS.items():
        for bad in option["bad"]:
            with pytest.raises(ValidationError) as err:
                netns.spec({"name": "web", name: bad}, host=False)
            assert err.value.field.split("[")[0] == name, (name, bad, err.value)


def test_spec_takes_a_templated_pid_as_the_module_would():
    from module_utils import netns
    # "{{ app_pid }}" is text on the controller; Ansible's int type converts it for the module
    assert netns.spec({"name": "x", "pid": "4242"}, host=False).pid == 4242
    # and no host I/O with host=False: the process need not exist, nor the paths
    assert netns.spec({"name": "x", "pid": 2 ** 22 + 1, "symlinks": ["/etc/passwd"]}, host=False).pid == 2 ** 22 + 1


def test_a_string_where_a_list_belongs_is_not_read_letter_by_letter():
    with pytest.raises(ValidationError) as err:
        NetnsSpec(state="reconciled", symlink_dir="/m", keep="web")
    assert err.value.field == "keep"
