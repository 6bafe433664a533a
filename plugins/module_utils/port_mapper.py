# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge one port-mapper network: pick the backend, plan, apply, clean conntrack.

This is what every front door calls (the Ansible module, the CNI plugin). The CNI plugin runs
once per container and is mostly Python start-up, so what only some paths need (iptables,
pyroute2, subprocess) is imported where it is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import copy
import ipaddress
import os
import re
import time

from . import rundir, transaction
from .contract import NOTHING_PLANNED
from .errors import ApplyError, ValidationError
from .portmap import CHAIN_MAX, compact, desired_state, diff_entries, mapping_line, stale_udp_keys, NetworkState
# the part's schema and spec (contract.py) live beside PortMapperSpec
from .portmap import OPTIONS, spec  # noqa: F401  pylint: disable=unused-import
from .portmap_nft import NftablesBackend, table_name

_IPTABLES_NFT_TABLES = ("filter", "nat", "mangle", "raw", "security")
LOCK_PATH = os.path.join(rundir.RUN_DIR, "port-mapper.lock")  # not /run/lock: anyone may create files there


def _iptables(variant=None):
    """An iptables backend (imported here: only iptables hosts need it); ``variant`` as `iptables -V` says
    unless given. iptables-legacy goes through libiptc in process when python-iptables is there."""
    from . import portmap_ipt
    variant = variant or portmap_ipt.iptables_variant(legacy_tables_loaded())
    if variant == "legacy":
        with _find_library_without_exec():
            from . import portmap_iptc
        if portmap_iptc.IPTC_IMPORT_ERROR is None:
            return portmap_iptc.IptcLegacyBackend()
    return portmap_ipt.IptablesBackend(variant)


def _lib_dirs():
    import sys
    multiarch = getattr(sys.implementation, "_multiarch", "")
    return ("/usr/lib/" + multiarch, "/lib/" + multiarch, "/usr/lib64", "/lib64", "/usr/lib", "/lib")


def _soname(name, _listings={}):  # pylint: disable=dangerous-default-value
    """``ctypes.util.find_library`` for the versioned libraries of the usual directories, without its
    subprocesses (ldconfig -p, and gcc and ld for a name it cannot find): None when not there."""
    wanted = "lib%s.so." % name
    for directory in _lib_dirs():
        if directory not in _listings:
            try:
                _listings[directory] = os.listdir(directory)
            except OSError:
                _listings[directory] = []
        found = sorted(entry for entry in _listings[directory]
                       if entry.startswith(wanted) and entry[len(wanted):].isdigit())
        if found:
            return found[0]
    return None


@contextlib.contextmanager
def _find_library_without_exec():
    """python-iptables looks up its libraries with ctypes.util.find_library at import, and its extension
    directory with `ldconfig -N -v` unless XTABLES_LIBDIR is set: ~0.75 s of ldconfig, gcc and ld on
    Debian 12, more than the rest of a CNI call. Same answers from the directories instead (its own
    extension, which find_library never finds, it then loads from sys.path as before)."""
    import ctypes.util
    original = ctypes.util.find_library
    ctypes.util.find_library = _soname
    set_libdir = "XTABLES_LIBDIR" not in os.environ
    if set_libdir:  # the first library directory with an xtables/ in it, as python-iptables picks from ldconfig
        found = [d + "/xtables" for d in _lib_dirs() if os.path.isdir(d + "/xtables")]
        set_libdir = bool(found)
        if set_libdir:
            os.environ["XTABLES_LIBDIR"] = found[0]
    try:
        yield
    finally:
        ctypes.util.find_library = original
        if set_libdir:
            del os.environ["XTABLES_LIBDIR"]


def legacy_tables_loaded():
    """iptables-legacy tables exist in this network namespace (reading this loads nothing)."""
    for path in ("/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"):
        try:
            with open(path) as f:
                if f.read().strip():
                    return True
        except OSError:
            continue
    return False


def choose_backend(spec):
    """The backend for this network: what the host already uses, never legacy and nft mixed.

    auto: iptables-legacy when legacy tables are loaded; nftables when the network already lives
    in a native table; iptables-nft when the host's rules are iptables-nft tables; else nftables,
    else iptables as `iptables -V` reports it.
    """
    if spec.backend == "nftables":
        return NftablesBackend()
    if spec.backend == "iptables":
        return _iptables()
    if legacy_tables_loaded():
        return _iptables("legacy")
    try:
        nft = NftablesBackend()
    except ApplyError:
        nft = None
    if nft is not None:
        if any(marker[0] == spec.network for marker in nft.markers().values()):
            return nft  # the network already lives here, maybe under an earlier table name
        if any(fam in ("ip", "ip6") and name in _IPTABLES_NFT_TABLES for fam, name in nft.tables()):
            return _iptables("nft")
        return nft
    try:
        return _iptables()
    except ApplyError:
        raise ApplyError("backend", "neither nftables (libnftables or nft) nor iptables is installed") from None


@contextlib.contextmanager
def _locked():
    """One writer at a time on this host (module runs and CNI calls): each reads, plans, then writes."""
    with rundir.locked(os.path.basename(LOCK_PATH), os.path.dirname(LOCK_PATH)):
        yield


def add_container_fast(spec):
    """Add one container's new mappings without reading the host's mappings; True when they landed.

    The CNI plugin's ADD: on nftables with wildcard host addresses, the cost does not grow with the
    mappings already on the host. False (nothing changed) when it does not apply; the caller then
    converges with ``converge_port_mapper``, which also explains conflicts.
    """
    if (spec.state != "present" or spec.exclusive or spec.backend == "iptables"
            or (spec.localhost and spec.localhost_devices is None)
            or not spec.entries or any(key[2] for key in spec.entries)):
        return False
    with _locked():
        backend = choose_backend(spec)
        if backend.name != "nftables":
            return False
        sysctls = _route_localnet_plan(NetworkState(entries=spec.entries), spec.localhost_devices) \
            if spec.localhost else []
        done = []
        landed = False
        try:
            for path, old in sysctls:
                _write(path, "1")
                done.append((path, old))
            landed = backend.add_elements(spec, spec.entries)
        finally:
            if not landed:  # nothing changed: the usual converge runs next
                for path, old in reversed(done):
                    _write(path, old)
        return landed


def _own_key(backend, spec):
    return table_name(spec) if backend.name == "nftables" else spec.chain


def _route_localnet_plan(state, devices=None, check_mode=False, planned=NOTHING_PLANNED, notes=None):
    """Devices toward IPv4 containers that need route_localnet=1 for 127.0.0.1 clients: [(sysctl path, value)].

    ``devices`` when the caller knows them (a CNI result lists the host side of the interfaces it made):
    no route is looked up then, and a listed device that is gone is passed over, unless check mode plans a
    run that creates it (``planned``): a new device starts with conf/default's value. Looking the routes up
    in check mode cannot see devices the run creates; ``notes`` (a list) then gets a sentence saying so.
    """
    ips = sorted(set(v[1] for k, v in state.entries.items() if k[0] == 4))
    if not ips:
        return []
    if devices is not None:
        plan = []
        for name in devices:  # validated interface names: no '/', not '.' or '..'
            path = "/proc/sys/net/ipv4/conf/%s/route_localnet" % name
            try:
                with open(path) as f:
                    current = f.read().strip()
            except FileNotFoundError:
                if not (check_mode and planned.device(None, name)):
                    continue
                with open("/proc/sys/net/ipv4/conf/default/route_localnet") as f:
                    current = f.read().strip()  # what the device this run creates will start with
            if current != "1":
                plan.append((path, current))
        return plan
    new_devices = sorted(name for netns, name in planned.devices if netns is None) if check_mode else []
    from . import netlink  # pyroute2 takes ~0.15 s to import: only paths that need it pay for it
    if netlink.PYROUTE2_IMPORT_ERROR is not None:
        raise ApplyError("localhost", "needs pyroute2 on the host to find the devices toward the containers")
    plan = []
    unrouted = []
    with netlink.IPRoute() as ipr:
        for ip in ips:
            device = planned.route(None, ipaddress.ip_address(ip)) if check_mode else None
            if device is not None:  # check mode: the route an address this run adds makes
                path = "/proc/sys/net/ipv4/conf/%s/route_localnet" % device
                if not os.path.exists(path):  # a device the run creates starts with conf/default's value
                    path_now = "/proc/sys/net/ipv4/conf/default/route_localnet"
                else:
                    path_now = path
                with open(path_now) as f:
                    current = f.read().strip()
                if current != "1" and path not in [p for p, _old in plan]:
                    plan.append((path, current))
                continue
            try:
                route = ipr.route("get", dst=ip)[0]
            except netlink.NetlinkError as exc:
                if new_devices:
                    unrouted.append(ip)
                    continue
                raise ApplyError("localhost", "no route to container %s: %s" % (ip, exc)) from None
            link = netlink.link_state(ipr, index=route.get_attr("RTA_OIF"))
            if link is None:
                raise ApplyError("localhost", "the route to container %s has no output device" % ip)
            path = "/proc/sys/net/ipv4/conf/%s/route_localnet" % link["name"]
            with open(path) as f:
                current = f.read().strip()
            if current != "1" and path not in [p for p, _old in plan]:
                plan.append((path, current))
    if unrouted and notes is not None:
        notes.append("set route_localnet=1 on the devices the routes to the containers%s lead through when applied; "
                     "this run creates %s first, so check mode cannot name them all"
                     % (" (%s unrouted yet)" % ", ".join(unrouted) if unrouted else "", ", ".join(new_devices)))
    return plan


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def flush_udp_conntrack(keys):
    """Delete conntrack entries of these UDP host ports (so a re-mapped port is not black-holed)."""
    deleted = 0
    for family in (4, 6):
        wanted = set((host_ip, port) for fam, _proto, host_ip, port in keys if fam == family)
        if wanted:
            deleted += _flush_family(family, wanted)
    return deleted


def _flush_family(family, wanted):
    from . import conntrack  # standard library only: no pyroute2 import (and its `platform` probe) on a CNI DEL
    try:
        return conntrack.delete_udp(family, wanted)
    except OSError as exc:  # no ctnetlink here (nf_conntrack_netlink not loadable): the conntrack command may be
        try:
            return _flush_with_cli(family, set(port for _ip, port in wanted))
        except ApplyError:
            raise ApplyError("conntrack", "conntrack netlink failed: %s" % exc) from None


def _flush_with_cli(family, ports):
    import shutil
    import subprocess
    tool = shutil.which("conntrack")
    if not tool:
        raise ApplyError("conntrack", "the conntrack command is not installed either")
    deleted = 0
    for port in sorted(ports):
        # Shared with the CNI plugin (a CNI DEL flushes too), which runs outside Ansible: no run_command.
        # pylint: disable-next=ansible-bad-function
        out = subprocess.run([tool, "-D", "-f", "ipv4" if family == 4 else "ipv6", "-p", "udp", "--orig-port-dst",
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             check=False).stdout
        match = re.search(r"(\d+) flow entries have been deleted", out)
        deleted += int(match.group(1)) if match else 0
    return deleted


def _lines(state, chains):
    if not state.exists:
        return ""
    head = "# %s exclude_devices=%s hairpin=%s localhost=%s\n" % (
        "+".join(chains), ",".join(state.exclude_devices) or "-", state.hairpin, state.localhost)
    return head + "".join(mapping_line(m) + "\n" for m in compact(state.entries))


def converge(spec, check_mode=False, planned=None, diff=True):
    """Plan and (unless check_mode) apply; returns the result dict the front doors report (contract.py).

    ``planned`` (contract.Planned): devices this run creates before this part, for check mode's
    route_localnet plan. What lands registers its undo with the open ``transaction.unit``: the network's
    tables or chains as they were, and the route_localnet values. ``diff=False`` leaves out the
    before/after text of the whole network (an empty ``diff``): a caller that never shows it (a CNI DEL)
    saves ~50 ms with 10,000 mappings on the host.
    """
    planned = planned or NOTHING_PLANNED
    if check_mode:
        return _converge(spec, check_mode, diff, planned)
    with _locked():
        return _converge(spec, check_mode, diff, planned)


def converge_port_mapper(spec, check_mode=False, diff=True):
    """``converge`` without a plan of the run around it (the CNI plugin, bench/)."""
    return converge(spec, check_mode=check_mode, diff=diff)


def _copy_state(state):
    return NetworkState(exists=state.exists, entries=state.entries, exclude_devices=state.exclude_devices,
                        hairpin=state.hairpin, localhost=state.localhost, hairpin_prefix=state.hairpin_prefix)


def _reopen(backend):
    """A new backend of the same kind and engine, that reads the host afresh."""
    if backend.name == "nftables":
        return NftablesBackend()
    from . import portmap_ipt
    if type(backend) is portmap_ipt.IptablesBackend:  # pylint: disable=unidiomatic-typecheck
        return portmap_ipt.IptablesBackend(backend.variant)
    return type(backend)()


def _named(spec, key):
    """The spec of this network with its table or chain called ``key`` (an earlier name of it)."""
    named = copy.copy(spec)
    named.chain, named.chain_given = key, True
    return named


def _ruleset_undo(spec, backend, originals, own):
    """Put the network's tables or chains back as ``originals`` ({name: NetworkState}) had them.

    Only this network's objects are written (as the apply did): a name that did not exist before goes.
    On iptables, a network's IPv6 chains exist once it had an IPv6 mapping (or the host IPv6 port_mapper
    chains), which its NetworkState does not say: chains the run added there are removed again. A nat
    table the run created stays (empty), as the kernel or iptables-nft leave it.
    """
    keys = sorted(k for k in originals if k != own) + [own]
    had_ipv6 = set(k for k in keys if getattr(backend, "jumps", {}).get(6, {}).get(k))

    def undo():
        with _locked():
            fresh = _reopen(backend)
            networks = fresh.read()
            for key in keys:
                target = originals.get(key) or NetworkState(exists=False)
                now = networks[key][1] if key in networks else NetworkState(exists=False)
                if not now.same_as(target):
                    fresh.apply(_named(spec, key), now, target)
            if backend.name.startswith("iptables"):
                from .portmap_ipt import RESTORE_ARGS
                fresh = _reopen(backend)
                fresh.read()
                for key in keys:
                    if key not in had_ipv6 and fresh.jumps[6].get(key):
                        code, _out, err = fresh._run(  # pylint: disable=protected-access
                            6, "restore", RESTORE_ARGS, stdin=fresh.render(_named(spec, key), NetworkState(), 6))
                        if code != 0:
                            raise ApplyError("mappings", "removing the IPv6 chains %s failed: %s" % (key, err.strip()))
    return undo


def _sysctl_undo(done):
    def undo():
        for path, old in reversed(done):
            _write(path, old)
    return undo


def _where(backend, key):
    if backend.name == "nftables":
        return "nftables table inet %s" % key
    return "iptables chains %s, %s-POST" % (key, key)


def _sentences(spec, backend, own, before, after, stale, added, removed, sysctls, notes):
    """What the run changes (or would), as sentences: the result's ``changes``."""
    out = ["move network %s from the %s to the %s" % (spec.network, _where(backend, key), _where(backend, own))
           for key in stale]
    if after.exists and not before.exists and not stale:
        out.append("create the %s for network %s" % (_where(backend, own), spec.network))
    elif before.exists and not after.exists:
        out.append("remove the %s of network %s" % (_where(backend, own), spec.network))
    if after.exists and before.exists and before.options() != after.options():
        old, new = before.options(), after.options()
        out += ["set %s of network %s to %s (was %s)" % (name, spec.network, _shown(new[name]), _shown(old[name]))
                for name in sorted(new) if new[name] != old[name]]
    for verb, entries in (("remove", removed), ("add", added)):
        items = compact(entries)
        out += ["%s mapping %s" % (verb, mapping_line(item)) for item in items[:SENTENCES_MAX]]
        if len(items) > SENTENCES_MAX:
            listed = "added" if verb == "add" else "removed"
            out.append("%s %d more mappings (listed in %s)" % (verb, len(items) - SENTENCES_MAX, listed))
    out += ["set %s to 1 (was %s)" % (path, old) for path, old in sysctls]
    return out + notes


SENTENCES_MAX = 100  # a first run of 10,000 mappings says how many; ``added`` lists them all


def _shown(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _converge(spec, check_mode, diff=True, planned=NOTHING_PLANNED):
    started = time.time()
    backend = choose_backend(spec)
    if backend.name.startswith("iptables") and len(spec.chain) > CHAIN_MAX:
        raise ValidationError("chain" if spec.chain_given else "network",
                              "the iptables chain %s is longer than %d characters; set a shorter chain"
                              % (spec.chain, CHAIN_MAX))
    networks = backend.read()
    backend.check_owner(spec, networks)
    read_done = time.time()
    own = _own_key(backend, spec)
    stale = sorted(key for key, (network, _state) in networks.items() if network == spec.network and key != own)
    originals = dict((key, _copy_state(networks[key][1])) for key in [own] + stale if key in networks)
    before = networks[own][1] if own in networks else NetworkState(exists=False)
    for key in stale:  # a renamed chain/table: its mappings carry over, the old one goes
        old = networks[key][1]
        if not before.exists:
            before = NetworkState(exists=True, entries=old.entries, exclude_devices=old.exclude_devices,
                                  hairpin=old.hairpin, localhost=old.localhost, hairpin_prefix=old.hairpin_prefix)
        else:
            merged = dict(old.entries)
            merged.update(before.entries)
            before.entries = merged
    others = dict((network, state) for key, (network, state) in networks.items()
                  if network != spec.network)
    after = desired_state(spec, before, others)
    added, removed, unchanged = diff_entries(before, after)
    notes = []
    sysctls = _route_localnet_plan(after, spec.localhost_devices, check_mode, planned, notes) \
        if after.exists and after.localhost else []
    rules_change = bool(stale) or not before.same_as(after)
    changed = rules_change or bool(sysctls)
    planned_at = time.time()
    flushed = 0
    warnings = []
    if changed and not check_mode:
        done = []
        try:
            for path, old in sysctls:
                _write(path, "1")
                done.append((path, old))
            if rules_change:
                backend.apply(spec, before, after, stale=stale)
        except Exception:
            _sysctl_undo(done)()
            raise
        transaction.keep("route_localnet of network %s" % spec.network, _sysctl_undo(done) if done else None)
        if rules_change:
            transaction.keep("port_mapper network %s" % spec.network, _ruleset_undo(spec, backend, originals, own))
        try:
            flushed = flush_udp_conntrack(stale_udp_keys(before, after))
        except (ApplyError, OSError) as exc:
            # the rules landed; a failed cleanup must not hide that
            warnings.append("stale UDP conntrack entries were not deleted: %s" % exc)
    finished = time.time()
    return {
        "changed": changed,
        "changes": _sentences(spec, backend, own, before, after, stale, added, removed, sysctls, notes),
        "backend": backend.name,
        "engine": backend.engine,
        "network": spec.network,
        "chain": own,
        "added": compact(added),
        "removed": compact(removed),
        "counts": {"added": len(added), "removed": len(removed), "unchanged": unchanged},
        "route_localnet": [path for path, _old in sysctls],
        "conntrack_flushed": flushed,
        "stale_chains_removed": stale,
        "diff": {"before": _lines(before, stale or [own]), "after": _lines(after, [own])} if diff else {},
        "timings": {"read": round(read_done - started, 4), "plan": round(planned_at - read_done, 4),
                    "apply": round(finished - planned_at, 4) if changed and not check_mode else 0},
        "warnings": warnings,
    }
