# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ephemeral_ports' spec: every refusal that needs no look at the host is made on the controller."""

import pytest

from module_utils import contract, ephemeral_ports as ephemeral
from module_utils.errors import ValidationError

VALID = {"container": "web", "netns": "web", "agent_ports": "31000-32000"}


@pytest.mark.parametrize("name,value", [(n, v) for n, o in sorted(ephemeral.OPTIONS.items()) for v in o["bad"]])
def test_every_bad_value_is_refused_on_the_controller_naming_its_field(name, value):
    with pytest.raises(ValidationError) as err:
        ephemeral.spec(dict(VALID, **{name: value}), host=False)
    assert err.value.field == name, err.value


@pytest.mark.parametrize("params,field,why", [
    # a range the pool, the agent's ports or the privileged ports rule out whatever the host holds: these
    # passed the constructor and were refused on the host, at allocation
    ({"range": "31744-32767"}, "range", "the agent's ports 31000-32000"),
    ({"range": "40960-41983", "pool": "1024-32767"}, "range", "outside the pool 1024-32767"),
    ({"pool": "1024-4095", "size": 4096}, "size", "no free aligned block of 4096 ports"),
    ({"pool": "30000-33000", "size": 2048}, "size", "no free aligned block of 2048 ports"),
    ({"netns_dir": "netns"}, "netns_dir", "not an absolute path"),
    ({"netns": None, "netns_pid": 0}, "netns_pid", "not a process id"),
    ({"state_file": "/run/hostnet/"}, "state_file", "not the absolute path of a file"),
    # the module's mutually_exclusive and required_if, refused without Ansible
    ({"netns_pid": 1}, "netns", "either netns or netns_pid"),
    ({"netns": None}, "netns", "required"),
    # state=absent checks its options too (it only leaves the namespace alone)
    ({"state": "absent", "size": 1000}, "size", "not a power of two"),
])
def test_refused_before_the_host_is_read(params, field, why):
    with pytest.raises(ValidationError) as err:
        ephemeral.spec(dict(VALID, **params), host=False)
    assert err.value.field == field and why in err.value.reason, err.value


def test_the_controller_check_does_not_look_at_the_host():
    spec = ephemeral.spec(dict(VALID, netns="no-such-namespace", state_file="/no/such/dir/e.json"), host=False)
    assert (spec.netns, spec.size, spec.state_file) == ("/var/run/netns/no-such-namespace", 1024, "/no/such/dir/e.json")
    assert ephemeral.spec(dict(VALID, netns=None, netns_pid=2 ** 22 + 1), host=False).netns == "/proc/4194305/ns/net"


def test_a_namespace_the_run_creates_need_not_exist_yet():
    params = dict(VALID, netns="hn-eph-planned", netns_dir="/run/netns")
    with pytest.raises(ValidationError) as err:
        ephemeral.spec(params)
    assert err.value.field == "netns" and "does not exist" in err.value.reason
    planned = contract.Planned()
    planned.add_netns("/run/netns/hn-eph-planned")
    assert ephemeral.spec(params, planned=planned).netns == "/run/netns/hn-eph-planned"


def test_the_module_option_range_is_the_requested_range():
    spec = ephemeral.spec(dict(VALID, range="40960-41983", size=None), host=False)
    assert spec.requested == (40960, 41983) and spec.size == 1024
    assert ephemeral.spec(dict(VALID, size="256"), host=False).size == 256  # as Ansible's type: int reads it
