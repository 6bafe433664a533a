# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Refuse bind() to unassigned ports, per cgroup v2, with cgroup BPF programs loaded from Python.

Two programs (BPF_CGROUP_INET4_BIND and INET6_BIND, the same hand-assembled bytecode) look the
port up in a bitmap map: 8 KiB of TCP ports (and every protocol but UDP), 8 KiB of UDP ports. A
policy change rewrites the map with one BPF_MAP_UPDATE_ELEM; the programs are not reloaded.
Port 0 (an ephemeral port chosen by the kernel) is always allowed.

Programs are attached with BPF_PROG_ATTACH and BPF_F_ALLOW_MULTI: they stay in force while the
watcher restarts (and combine with other tools' programs: a bind passes only if all allow it),
and a restarted watcher finds them again by name with BPF_PROG_QUERY. Removing the cgroup frees
them. Only the bpf(2) syscall is used (ctypes): no compiler, no bcc, no libbpf.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import platform
import struct

_NR_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM = 0, 1, 2
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 14, 15, 16
BPF_MAP_TYPE_ARRAY = 2
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND = 8, 9
BPF_F_ALLOW_MULTI = 2
ATTACH_TYPES = (BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND)
PROG_NAMES = {BPF_CGROUP_INET4_BIND: "hn_ports_bind4", BPF_CGROUP_INET6_BIND: "hn_ports_bind6"}
BITMAP = 8192
COUNTER = 2 * BITMAP  # a u64 of refused binds after the two bitmaps
VALUE_SIZE = COUNTER + 8
_CTX_USER_PORT, _CTX_PROTOCOL = 24, 36

_LIBC = []


def _syscall():
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _LIBC.append(libc)
    return _LIBC[0]


class BPFError(OSError):
    """A refused bpf(2) call; ``log`` holds the verifier's explanation for a refused program."""

    def __init__(self, err, msg, log=""):
        super(BPFError, self).__init__(err, msg)
        self.log = log


def bpf(cmd, attr):
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise BPFError(38, "bpf(2) syscall number unknown for %s" % platform.machine())
    ret = _syscall().syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BPFError(err, "bpf(cmd %d): %s" % (cmd, os.strerror(err)))
    return ret


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | (dst & 0xF), off, imm)


def program(map_fd):
    """The bind filter: allow port 0 and ports whose bit is set in the protocol's bitmap; count refusals."""
    i = _insn
    allow, deny = 30, 32
    code = [
        i(0xBF, 6, 1),                              # 0  r6 = ctx (struct bpf_sock_addr)
        i(0x61, 7, 6, _CTX_USER_PORT),              # 1  r7 = ctx->user_port (network order, low 16 bits)
        i(0xDC, 7, 0, 0, 16),                       # 2  r7 = be16 r7 (to host order)
        i(0x57, 7, 0, 0, 0xFFFF),                   # 3  r7 &= 0xffff (a bound the verifier sees)
        i(0x15, 7, 0, allow - 4 - 1, 0),            # 4  port 0: the kernel picks one -> allow
        i(0xB7, 8, 0, 0, 0),                        # 5  r8 = 0 (TCP bitmap)
        i(0x61, 1, 6, _CTX_PROTOCOL),               # 6  r1 = ctx->protocol
        i(0x15, 1, 0, 1, 17),                       # 7  UDP -> 9
        i(0x55, 1, 0, 1, 136),                      # 8  not UDPLITE -> 10
        i(0xB7, 8, 0, 0, BITMAP),                   # 9  r8 = UDP bitmap
        i(0x62, 10, 0, -4, 0),                      # 10 key = 0 on the stack
        i(0x18, 1, 1, 0, map_fd), i(0, 0, 0, 0, 0),  # 11 r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        i(0xBF, 2, 10),                             # 13 r2 = fp
        i(0x07, 2, 0, 0, -4),                       # 14 r2 = &key
        i(0x85, 0, 0, 0, 1),                        # 15 call bpf_map_lookup_elem
        i(0x15, 0, 0, deny - 16 - 1, 0),            # 16 no value -> deny
        i(0xBF, 1, 7),                              # 17 r1 = port
        i(0x77, 1, 0, 0, 3),                        # 18 r1 >>= 3 (byte)
        i(0x0F, 1, 8),                              # 19 r1 += bitmap offset
        i(0xBF, 2, 0),                              # 20 r2 = value
        i(0x0F, 2, 1),                              # 21 r2 += r1
        i(0x71, 2, 2, 0),                           # 22 r2 = *(u8 *)r2
        i(0x57, 7, 0, 0, 7),                        # 23 r7 &= 7 (bit)
        i(0x7F, 2, 7),                              # 24 r2 >>= r7
        i(0x57, 2, 0, 0, 1),                        # 25 r2 &= 1
        i(0x55, 2, 0, allow - 26 - 1, 0),           # 26 set -> allow
        i(0xB7, 1, 0, 0, 1),                        # 27 r1 = 1
        i(0xDB, 0, 1, COUNTER, 0),                  # 28 lock *(u64 *)(value + COUNTER) += 1 (refusals)
        i(0x05, 0, 0, deny - 29 - 1, 0),            # 29 -> deny
        i(0xB7, 0, 0, 0, 1), i(0x95),               # 30 allow: return 1
        i(0xB7, 0, 0, 0, 0), i(0x95),               # 32 deny: return 0 (bind fails with EPERM)
    ]
    return b"".join(code)


def denied(map_fd):
    """How many bind() calls the filter has refused."""
    return struct.unpack_from("<Q", map_read(map_fd), COUNTER)[0]


def bitmap(tcp_allowed, udp_allowed):
    """The map value for allowed port sets given as [(first, last)] ranges."""
    value = bytearray(VALUE_SIZE)
    for base, ranges in ((0, tcp_allowed), (BITMAP, udp_allowed)):
        for first, last in ranges:
            port = first
            while port <= last and port & 7:  # the partial first byte
                value[base + (port >> 3)] |= 1 << (port & 7)
                port += 1
            full = (last + 1 - port) >> 3  # whole bytes
            if full > 0:
                start = base + (port >> 3)
                value[start:start + full] = b"\xff" * full
                port += full << 3
            while port <= last:  # the partial last byte
                value[base + (port >> 3)] |= 1 << (port & 7)
                port += 1
    return bytes(value)


def _buf(size):
    return ctypes.create_string_buffer(size)


def _map_create():
    attr = _buf(128)
    struct.pack_into("<IIIII", attr, 0, BPF_MAP_TYPE_ARRAY, 4, VALUE_SIZE, 1, 0)
    struct.pack_into("16s", attr, 28, b"hn_ports_allow")
    return bpf(BPF_MAP_CREATE, attr)


def map_update(map_fd, value):
    key = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
    val = ctypes.create_string_buffer(value, len(value))
    attr = _buf(32)
    struct.pack_into("<IIQQQ", attr, 0, map_fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
    bpf(BPF_MAP_UPDATE_ELEM, attr)


def map_read(map_fd):
    key = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
    val = ctypes.create_string_buffer(VALUE_SIZE)
    attr = _buf(32)
    struct.pack_into("<IIQQQ", attr, 0, map_fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
    bpf(BPF_MAP_LOOKUP_ELEM, attr)
    return val.raw


def _prog_load(map_fd, attach_type):
    code = program(map_fd)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL\0")
    for log_level in (0, 1):
        log = _buf(1 << 18) if log_level else None
        attr = _buf(128)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, len(code) // 8, ctypes.addressof(insns),
                         ctypes.addressof(lic), log_level, (1 << 18) if log_level else 0,
                         ctypes.addressof(log) if log is not None else 0)
        struct.pack_into("16s", attr, 48, PROG_NAMES[attach_type].encode())
        struct.pack_into("<I", attr, 68, attach_type)
        try:
            return bpf(BPF_PROG_LOAD, attr)
        except BPFError as exc:
            if log_level:
                exc.log = log.value.decode("utf-8", "replace")
                raise
    raise AssertionError("unreachable")


def _attach(cg_fd, prog_fd, attach_type, cmd=BPF_PROG_ATTACH):
    attr = _buf(40)
    struct.pack_into("<IIII", attr, 0, cg_fd, prog_fd, attach_type, BPF_F_ALLOW_MULTI if cmd == BPF_PROG_ATTACH else 0)
    bpf(cmd, attr)


def _query(cg_fd, attach_type, max_progs=64):
    ids = (ctypes.c_uint32 * max_progs)()
    attr = _buf(64)
    struct.pack_into("<IIII", attr, 0, cg_fd, attach_type, 0, 0)
    struct.pack_into("<QI", attr, 16, ctypes.addressof(ids), max_progs)
    bpf(BPF_PROG_QUERY, attr)
    return list(ids[:struct.unpack_from("<I", attr, 24)[0]])


def _by_id(cmd, obj_id):
    attr = _buf(16)
    struct.pack_into("<I", attr, 0, obj_id)
    return bpf(cmd, attr)


def _prog_info(fd):
    map_ids = (ctypes.c_uint32 * 4)()
    info = _buf(128)
    struct.pack_into("<IQ", info, 52, 4, ctypes.addressof(map_ids))
    attr = _buf(16)
    struct.pack_into("<IIQ", attr, 0, fd, ctypes.sizeof(info), ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    count = struct.unpack_from("<I", info, 52)[0]
    return info.raw[64:80].split(b"\0")[0].decode(), list(map_ids[:min(count, 4)])


def _ours(cg_fd):
    """{attach_type: (prog_fd, map_id)} of our programs attached to the cgroup."""
    found = {}
    for attach_type in ATTACH_TYPES:
        for prog_id in _query(cg_fd, attach_type):
            try:
                fd = _by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
            except BPFError:
                continue  # gone meanwhile
            name, maps = _prog_info(fd)
            if name == PROG_NAMES[attach_type] and maps and attach_type not in found:
                found[attach_type] = (fd, maps[0])
            else:
                os.close(fd)
    return found


class BindFilter:
    """The filter of one cgroup v2 directory: attach (or find again), update, detach."""

    def __init__(self, cgroup_path):
        self.path = cgroup_path
        self.cg_fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.map_fd = None
        self.prog_fds = {}

    def attached(self):
        """Reconnect to programs attached earlier (by us or a previous watcher); True when found."""
        found = _ours(self.cg_fd)
        if len(found) == len(ATTACH_TYPES):
            self.prog_fds = dict((t, v[0]) for t, v in found.items())
            self.map_fd = _by_id(BPF_MAP_GET_FD_BY_ID, found[BPF_CGROUP_INET4_BIND][1])
            return True
        for fd, _map in found.values():  # a half-attached pair: detach it, attach afresh
            os.close(fd)
        return False

    def attach(self, value):
        """Load, fill and attach; the map holds the policy before any program can run."""
        self.map_fd = _map_create()
        map_update(self.map_fd, value)
        for attach_type in ATTACH_TYPES:
            self.prog_fds[attach_type] = _prog_load(self.map_fd, attach_type)
        done = []
        try:
            for attach_type in ATTACH_TYPES:
                _attach(self.cg_fd, self.prog_fds[attach_type], attach_type)
                done.append(attach_type)
        except BPFError:
            for attach_type in done:
                _attach(self.cg_fd, self.prog_fds[attach_type], attach_type, BPF_PROG_DETACH)
            raise

    def update(self, value):
        current = map_read(self.map_fd)
        if current[:COUNTER] != value[:COUNTER]:
            map_update(self.map_fd, value[:COUNTER] + current[COUNTER:])  # the refusal count carries on
            return True
        return False

    def detach(self):
        for attach_type, fd in self.prog_fds.items():
            try:
                _attach(self.cg_fd, fd, attach_type, BPF_PROG_DETACH)
            except BPFError:
                pass  # the cgroup (and with it the attachment) is already gone
        self.close()

    def close(self):
        for fd in list(self.prog_fds.values()) + ([self.map_fd] if self.map_fd is not None else []) + [self.cg_fd]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.prog_fds, self.map_fd = {}, None
