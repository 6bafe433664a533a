# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""port_redirect's u32 keys survive pyroute2's encoder and come back as the same port block.

pyroute2 decodes u32 selectors wrongly (it reads the keys 4 bytes early), so the module parses the
raw selector itself; this checks that parser against what pyroute2 actually puts on the wire.
"""

import struct

import pytest
from hypothesis import given, strategies as st
from pyroute2.netlink.rtnl.tcmsg import cls_u32, tcmsg

from module_utils import contract, portranges, port_redirect as portredirect
from module_utils.errors import ValidationError


def _wire(keys):
    """The TCA_U32_SEL payload of the filter request pyroute2 builds for ``keys``, cut out of the
    encoded message the way the module cuts it out of the kernel's dump."""
    msg = tcmsg()
    msg["index"], msg["parent"], msg["info"] = 2, portredirect.INGRESS, (0x100 << 16) | 8
    msg["attrs"] = [["TCA_KIND", "u32"], ["TCA_OPTIONS", cls_u32.get_parameters({
        "keys": keys, "target": 0x10000,
        "action": {"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": 3}})]]
    msg.encode()
    sent = tcmsg(msg.data)
    sent.decode()
    sel = sent.get_attr("TCA_OPTIONS").get_attr("TCA_U32_SEL")
    return bytes(sel.data[sel.offset + 4:sel.offset + sel.length])


@given(st.integers(1, 65535), st.integers(0, 16), st.sampled_from([6, 17]),
       st.one_of(st.none(), st.ip_addresses(v=4).map(str)))
def test_keys_round_trip_through_the_wire_format(port, bits, proto, address):
    size = 1 << bits
    first = port & ~(size - 1) & 0xFFFF
    raw = _wire(portredirect.port_keys(proto, first, size, address))
    assert portredirect._port_block(portredirect.parse_selector(raw)) == (proto, first, size, address)


@given(st.integers(1, 65535), st.integers(1, 65535))
def test_blocks_cover_exactly_the_range(a, b):
    first, last = min(a, b), max(a, b)
    spec_blocks = [(f, 0x10000 - m) for f, m in portranges.blocks([(first, last)])]
    covered = set()
    for start, size in spec_blocks:
        assert start % size == 0  # aligned: one value/mask match
        covered.update(range(start, start + size))
    assert covered == set(range(first, last + 1))


def test_selector_header_is_skipped():
    raw = struct.pack("=BBBxHHhhI", 1, 0, 1, 0, 0, 0, 0, 0) + struct.pack(">II", 0xFF0000, 0x060000) \
        + struct.pack("=ii", 8, 0)
    assert portredirect.parse_selector(raw) == {9: (6, 0xFF)}


@pytest.mark.parametrize("kwargs,field", [
    ({"ports": "8000", "devices": ["eth0", "eth0"]}, "devices"),
    ({"ports": "8000", "protocols": ["icmp"]}, "protocols[0]"),
    ({"ports": ""}, "ports"),
    ({}, "ports"),
    ({"state": "absent", "ports": "8000"}, "ports"),
    ({"ports": "8000", "address": "::1"}, "address"),
])
def test_spec_errors_name_the_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        portredirect.RedirectSpec("veth-x", **kwargs)
    assert err.value.field == field


VALID = {"veth": "veth-a", "ports": "31000-31009", "devices": ["eth0"]}


@pytest.mark.parametrize("name,value", [(n, v) for n, o in sorted(portredirect.OPTIONS.items()) for v in o["bad"]])
def test_every_bad_value_is_refused_on_the_controller_naming_its_field(name, value):
    with pytest.raises(ValidationError) as err:
        portredirect.spec(dict(VALID, **{name: value}), host=False)
    assert err.value.field.split("[")[0] == name, err.value


@pytest.mark.parametrize("params", [
    {"netns": "no-such-namespace"}, {"netns": "/no/such/handle"}, {"netns_pid": 2 ** 22 + 1},
    {"netns": "web", "netns_dir": "/no/such/dir"},
])
def test_the_controller_check_does_not_look_at_the_host(params):
    """host=False: a namespace that is not there (here) is no reason to refuse: the host decides."""
    spec = portredirect.spec(dict(VALID, **params), host=False)
    assert spec.ports == [(31000, 31009)] and spec.veth == "veth-a"


def test_a_namespace_the_run_creates_need_not_exist_yet():
    planned = contract.Planned()
    planned.add_netns("/run/netns/hn-redir-planned")
    with pytest.raises(ValidationError) as err:
        portredirect.spec(dict(VALID, netns="hn-redir-planned", netns_dir="/run/netns"))
    assert err.value.field == "netns" and "does not exist" in err.value.reason
    spec = portredirect.spec(dict(VALID, netns="hn-redir-planned", netns_dir="/run/netns"), planned=planned)
    assert spec.netns == "/run/netns/hn-redir-planned"


@pytest.mark.parametrize("params,field", [
    ({"netns": "web", "netns_pid": 1}, "netns"),  # the module's mutually_exclusive, refused without Ansible
    ({"ports": None}, "ports"),                    # its required_if
    ({"devices": "eth0,eth0"}, "devices"),         # a comma-separated list, as Ansible's type: list reads it
    ({"protocols": [["tcp"]]}, "protocols[0]"),
])
def test_what_ansible_checks_is_refused_by_the_spec_too(params, field):
    with pytest.raises(ValidationError) as err:
        portredirect.spec(dict(VALID, **params), host=False)
    assert err.value.field == field


def test_the_module_options_are_the_schema():
    spec = contract.argument_spec(portredirect.OPTIONS)
    assert spec["devices"] == {"type": "list", "elements": "str", "default": ["eth0"]}
    assert "bad" not in spec["ports"]
