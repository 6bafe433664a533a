# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Listening sockets over NETLINK_SOCK_DIAG, with each socket's cgroup v2 id.

A hand-rolled dump (standard library only): the ports watcher lists every listener each scan, and
pyroute2's generic message decoder (and its import) cost more than the whole scan. The kernel sends INET_DIAG_CGROUP_ID with every socket (>= 5.7).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import struct

from .nlsock import NetlinkSocket

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
STATES_LISTEN = 1 << TCP_LISTEN
STATES_UDP_BOUND = (1 << TCP_CLOSE) | (1 << TCP_ESTABLISHED)
INET_DIAG_CGROUP_ID = 21

_NLH = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
_MSG = struct.Struct("=BB2x2s2s16s16s24xII")  # inet_diag_msg (72 bytes): ... uid@64, inode@68
_RTA = struct.Struct("=HH")
_U64 = struct.Struct("=Q")
_I32 = struct.Struct("=i")
_ATTR_OFF = 16 + 72


class Listener:
    __slots__ = ("protocol", "family", "address", "port", "inode", "uid", "cgroup_id")

    def __init__(self, protocol, family, address, port, inode, uid, cgroup_id):
        self.protocol = protocol
        self.family = family
        self.address = address
        self.port = port
        self.inode = inode
        self.uid = uid
        self.cgroup_id = cgroup_id

    def as_dict(self):
        return {"protocol": self.protocol, "address": self.address, "port": self.port, "inode": self.inode,
                "cgroup_id": self.cgroup_id}


class DiagSocket(NetlinkSocket):
    """A NETLINK_SOCK_DIAG socket of the namespace it was created in."""

    def __init__(self):
        super(DiagSocket, self).__init__(NETLINK_SOCK_DIAG, socket.SOCK_DGRAM)

    def dump(self, family, protocol, states, out, name):
        """Append a Listener for each socket of ``family``/``protocol`` in ``states`` to ``out``."""
        for _attempt in range(5):
            try:
                return self._dump(family, protocol, states, out, name)
            except InterruptedError:  # the table changed mid-dump: the kernel says so, dump again
                continue
        return self._dump(family, protocol, states, out, name)

    def _dump(self, family, protocol, states, out, name):
        self.seq += 1
        body = _REQ.pack(family, protocol, 0, states)
        self.sock.send(_NLH.pack(16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + body)
        buf, ntop = self.buf, socket.inet_ntop
        alen = 4 if family == socket.AF_INET else 16
        start = len(out)
        interrupted = False
        while True:
            n = self.sock.recv_into(buf)
            off = 0
            while off + 16 <= n:
                length, kind, flags, _seq, _pid = _NLH.unpack_from(buf, off)
                if length < 16:
                    raise OSError("malformed netlink message from sock_diag")
                if kind == NLMSG_DONE:
                    if interrupted:
                        del out[start:]
                        raise InterruptedError("sock_diag dump interrupted")
                    return out
                if kind == NLMSG_ERROR:
                    err = -_I32.unpack_from(buf, off + 16)[0]
                    if err:
                        raise OSError(err, "sock_diag: %s" % os.strerror(err))
                elif kind == SOCK_DIAG_BY_FAMILY:
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    fam, _state, sport, _dport, src, _dst, uid, inode = _MSG.unpack_from(buf, off + 16)
                    cgroup_id, attr, end = 0, off + _ATTR_OFF, off + length
                    while attr + 4 <= end:
                        rlen, rtype = _RTA.unpack_from(buf, attr)
                        if rtype == INET_DIAG_CGROUP_ID:
                            cgroup_id = _U64.unpack_from(buf, attr + 4)[0]
                            break
                        if rlen < 4:
                            break
                        attr += (rlen + 3) & ~3
                    out.append(Listener(name, fam, ntop(fam, src[:alen]), (sport[0] << 8) | sport[1], inode, uid,
                                        cgroup_id))
                off += (length + 3) & ~3


def listeners(include_udp=False):
    """TCP listeners (and bound UDP sockets) of the calling namespace, IPv4 and IPv6."""
    out = []
    with DiagSocket() as ds:
        for family in (socket.AF_INET, socket.AF_INET6):
            ds.dump(family, socket.IPPROTO_TCP, STATES_LISTEN, out, "tcp")
            if include_udp:
                ds.dump(family, socket.IPPROTO_UDP, STATES_UDP_BOUND, out, "udp")
    return out


def socket_inodes_of_pids(pids):
    """{socket inode: pid} from /proc/<pid>/fd (the cgroup v1 fallback)."""
    found = {}
    for pid in pids:
        base = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink("%s/%s" % (base, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                found[int(link[8:-1])] = pid
    return found
