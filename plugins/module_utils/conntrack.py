# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deleting UDP conntrack entries by original destination port, over ctnetlink.

A hand-rolled dump and delete (standard library only), like ``sockdiag``: the CNI plugin removes
the conntrack entries of a container's UDP host ports on every DEL, and importing pyroute2 for it
cost ~0.1 s and two subprocesses (its ``platform`` probe runs ``uname -p`` and ``file -b``), more
than the rest of the DEL. IPv4 and IPv6 both go through here (pyroute2's dump lists IPv4 only).

The dump asks the kernel to filter by protocol and destination port (``CTA_FILTER``, Linux 5.8+);
older kernels ignore the filter and send every entry, so each entry is matched here as well.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import socket
import struct

from .nlsock import NetlinkSocket

NETLINK_NETFILTER = 12
_CT_NEW, _CT_GET, _CT_DELETE = 0, 1, 2
_SUBSYS_CTNETLINK = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF
# enum ctattr_type / ctattr_tuple / ctattr_ip / ctattr_l4proto / ctattr_filter (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_ZONE, CTA_FILTER = 1, 18, 25
CTA_TUPLE_IP, CTA_TUPLE_PROTO, CTA_TUPLE_ZONE = 1, 2, 3
CTA_IP_V4_DST, CTA_IP_V6_DST = 2, 4
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 1, 2
_FILTER_PROTO_NUM, _FILTER_PROTO_DST_PORT = 1 << 3, 1 << 5
IPPROTO_UDP = 17

_NLH = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")  # nfgen_family, version (NFNETLINK_V0), res_id (big endian, 0)
_NLA = struct.Struct("=HH")
_I32 = struct.Struct("=i")
_BE16 = struct.Struct("!H")


def _attr(kind, payload):
    head = _NLA.pack(4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _attrs(buf, start, end):
    """(type without flags, payload start, payload end, attribute start, attribute end) of each attribute."""
    while start + 4 <= end:
        length, kind = _NLA.unpack_from(buf, start)
        if length < 4 or start + length > end:
            return
        yield kind & _NLA_TYPE_MASK, start + 4, start + length, start
        start += (length + 3) & ~3


class ConntrackSocket(NetlinkSocket):
    """A ctnetlink socket of the network namespace it was created in."""

    def __init__(self):
        super(ConntrackSocket, self).__init__(NETLINK_NETFILTER)

    def _send(self, msg_type, flags, family, body):
        self.seq += 1
        head = _NFGEN.pack(family, 0, 0)
        self.sock.send(_NLH.pack(16 + len(head) + len(body), (_SUBSYS_CTNETLINK << 8) | msg_type, flags, self.seq, 0)
                       + head + body)
        return self.seq

    def udp_entries(self, family, port, kernel_filter=True):
        """[(original destination address, raw attributes naming the entry)] of UDP entries to ``port``."""
        body = b""
        if kernel_filter:
            body = (_attr(CTA_TUPLE_ORIG | NLA_F_NESTED,
                          _attr(CTA_TUPLE_PROTO | NLA_F_NESTED,
                                _attr(CTA_PROTO_NUM, bytes([IPPROTO_UDP]))
                                + _attr(CTA_PROTO_DST_PORT, _BE16.pack(port))))
                    + _attr(CTA_FILTER | NLA_F_NESTED,
                            _attr(CTA_FILTER_ORIG_FLAGS, struct.pack("=I", _FILTER_PROTO_NUM | _FILTER_PROTO_DST_PORT))
                            + _attr(CTA_FILTER_REPLY_FLAGS, struct.pack("=I", 0))))
        seq = self._send(_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, body)
        found = []
        buf = self.buf
        while True:
            n = self.sock.recv_into(buf)
            off = 0
            while off + 16 <= n:
                length, kind, _flags, msg_seq, _pid = _NLH.unpack_from(buf, off)
                if length < 16:
                    raise OSError(errno.EPROTO, "malformed netlink message from ctnetlink")
                if msg_seq == seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        err = -_I32.unpack_from(buf, off + 16)[0]
                        if err:
                            raise OSError(err, "conntrack dump: %s" % os.strerror(err))
                    elif kind & 0xFF == _CT_NEW:
                        entry = _udp_entry(buf, off + 20, off + length, port)
                        if entry is not None:
                            found.append(entry)
                off += (length + 3) & ~3

    def delete(self, family, naming):
        """Delete the entry these raw attributes name; False when it is already gone."""
        seq = self._send(_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, family, naming)
        while True:
            n = self.sock.recv_into(self.buf)
            off = 0
            while off + 16 <= n:
                length, kind, _flags, msg_seq, _pid = _NLH.unpack_from(self.buf, off)
                if length < 16:
                    raise OSError(errno.EPROTO, "malformed netlink message from ctnetlink")
                if msg_seq == seq and kind == NLMSG_ERROR:
                    err = -_I32.unpack_from(self.buf, off + 16)[0]
                    if err == errno.ENOENT:
                        return False
                    if err:
                        raise OSError(err, "conntrack delete: %s" % os.strerror(err))
                    return True
                off += (length + 3) & ~3


def _udp_entry(buf, start, end, port):
    """(destination address, raw CTA_TUPLE_ORIG [+ CTA_ZONE]) when the entry is UDP to ``port``, else None."""
    orig = zone = None
    for kind, p_start, p_end, a_start in _attrs(buf, start, end):
        if kind == CTA_TUPLE_ORIG:
            orig = (p_start, p_end, a_start)
        elif kind == CTA_ZONE:
            zone = bytes(buf[a_start:(p_end + 3) & ~3])
    if orig is None:
        return None
    daddr, proto, dport = None, None, None
    for kind, p_start, p_end, _a in _attrs(buf, orig[0], orig[1]):
        if kind == CTA_TUPLE_IP:
            for ikind, i_start, i_end, _b in _attrs(buf, p_start, p_end):
                if ikind == CTA_IP_V4_DST and i_end - i_start == 4:
                    daddr = socket.inet_ntop(socket.AF_INET, bytes(buf[i_start:i_end]))
                elif ikind == CTA_IP_V6_DST and i_end - i_start == 16:
                    daddr = socket.inet_ntop(socket.AF_INET6, bytes(buf[i_start:i_end]))
        elif kind == CTA_TUPLE_PROTO:
            for pkind, q_start, q_end, _b in _attrs(buf, p_start, p_end):
                if pkind == CTA_PROTO_NUM and q_end > q_start:
                    proto = buf[q_start]
                elif pkind == CTA_PROTO_DST_PORT and q_end - q_start >= 2:
                    dport = _BE16.unpack_from(buf, q_start)[0]
    if proto != IPPROTO_UDP or dport != port or daddr is None:
        return None
    return daddr, bytes(buf[orig[2]:orig[1]]) + (zone or b"")


def _entry_count():
    """Conntrack entries in this network namespace (None when the kernel does not say)."""
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def delete_udp(family, wanted):
    """Delete the UDP entries whose original destination is in ``wanted``: a set of (address, port), where an
    address of "" matches any. ``family`` is 4 or 6. Returns how many were deleted; OSError when ctnetlink
    cannot be used."""
    if _entry_count() == 0:
        return 0  # each dump walks the kernel's whole conntrack hash table (~3 ms even when it is empty)
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    deleted = 0
    with ConntrackSocket() as ct:
        for port in sorted(set(p for _addr, p in wanted)):
            try:
                entries = ct.udp_entries(af, port)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                entries = ct.udp_entries(af, port, kernel_filter=False)  # a kernel that refuses the filter
            for daddr, naming in entries:
                if ((daddr, port) in wanted or ("", port) in wanted) and ct.delete(af, naming):
                    deleted += 1
    return deleted
