# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running nftables commands: libnftables in process, else the ``nft`` command.

libnftables (the library ``nft`` itself is built on, shipped in the same package) takes the same
text as ``nft -f`` and applies it as one transaction, without a fork and exec per call: a CNI
plugin that runs once per container needs that. Listing the tables goes straight to netlink,
because ``nft list tables`` loads every set element on the host first (28 ms with 10,000 elements).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import socket
import struct

from .errors import ApplyError

_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON
_NETLINK_NETFILTER = 12
_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NFTA_TABLE_NAME = 1
_FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


class _Library:
    """A libnftables context with buffered output (what python3-nftables does, without the package)."""

    def __init__(self):
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx or lib.nft_ctx_buffer_output(self.ctx) or lib.nft_ctx_buffer_error(self.ctx):
            raise OSError("libnftables: cannot create a context")

    def run(self, text, json_output):
        self.lib.nft_ctx_output_set_flags(self.ctx, _OUTPUT_JSON if json_output else 0)
        code = self.lib.nft_run_cmd_from_buffer(self.ctx, text.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        return (0 if code == 0 else 1), out, err


class Nft:
    """``run(text)`` is ``nft -f -`` with ``text``: one transaction, all of it or nothing."""

    def __init__(self, nft=None):
        self.library = None
        self.command = nft
        if nft is None:
            try:
                self.library = _Library()
            except (OSError, AttributeError):
                import shutil  # only without libnftables (the CNI plugin avoids the import otherwise)
                self.command = shutil.which("nft")
        if self.library is None and not self.command:
            raise ApplyError("backend", "nftables backend: neither libnftables nor the nft command is installed "
                                        "(install the nftables package)")
        self.engine = "libnftables" if self.library is not None else "nft -f"

    def run(self, text, json_output=False):
        """(exit code, stdout, stderr)."""
        if "\0" in text:
            # libnftables reads a C string: a NUL would end the input early and apply only the part before it
            raise ApplyError("mappings", "refusing nft input with a NUL byte (a value escaped validation); "
                                         "nothing was changed")
        if self.library is not None:
            return self.library.run(text, json_output)
        import subprocess
        argv = [self.command] + (["-j"] if json_output else []) + ["-f", "-"]
        # Shared with the CNI plugin, which runs outside Ansible: no AnsibleModule.run_command there.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run(argv, input=text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def list_tables():
    """[(family, name)] of every nftables table, from one netlink dump."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        sock.send(struct.pack("=IHHII", 20, _GETTABLE, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + struct.pack("=BBH", 0, 0, 0))
        tables = []
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if kind == _NLMSG_DONE:
                    return tables
                if kind == _NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, offset + 16)[0]
                    raise ApplyError("backend", "listing nftables tables failed: %s" % os.strerror(errno))
                family = _FAMILIES.get(data[offset + 16], str(data[offset + 16]))
                pos, end = offset + 20, offset + length
                while pos + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    if atype & 0x3fff == _NFTA_TABLE_NAME:
                        tables.append((family, data[pos + 4:pos + alen].split(b"\0", 1)[0].decode()))
                    pos += (alen + 3) & ~3
                offset += (length + 3) & ~3
    finally:
        sock.close()
