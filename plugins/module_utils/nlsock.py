# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A raw netlink socket of the calling network namespace (standard library only).

The base of the hand-rolled dumps that must stay cheaper than importing pyroute2: ``sockdiag``
(the ports watcher's scan) and ``conntrack`` (the CNI plugin's DEL).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket


class NetlinkSocket:
    """A netlink socket of ``protocol`` bound in the namespace it was created in, with a receive buffer."""

    def __init__(self, protocol, kind=socket.SOCK_RAW):
        self.sock = socket.socket(socket.AF_NETLINK, kind, protocol)
        self.sock.bind((0, 0))
        self.buf = bytearray(1 << 16)
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
