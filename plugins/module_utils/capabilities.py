# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host preflight: what this host's kernel and userland can do for us.

Every probe that needs to change something (add a qdisc, a rule, a table)
does so in a child process that first moved into a new, empty network
namespace: the host's own devices and rulesets are never touched.

Each capability is reported as ``{"available": bool, "probe": how it was
checked, "detail": what was found}`` under a stable name, the same names
that ``require`` accepts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import ctypes.util
import json
import os
import platform
import re
import shutil
import socket
import struct
import subprocess

from . import cgroups, netlink, nsutil
from .errors import ValidationError
from .portmap_ipt import parse_iptables_version

LIBNL_MINIMUM = (3, 2, 26)
IPTABLES_WAIT_MINIMUM = (1, 4, 20)

# name -> short description, the vocabulary of ``require``
CAPABILITIES = {
    "pyroute2": "pyroute2 (netlink from Python) importable",
    "libnl": "libnl-3 and libnl-route-3 >= 3.2.26 (Mesos port_mapping / ports isolators)",
    "iptables": "iptables command",
    "iptables_wait": "iptables supports -w (>= 1.4.20)",
    "nftables": "nft command and kernel nf_tables",
    "xt_comment": "iptables comment match (rules tagged with container ids)",
    "qdisc_htb": "htb qdisc",
    "qdisc_tbf": "tbf qdisc",
    "qdisc_fq_codel": "fq_codel qdisc (sch_fq_codel)",
    "qdisc_ingress": "ingress qdisc",
    "qdisc_pfifo": "pfifo qdisc",
    "qdisc_cake": "cake qdisc (sch_cake)",
    "qdisc_fq": "fq qdisc (sch_fq)",
    "cls_u32": "u32 classifier",
    "act_mirred": "mirred action (redirect)",
    "cgroup_v2": "a mounted cgroup v2 hierarchy",
    "sock_diag": "sock_diag listing of listening sockets",
    "sock_diag_cgroup_id": "sock_diag reports each socket's cgroup v2 id",
    "bpf_cgroup_bind": "cgroup BPF programs on bind() (BPF_CGROUP_INET4_BIND / INET6_BIND)",
}

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
_BPF_CGROUP_INET4_BIND = 8
_BPF_CGROUP_INET6_BIND = 9


def _cap(available, probe, detail="", **extra):
    entry = {"available": bool(available), "probe": probe, "detail": detail}
    entry.update(extra)
    return entry


def _version_tuple(text):
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _run(argv):
    # Also runs in a forked child in a throwaway netns (_probe_netfilter), where run_command's fail_json
    # would print a module result from the child; and run_command has no timeout: a probe must not hang.
    # pylint: disable-next=ansible-bad-function
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False, timeout=20)
    return proc.returncode, proc.stdout.strip()


def probe_libnl():
    probe = "dlopen libnl-3.so.200 and read nl_ver_maj/min/mic; dlopen libnl-route-3.so.200"
    try:
        lib = ctypes.CDLL("libnl-3.so.200")
        version = tuple(ctypes.c_int.in_dll(lib, n).value for n in ("nl_ver_maj", "nl_ver_min", "nl_ver_mic"))
    except (OSError, ValueError) as exc:
        return _cap(False, probe, "libnl-3 not loadable: %s" % exc, version=None, route=False)
    try:
        ctypes.CDLL("libnl-route-3.so.200")
        route = True
    except OSError as exc:
        return _cap(False, probe, "libnl-3 %s found but libnl-route-3 is not loadable: %s"
                    % (".".join(map(str, version)), exc), version=".".join(map(str, version)), route=False)
    text = ".".join(map(str, version))
    ok = version >= LIBNL_MINIMUM
    return _cap(ok, probe, "libnl %s %s 3.2.26" % (text, ">=" if ok else "<"), version=text, route=route)


def probe_iptables():
    probe = "iptables -V"
    path = shutil.which("iptables")
    if not path:
        none = _cap(False, probe, "no iptables command in PATH", version=None, backend=None)
        return none, _cap(False, probe, "no iptables command", version=None)
    code, out = _run([path, "-V"])
    version, backend = parse_iptables_version(out)
    if code != 0 or not version:
        bad = _cap(False, probe, "iptables -V failed: %s" % out, version=None, backend=None)
        return bad, _cap(False, probe, "iptables -V failed", version=None)
    wait_ok = _version_tuple(version) >= IPTABLES_WAIT_MINIMUM
    return (_cap(True, probe, out, version=version, backend=backend, path=path),
            _cap(wait_ok, probe, "iptables %s %s 1.4.20" % (version, ">=" if wait_ok else "<"), version=version))


def cgroup_layout(mountinfo_lines, visible=None):
    """{"mode": v1|v2|hybrid|none, "v2_mount", "v1_controllers"} from /proc/self/mountinfo lines."""
    return cgroups.layout(mountinfo_lines, visible)


def probe_cgroups(mountinfo_lines=None):
    """The cgroup layout and the ``cgroup_v2`` entry: this host's (hidden mounts left out), or of
    the mountinfo lines given."""
    info = cgroups.host_layout() if mountinfo_lines is None else cgroup_layout(mountinfo_lines)
    if info["v2_mount"]:
        detail = "cgroup mode %s, v2 at %s" % (info["mode"], info["v2_mount"])
    else:
        detail = "cgroup mode %s: no cgroup2 file system mounted%s" % (
            info["mode"], " (cgroup v1 only: %s)" % ", ".join(info["v1_controllers"]) if info["v1_controllers"] else "")
    return info, _cap(bool(info["v2_mount"]), "/proc/self/mountinfo", detail, mount=info["v2_mount"])


def _bpf_prog_load(attach_type):
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise OSError(0, "no bpf(2) syscall number known for %s" % platform.machine())
    # r0 = 1 (allow); exit
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<II", attr, 0, _BPF_PROG_TYPE_CGROUP_SOCK_ADDR, 2)
    struct.pack_into("<QQ", attr, 8, ctypes.addressof(insn_buf), ctypes.addressof(license_buf))
    struct.pack_into("<I", attr, 68, attach_type)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(_BPF_PROG_LOAD), attr, ctypes.c_uint(len(attr.raw)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def probe_bpf():
    probe = "bpf(BPF_PROG_LOAD) of a 2-instruction CGROUP_SOCK_ADDR program for INET4_BIND and INET6_BIND"
    try:
        _bpf_prog_load(_BPF_CGROUP_INET4_BIND)
        _bpf_prog_load(_BPF_CGROUP_INET6_BIND)
    except OSError as exc:
        return _cap(False, probe, "load refused: %s" % (exc.strerror or exc))
    return _cap(True, probe, "both attach types load")


_TC = ("qdisc_htb", "qdisc_tbf", "qdisc_fq_codel", "qdisc_pfifo", "qdisc_cake", "qdisc_fq", "qdisc_ingress", "cls_u32",
       "act_mirred")
_SOCK_DIAG = ("sock_diag", "sock_diag_cgroup_id")
_NETFILTER = ("nftables", "xt_comment")


def _wanted(names, group):
    """Whether a probe group answers one of ``names`` (None: every group runs)."""
    return names is None or any(n in names for n in group)


def _probe_in_throwaway_netns(names=None):
    """Runs in a child that owns a fresh network namespace: changes here vanish with it.

    ``names``: the capabilities wanted (None: all); a probe group runs only if it answers one of them.
    """
    def wanted(group):
        return _wanted(names, group)

    out = {}
    nsutil.unshare(nsutil.CLONE_NEWNET)
    if wanted(_TC) and netlink.PYROUTE2_IMPORT_ERROR is not None:
        reason = "pyroute2 is not importable: %s" % netlink.PYROUTE2_IMPORT_ERROR
        for name in _TC:
            out[name] = _cap(False, "needs pyroute2", reason)
    elif wanted(_TC):
        out.update(_guarded(_probe_tc, _TC))
    if wanted(_SOCK_DIAG):
        out.update(_guarded(_probe_sock_diag, _SOCK_DIAG))
    if wanted(_NETFILTER):
        out.update(_guarded(lambda: _probe_netfilter(names), _NETFILTER))
    return out


def _guarded(probe, names):
    """Run a group of probes; if the group itself breaks, only its capabilities are reported unavailable."""
    try:
        found = probe()
    except Exception as exc:  # pylint: disable=broad-except
        found = {}
        error = "probe error: %s: %s" % (type(exc).__name__, exc)
    else:
        error = "not probed (an earlier probe of the group failed)"
    for name in names:
        found.setdefault(name, _cap(False, probe.__name__.lstrip("_"), error))
    return found


def _probe_tc():
    out = {}
    where = " on a veth in a throwaway network namespace"
    with netlink.IPRoute() as ipr:
        ipr.link("add", ifname="hnprobe0", kind="veth", peer={"ifname": "hnprobe1"})
        a = ipr.link_lookup(ifname="hnprobe0")[0]
        b = ipr.link_lookup(ifname="hnprobe1")[0]
        qdiscs = (("qdisc_htb", "htb", {"default": 0x10}),
                  ("qdisc_tbf", "tbf", {"rate": "1mbit", "burst": 16000, "latency": "50ms"}),
                  ("qdisc_fq_codel", "fq_codel", {}),
                  ("qdisc_pfifo", "pfifo", {}),
                  ("qdisc_cake", "cake", {}),
                  ("qdisc_fq", "fq", {}))
        for name, kind, opts in qdiscs:
            probe = "RTM_NEWQDISC root %s%s" % (kind, where)
            try:
                ipr.tc("add", kind, a, 0x10000, **opts)
                ipr.tc("del", kind, a, 0x10000, **opts)
                out[name] = _cap(True, probe, "accepted")
            except netlink.NetlinkError as exc:
                missing = " (kernel has no sch_%s)" % kind if exc.code == 2 else ""
                out[name] = _cap(False, probe, "refused: %s%s" % (netlink.errno_name(exc), missing))
            except Exception as exc:  # pylint: disable=broad-except
                out[name] = _cap(False, probe, "probe error: %s: %s" % (type(exc).__name__, exc))
        probe = "RTM_NEWQDISC ingress" + where
        try:
            ipr.tc("add", "ingress", a, 0xFFFF0000)
            out["qdisc_ingress"] = _cap(True, probe, "accepted")
        except netlink.NetlinkError as exc:
            out["qdisc_ingress"] = _cap(False, probe, "refused: %s" % netlink.errno_name(exc))
            out["cls_u32"] = _cap(False, "needs the ingress qdisc", "ingress qdisc unavailable")
            out["act_mirred"] = _cap(False, "needs the ingress qdisc", "ingress qdisc unavailable")
            return out
        probe = "RTM_NEWTFILTER u32 on the ingress qdisc" + where
        try:
            ipr.tc("add-filter", "u32", a, parent=0xFFFF0000, prio=1, protocol=0x0003,
                   keys=["0x0/0x0+0"], target=0x10001)
            out["cls_u32"] = _cap(True, probe, "accepted")
        except netlink.NetlinkError as exc:
            out["cls_u32"] = _cap(False, probe, "refused: %s" % netlink.errno_name(exc))
            out["act_mirred"] = _cap(False, "needs the u32 classifier", "u32 unavailable")
            return out
        probe = "RTM_NEWTFILTER u32 with a mirred egress redirect action" + where
        try:
            ipr.tc("add-filter", "u32", a, parent=0xFFFF0000, prio=2, protocol=0x0003, keys=["0x0/0x0+0"],
                   target=0x10001, action=[{"kind": "mirred", "direction": "egress", "action": "redirect",
                                            "ifindex": b}])
            out["act_mirred"] = _cap(True, probe, "accepted")
        except netlink.NetlinkError as exc:
            out["act_mirred"] = _cap(False, probe, "refused: %s" % netlink.errno_name(exc))
    return out


_PROBE_QDISC_OPTIONS = {"htb": {"default": 0x10}, "tbf": {"rate": 125000, "burst": 16000, "latency": "50ms"}}


def qdisc_unsupported(kind):
    """None when this kernel accepts a qdisc of ``kind``, else why not.

    Probed on a veth in a throwaway network namespace (a forked child), so check mode can tell
    the truth about a qdisc the kernel lacks without changing anything.
    """
    def probe():
        nsutil.unshare(nsutil.CLONE_NEWNET)
        with netlink.IPRoute() as ipr:
            ipr.link("add", ifname="hnprobe0", kind="veth", peer={"ifname": "hnprobe1"})
            index = ipr.link_lookup(ifname="hnprobe0")[0]
            try:
                handle = 0xFFFF0000 if kind == "ingress" else 0x10000
                ipr.tc("add", kind, index, handle, **_PROBE_QDISC_OPTIONS.get(kind, {}))
            except netlink.NetlinkError as exc:
                if exc.code == 2:
                    return "this kernel has no %s qdisc (sch_%s is not built in or loaded)" % (kind, kind)
                return "the kernel refused a %s qdisc: %s" % (kind, netlink.errno_name(exc))
        return None
    return _in_child(probe)


def _probe_sock_diag():
    from . import sockdiag
    probe = "sock_diag dump of TCP LISTEN sockets (a listener in a throwaway namespace)"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("0.0.0.0", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        found = [s for s in sockdiag.listeners() if s.port == port]
    except Exception as exc:  # pylint: disable=broad-except
        fail = _cap(False, probe, "failed: %s" % exc)
        return {"sock_diag": fail, "sock_diag_cgroup_id": _cap(False, probe, "sock_diag unavailable")}
    finally:
        listener.close()
    if not found:
        fail = _cap(False, probe, "the probe's own listener was not listed")
        return {"sock_diag": fail, "sock_diag_cgroup_id": _cap(False, probe, "sock_diag unavailable")}
    cgroup_id = found[0].cgroup_id
    if cgroup_id:
        cg = _cap(True, probe, "INET_DIAG_CGROUP_ID sent (the probe's socket: cgroup id %d)" % cgroup_id)
    else:
        cg = _cap(False, probe, "the kernel sends no INET_DIAG_CGROUP_ID (needs Linux >= 5.7 with cgroup v2)")
    return {"sock_diag": _cap(True, probe, "listener found"), "sock_diag_cgroup_id": cg}


def _probe_netfilter(names=None):
    out = {}
    if names is None or "nftables" in names:
        nft = shutil.which("nft")
        probe = "nft add table in a throwaway network namespace"
        if not nft:
            out["nftables"] = _cap(False, probe, "no nft command in PATH", version=None)
        else:
            _code, version = _run([nft, "-v"])
            match = re.search(r"v(\d+\.\d+(?:\.\d+)?)", version)
            code, text = _run([nft, "add", "table", "inet", "hostnet_probe"])
            out["nftables"] = _cap(code == 0, probe, "accepted" if code == 0 else "refused: %s" % text,
                                   version=match.group(1) if match else None)
    if names is None or "xt_comment" in names:
        iptables = shutil.which("iptables")
        probe = "iptables -A INPUT -m comment in a throwaway network namespace"
        if not iptables:
            out["xt_comment"] = _cap(False, probe, "no iptables command in PATH")
        else:
            code, text = _run([iptables, "-w", "-t", "filter", "-A", "INPUT", "-m", "comment",
                               "--comment", "hostnet-probe", "-j", "ACCEPT"])
            out["xt_comment"] = _cap(code == 0, probe, "accepted" if code == 0 else "refused: %s" % text)
    return out


def _in_child(func):
    """Run ``func`` in a forked child; returns its JSON-able result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        try:
            payload = json.dumps({"ok": func()})
        except BaseException as exc:  # pylint: disable=broad-except
            payload = json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)})
        with os.fdopen(write_fd, "w") as f:
            f.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data) if data else {"error": "probe process died"}
    if "error" in result:
        raise RuntimeError("throwaway-namespace probe failed: %s" % result["error"])
    return result["ok"]


def gather(names=None):
    """This host's capabilities, as a dict of name -> entry plus context (``kernel``, ``python``, ``cgroup``,
    ``missing``). With ``names``, only the probes that answer those names run, and only their entries (and
    the context) are returned."""
    def wanted(*group):
        return _wanted(names, group)

    facts = {"kernel": platform.release(), "python": platform.python_version()}
    if wanted("pyroute2"):
        version = netlink.pyroute2_version()
        facts["pyroute2"] = _cap(version is not None, "import pyroute2",
                                 "pyroute2 %s" % version if version else str(netlink.PYROUTE2_IMPORT_ERROR),
                                 version=version)
    if wanted("libnl"):
        facts["libnl"] = probe_libnl()
    if wanted("iptables", "iptables_wait"):
        facts["iptables"], facts["iptables_wait"] = probe_iptables()
    if wanted("cgroup_v2"):
        facts["cgroup"], facts["cgroup_v2"] = probe_cgroups()
    if wanted("bpf_cgroup_bind"):
        facts["bpf_cgroup_bind"] = probe_bpf()
    if wanted(*(_TC + _SOCK_DIAG + _NETFILTER)):
        facts.update(_in_child(lambda: _probe_in_throwaway_netns(names)))
    facts["missing"] = sorted(name for name in CAPABILITIES if name in facts and not facts[name]["available"])
    return facts


def validate_required(required):
    for i, name in enumerate(required):
        if name not in CAPABILITIES:
            raise ValidationError("require[%d]" % i, "unknown capability %r; known: %s"
                                  % (name, ", ".join(sorted(CAPABILITIES))))


def check_required(facts, required):
    """One line per missing name in ``required``: name (meaning): finding [probe: how]."""
    validate_required(required)
    return ["%s (%s): %s [probe: %s]" % (name, CAPABILITIES[name], facts[name]["detail"], facts[name]["probe"])
            for name in required if not facts[name]["available"]]
