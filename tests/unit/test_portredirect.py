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

from module_utils import portranges, portredirect
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
