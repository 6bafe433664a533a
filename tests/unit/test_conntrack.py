# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ctnetlink message parser behind the UDP conntrack flush (the kernel round trip is in
tests/integration/test_cni.py and test_port_mapper.py)."""

import errno
import socket
import struct

import pytest

from module_utils import conntrack


def nla(kind, payload, nested=False):
    return struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0)) + payload + b"\0" * (-len(payload) % 4)


def tuple_attr(kind, family, src, dst, proto, sport, dport):
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    first = 1 if family == 4 else 3  # CTA_IP_V4_SRC / CTA_IP_V6_SRC, then *_DST
    ip = nla(first, socket.inet_pton(af, src)) + nla(first + 1, socket.inet_pton(af, dst))
    l4 = nla(1, bytes([proto])) + nla(2, struct.pack("!H", sport)) + nla(3, struct.pack("!H", dport))
    return nla(kind, nla(1, ip, nested=True) + nla(2, l4, nested=True), nested=True)


def entry(family=4, proto=17, dport=5353, dst="192.0.2.1", zone=None):
    """The attributes of one IPCTNL_MSG_CT_NEW message as the kernel dumps it (orig, reply, status[, zone])."""
    src = "192.0.2.9" if family == 4 else "2001:db8::9"
    orig = tuple_attr(1, family, src, dst, proto, 40000, dport)
    body = orig + tuple_attr(2, family, dst, src, proto, dport, 40000) + nla(3, struct.pack("!I", 0x8))
    if zone is not None:
        body += nla(18, struct.pack("!H", zone))
    return orig, body


@pytest.mark.parametrize("family,dst", [(4, "192.0.2.1"), (6, "2001:db8::1")])
def test_a_udp_entry_to_the_port_is_named_by_its_original_tuple(family, dst):
    orig, body = entry(family=family, dst=dst)
    assert conntrack._udp_entry(bytearray(body), 0, len(body), 5353) == (dst, orig)


def test_the_zone_goes_with_the_name_so_the_delete_finds_the_entry():
    orig, body = entry(zone=7)
    assert conntrack._udp_entry(bytearray(body), 0, len(body), 5353) == ("192.0.2.1", orig + nla(18, b"\0\x07"))


@pytest.mark.parametrize("kwargs", [{"proto": 6}, {"dport": 5354}])
def test_other_protocols_and_ports_are_left_alone(kwargs):
    _orig, body = entry(**kwargs)
    assert conntrack._udp_entry(bytearray(body), 0, len(body), 5353) is None


def test_a_truncated_message_is_skipped_not_misread():
    _orig, body = entry()
    assert conntrack._udp_entry(bytearray(body[:30]), 0, 30, 5353) is None


class FakeSocket:
    """Entries to 5353 at two addresses; refuses the kernel filter like a kernel without CTA_FILTER support."""

    def __init__(self, refuse_filter=False):
        self.refuse_filter = refuse_filter
        self.dumps, self.deleted = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def udp_entries(self, af, port, kernel_filter=True):
        self.dumps.append((af, port, kernel_filter))
        if kernel_filter and self.refuse_filter:
            raise OSError(errno.EINVAL, "Invalid argument")
        return [("192.0.2.1", b"a"), ("192.0.2.7", b"b")] if port == 5353 else []

    def delete(self, af, naming):
        self.deleted.append((af, naming))
        return naming != b"b"  # "b" vanished meanwhile: not counted


def test_only_entries_to_the_wanted_address_are_deleted(monkeypatch):
    fake = FakeSocket()
    monkeypatch.setattr(conntrack, "ConntrackSocket", lambda: fake)
    monkeypatch.setattr(conntrack, "_entry_count", lambda: 2)
    assert conntrack.delete_udp(4, {("192.0.2.1", 5353), ("", 6000)}) == 1
    assert fake.deleted == [(socket.AF_INET, b"a")]
    assert fake.dumps == [(socket.AF_INET, 5353, True), (socket.AF_INET, 6000, True)]


def test_any_address_matches_and_a_vanished_entry_is_not_counted(monkeypatch):
    fake = FakeSocket()
    monkeypatch.setattr(conntrack, "ConntrackSocket", lambda: fake)
    monkeypatch.setattr(conntrack, "_entry_count", lambda: None)  # the kernel does not say: dump anyway
    assert conntrack.delete_udp(6, {("", 5353)}) == 1
    assert fake.deleted == [(socket.AF_INET6, b"a"), (socket.AF_INET6, b"b")]


def test_a_kernel_that_refuses_the_filter_gets_an_unfiltered_dump(monkeypatch):
    fake = FakeSocket(refuse_filter=True)
    monkeypatch.setattr(conntrack, "ConntrackSocket", lambda: fake)
    monkeypatch.setattr(conntrack, "_entry_count", lambda: 5)
    assert conntrack.delete_udp(4, {("", 5353)}) == 1
    assert fake.dumps == [(socket.AF_INET, 5353, True), (socket.AF_INET, 5353, False)]


def test_no_entries_in_the_namespace_opens_no_socket(monkeypatch):
    monkeypatch.setattr(conntrack, "_entry_count", lambda: 0)
    monkeypatch.setattr(conntrack, "ConntrackSocket", None)  # calling it would fail the test
    assert conntrack.delete_udp(4, {("", 5353)}) == 0
