# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mesos-style port mapping without NAT: tc u32 filters that hand a container its port ranges.

Containers share the host's IP address. On each host device's ingress, IPv4 TCP/UDP packets whose
destination port lies in a container's ranges are redirected (mirred) to the container's veth; on
the veth's ingress, everything the container sends is redirected out of the first host device. ARP
and ICMP arriving on a host device are mirrored to every container veth (the host still gets them),
so containers resolve neighbours and see ICMP errors and echo replies on the shared address.

Layout (what the module owns on the ingress qdisc of each device):

- prio 1 (protocol arp) and prio 2 (protocol ip, ICMP): the shared mirror filters, one action per
  container veth, rebuilt when containers come and go;
- prio 0x100 and up, one per container (the same on every host device): one u32 filter per
  protocol and power-of-two aligned port block, redirecting to that container's veth;
- prio 1 on the container veth: match all, redirect to the first host device.

A container's filters are found again by their redirect target (its veth) and their port blocks
are read back from the kernel's u32 selectors, so the kernel is the only state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct

from . import contract, netlink, nsutil, portranges, validate
from .errors import ValidationError
from .transaction import Transaction

INGRESS = 0xFFFF0000
TC_H_INGRESS = 0xFFFFFFF1
ETH_P_ALL, ETH_P_IP, ETH_P_ARP = 0x0003, 0x0800, 0x0806
ARP_PRIO, ICMP_PRIO, RETURN_PRIO = 1, 2, 1
FIRST_PRIO, LAST_PRIO = 0x100, 0xFFF0
PROTOCOLS = {"tcp": 6, "udp": 17}
MIRRED_REDIRECT, MIRRED_MIRROR = 1, 2
_SEL_HEADER = struct.Struct("=BBBxHHhhI")
_KEY = struct.Struct(">II")


# The module's options, once (contract.py): its argument_spec, and the values the part refuses.
OPTIONS = {
    "veth": {"type": "str", "required": True, "bad": ["veth:web", "veth-web-container-1", "veth web"]},
    "ports": {"type": "raw", "bad": ["9000-8000", "70000", "http"]},
    "devices": {"type": "list", "elements": "str", "default": ["eth0"], "bad": [["eth0", "eth0"], ["eth:0"], []]},
    "protocols": {"type": "list", "elements": "str", "choices": ["tcp", "udp"], "default": ["tcp", "udp"],
                  "bad": [["sctp"], []]},
    "address": {"type": "str", "bad": ["10.246.0.300", "fd00::1", "10.1.0.1/24"]},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present", "bad": ["removed"]},
    "netns": {"type": "str", "bad": ["web/1", "../web"]},
    "netns_pid": {"type": "int", "bad": [0, -1, "x"]},
    "netns_dir": {"type": "path", "default": nsutil.DEFAULT_NETNS_DIR, "bad": ["var/run/netns"]},
}


def _str_list(field, value, default):
    """A list option as Ansible's ``type: list`` takes it (a comma-separated string is a list too)."""
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")] if value.strip() else []
    if not isinstance(value, list):
        raise ValidationError(field, "%r is not a list" % (value,))
    return value


class RedirectSpec:
    """The validated options. ``host=False``: no host I/O (the controller's check), every other check made.

    ``planned``: what the run creates before this part (contract.Planned); a planned namespace need not
    exist. The devices and the veth are looked up by ``converge`` (check mode: unless planned).
    """

    def __init__(self, veth, ports=None, devices=None, protocols=None, address=None, state="present",
                 netns=None, netns_pid=None, netns_dir=nsutil.DEFAULT_NETNS_DIR, host=True, planned=None):
        state = "present" if state is None else state
        if state not in ("present", "absent"):
            raise ValidationError("state", "%r is not one of present, absent" % (state,))
        self.state = state
        self.veth = validate.ifname("veth", veth)
        devices = _str_list("devices", devices, ["eth0"])
        if not devices:
            raise ValidationError("devices", "give at least one host device")
        self.devices = [validate.ifname("devices[%d]" % i, d) for i, d in enumerate(devices)]
        if len(set(self.devices)) != len(self.devices):
            twice = [d for d in self.devices if self.devices.count(d) > 1][0]
            raise ValidationError("devices", "%s is listed twice" % twice)
        if self.veth in self.devices:
            raise ValidationError("veth", "%s is also one of devices" % self.veth)
        protocols = _str_list("protocols", protocols, ["tcp", "udp"])
        if not protocols:
            raise ValidationError("protocols", "give tcp, udp or both")
        for i, proto in enumerate(protocols):
            if not isinstance(proto, str) or proto not in PROTOCOLS:
                raise ValidationError("protocols[%d]" % i, "%r is not one of tcp, udp" % (proto,))
        self.protocols = sorted(set(protocols))
        self.address = None
        if address is not None:
            self.address = validate.ip_address("address", address)
            if self.address.version != 4:
                raise ValidationError("address", "%s is not IPv4 (u32 port filters match IPv4 only)" % address)
        self.netns, self.netns_label = nsutil.netns_option(netns, netns_pid, netns_dir)
        self.ports = []
        if state == "present":
            if ports is None:
                raise ValidationError("ports", "required with state=present")
            self.ports = portranges.parse("ports", ports, low=1)
            if not self.ports:
                raise ValidationError("ports", "is empty; give at least one port or use state=absent")
        elif ports is not None:
            raise ValidationError("ports", "does not apply to state=absent")
        planned = planned or contract.NOTHING_PLANNED
        if host and not planned.netns(self.netns):
            self.netns = nsutil.resolve_netns("netns_pid" if netns_pid is not None else "netns", name=netns,
                                              pid=netns_pid, netns_dir=netns_dir)

    def blocks(self):
        """[(first, size)] power-of-two aligned blocks covering ``ports``."""
        return [(first, 0x10000 - mask) for first, mask in portranges.blocks(self.ports)]


# -- reading the kernel's filters ---------------------------------------------------------------

def parse_selector(raw):
    """Bytes the u32 selector matches: {offset: (value, mask)} per byte."""
    nkeys = _SEL_HEADER.unpack_from(raw, 0)[2]
    matched = {}
    for i in range(nkeys):
        base = _SEL_HEADER.size + 16 * i
        mask, value = _KEY.unpack_from(raw, base)
        off = struct.unpack_from("=i", raw, base + 8)[0]
        for byte in range(4):
            shift = 24 - 8 * byte
            bmask = (mask >> shift) & 0xFF
            if bmask:
                matched[off + byte] = ((value >> shift) & 0xFF, bmask)
    return matched


def _port_block(matched):
    """(protocol, first, size, dst address) of a port filter, or None when it is not one of ours."""
    proto = matched.get(9)
    if proto is None or proto[1] != 0xFF:
        return None
    hi_val, hi_mask = matched.get(22, (0, 0))
    lo_val, lo_mask = matched.get(23, (0, 0))
    mask = (hi_mask << 8) | lo_mask
    size = 0x10000 - mask if mask else 0x10000
    if mask and (mask | (mask - 1)) & 0xFFFF != 0xFFFF:  # not a prefix mask
        return None
    address = None
    if all(matched.get(o, (0, 0))[1] == 0xFF for o in range(16, 20)):
        address = ".".join(str(matched[o][0]) for o in range(16, 20))
    return proto[0], (hi_val << 8) | lo_val, size, address


def _actions(opts):
    out = []
    act = opts.get_attr("TCA_U32_ACT")
    if act is None:
        return out
    for name, value in act["attrs"]:
        if not name.startswith("TCA_ACT_PRIO_") or value.get_attr("TCA_ACT_KIND") != "mirred":
            continue
        parms = value.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
        out.append((parms["eaction"], parms["ifindex"]))
    return out


def read_filters(ipr, index):
    """u32 filters on a device's ingress: [{prio, protocol, matched, actions}] (none without ingress)."""
    try:
        msgs = ipr.get_filters(index=index, parent=INGRESS)
    except netlink.NetlinkError:
        return []
    out = []
    for msg in msgs:
        if msg.get_attr("TCA_KIND") != "u32":
            continue
        opts = msg.get_attr("TCA_OPTIONS")
        sel = opts.get_attr("TCA_U32_SEL") if opts is not None else None
        if sel is None:
            continue  # the prio's hash table, not a rule
        raw = bytes(sel.data[sel.offset + 4:sel.offset + sel.length])
        out.append({"prio": msg["info"] >> 16, "protocol": socket.ntohs(msg["info"] & 0xFFFF),
                    "matched": parse_selector(raw), "actions": _actions(opts)})
    return out


def has_ingress(ipr, index):
    return any(m["parent"] == TC_H_INGRESS for m in ipr.get_qdiscs(index=index) if m["index"] == index)


# -- what the filters should be -----------------------------------------------------------------

def port_keys(proto, first, size, address=None):
    """u32 keys, one per byte: IPv4 without options, not a later fragment, protocol, dst port block."""
    mask = (0x10000 - size) & 0xFFFF
    keys = ["0x05/0x0f+0", "0x00/0x1f+6", "0x00/0xff+7", "0x%02x/0xff+9" % proto]
    if address is not None:
        for i, octet in enumerate(str(address).split(".")):
            keys.append("0x%02x/0xff+%d" % (int(octet), 16 + i))
    for offset, value, bmask in ((22, first >> 8, mask >> 8), (23, first & 0xFF, mask & 0xFF)):
        if bmask:
            keys.append("0x%02x/0x%02x+%d" % (value & bmask, bmask, offset))
    return keys


def _add_filter(ipr, index, prio, protocol, keys, actions):
    acts = [{"kind": "mirred", "direction": "egress", "action": "redirect" if e == MIRRED_REDIRECT else "mirror",
             "ifindex": target} for e, target in actions]
    ipr.tc("add-filter", "u32", index, parent=INGRESS, prio=prio, protocol=protocol, target=0x10000,
           keys=keys or ["0x0/0x0+0"], action=acts if len(acts) > 1 else acts[0])


def _del_prio(ipr, index, prio, protocol):
    ipr.tc("del-filter", None, index, 0, parent=INGRESS, info=(prio << 16) | socket.htons(protocol))


def _icmp_keys():
    return ["0x05/0x0f+0", "0x01/0xff+9"]


def _keys_of(matched):
    return ["0x%02x/0x%02x+%d" % (v, m, o) for o, (v, m) in sorted(matched.items())]


def _fmt_block(first, size):
    return "%d" % first if size == 1 else "%d-%d" % (first, first + size - 1)


# -- planning -----------------------------------------------------------------------------------

# ifindex stand-ins for devices this run creates (check mode): above every real one, as the kernel numbers a
# new device after those it has, and matching no filter's target.
_NEW_INDEX = 1 << 32


class _Host:
    """The host namespace's devices and what is on their ingress.

    ``new``: devices this run creates before the part (check mode): they have no ingress qdisc and no
    filters, as a new device has, and an ifindex not known yet. ``ipr`` None: the whole namespace is new.
    """

    def __init__(self, spec, ipr, new=()):
        links = ipr.get_links() if ipr is not None else []
        self.links = dict((m.get_attr("IFLA_IFNAME"), m["index"]) for m in links)
        for name in [spec.veth] + spec.devices:
            if name in new:
                self.links[name] = _NEW_INDEX + len(self.links)
        self.names = dict((v, k) for k, v in self.links.items())
        for i, dev in enumerate(spec.devices):
            if dev not in self.links:
                raise ValidationError("devices[%d]" % i, "no device %s in namespace %s" % (dev, spec.netns_label))
        self.veth = self.links.get(spec.veth)
        if self.veth is None and spec.state == "present":
            raise ValidationError("veth", "no device %s in namespace %s" % (spec.veth, spec.netns_label))

        def ingress(name):
            return name not in new and has_ingress(ipr, self.links[name])

        self.ingress = dict((d, ingress(d)) for d in spec.devices)
        self.filters = dict((d, read_filters(ipr, self.links[d]) if self.ingress[d] else []) for d in spec.devices)
        self.veth_ingress = self.veth is not None and ingress(spec.veth)
        self.veth_filters = read_filters(ipr, self.veth) if self.veth_ingress else []

    def containers(self, device):
        """{prio: {"target": ifindex, "blocks": set((proto, first, size, address))}} on a device."""
        out = {}
        for f in self.filters[device]:
            if f["prio"] < FIRST_PRIO or f["protocol"] != ETH_P_IP or len(f["actions"]) != 1:
                continue
            eaction, target = f["actions"][0]
            block = _port_block(f["matched"])
            if eaction != MIRRED_REDIRECT or block is None:
                continue
            entry = out.setdefault(f["prio"], {"target": target, "blocks": set(), "filters": []})
            entry["blocks"].add(block)
            entry["filters"].append(f)
        return out

    def mirror_targets(self, device, prio, protocol):
        for f in self.filters[device]:
            if f["prio"] == prio and f["protocol"] == protocol:
                return sorted(t for e, t in f["actions"] if e == MIRRED_MIRROR)
        return None


def plan(spec, host):
    """Actions (each with do/undo data) that bring the filters to ``spec``, and a view before/after."""
    actions = []
    want = set()
    if spec.state == "present":
        address = str(spec.address) if spec.address is not None else None
        for proto in spec.protocols:
            for first, size in spec.blocks():
                want.add((PROTOCOLS[proto], first, size, address))
    used_prios = set()
    mine = {}
    stale = {}
    for dev in spec.devices:
        for prio, entry in host.containers(dev).items():
            used_prios.add(prio)
            if host.veth is not None and entry["target"] == host.veth:
                mine[dev] = (prio, entry)
            elif entry["target"] not in host.names:
                stale.setdefault(dev, []).append((prio, entry))
            elif spec.state == "present":
                other = host.names[entry["target"]]
                theirs = portranges.normalize([(b[1], b[1] + b[2] - 1) for b in entry["blocks"]
                                               if b[0] in set(w[0] for w in want)])
                clash = portranges.intersection(theirs, spec.ports)
                if clash:
                    raise ValidationError("ports", "%s already redirected to %s on %s" % (
                        portranges.format_set(clash), other, dev))
    for dev in spec.devices:
        for prio, entry in stale.get(dev, []):
            actions.append({"action": "del_prio", "device": dev, "prio": prio, "protocol": ETH_P_IP,
                            "filters": entry["filters"], "text": "remove stale port filters (prio %d) on %s: their"
                            " veth (ifindex %d) is gone" % (prio, dev, entry["target"])})
    if spec.state == "present":
        for dev in spec.devices:
            if not host.ingress[dev]:
                actions.append({"action": "add_ingress", "device": dev, "text": "add ingress qdisc on %s" % dev})
        if not host.veth_ingress:
            actions.append({"action": "add_ingress", "device": spec.veth,
                            "text": "add ingress qdisc on %s" % spec.veth})
        current = [mine.get(dev) for dev in spec.devices]
        same = all(c is not None and c[1]["blocks"] == want for c in current) and \
            len(set(c[0] for c in current)) == 1
        if not same:
            prio = next(p for p in range(FIRST_PRIO, LAST_PRIO) if p not in used_prios)
            for dev in spec.devices:
                for proto, first, size, address in sorted(want):
                    actions.append({"action": "add_filter", "device": dev, "prio": prio, "protocol": ETH_P_IP,
                                    "keys": port_keys(proto, first, size, address),
                                    "actions": [(MIRRED_REDIRECT, host.veth)],
                                    "text": "redirect %s port %s on %s to %s (prio %d)" % (
                                        _proto_name(proto), _fmt_block(first, size), dev, spec.veth, prio)})
            for dev in spec.devices:
                if dev in mine:
                    old_prio, entry = mine[dev]
                    actions.append({"action": "del_prio", "device": dev, "prio": old_prio, "protocol": ETH_P_IP,
                                    "filters": entry["filters"],
                                    "text": "remove the previous port filters of %s on %s (prio %d)" % (
                                        spec.veth, dev, old_prio)})
        # the return path: everything the container sends leaves through the first host device
        uplink = host.links[spec.devices[0]]
        ret = [f for f in host.veth_filters if f["prio"] == RETURN_PRIO]
        if not (len(ret) == 1 and ret[0]["protocol"] == ETH_P_ALL and ret[0]["actions"] == [(MIRRED_REDIRECT, uplink)]
                and not ret[0]["matched"]):
            if ret:
                actions.append({"action": "del_prio", "device": spec.veth, "prio": RETURN_PRIO,
                                "protocol": ret[0]["protocol"], "filters": ret,
                                "text": "remove the old return-path filter on %s" % spec.veth})
            actions.append({"action": "add_filter", "device": spec.veth, "prio": RETURN_PRIO, "protocol": ETH_P_ALL,
                            "keys": [], "actions": [(MIRRED_REDIRECT, uplink)],
                            "text": "redirect everything from %s out of %s" % (spec.veth, spec.devices[0])})
    else:
        for dev in spec.devices:
            if dev in mine:
                prio, entry = mine[dev]
                actions.append({"action": "del_prio", "device": dev, "prio": prio, "protocol": ETH_P_IP,
                                "filters": entry["filters"],
                                "text": "remove the port filters of %s on %s (prio %d)" % (spec.veth, dev, prio)})
        ret = [f for f in host.veth_filters if f["prio"] == RETURN_PRIO]
        if ret:
            actions.append({"action": "del_prio", "device": spec.veth, "prio": RETURN_PRIO,
                            "protocol": ret[0]["protocol"], "filters": ret,
                            "text": "remove the return-path filter on %s" % spec.veth})
    # ARP and ICMP mirrors: to every container veth that has port filters after this change
    for dev in spec.devices:
        targets = set(e["target"] for p, e in host.containers(dev).items()
                      if e["target"] in host.names and e["target"] != host.veth)
        if spec.state == "present":
            targets.add(host.veth)
        targets = sorted(targets)
        for prio, protocol, keys, what in ((ARP_PRIO, ETH_P_ARP, [], "ARP"),
                                           (ICMP_PRIO, ETH_P_IP, _icmp_keys(), "ICMP")):
            have = host.mirror_targets(dev, prio, protocol)
            if have == (targets or None):
                continue
            if have is not None:
                old = [f for f in host.filters[dev] if f["prio"] == prio and f["protocol"] == protocol]
                actions.append({"action": "del_prio", "device": dev, "prio": prio, "protocol": protocol,
                                "filters": old, "text": "remove the %s mirror on %s" % (what, dev)})
            if targets:
                actions.append({"action": "add_filter", "device": dev, "prio": prio, "protocol": protocol,
                                "keys": keys, "actions": [(MIRRED_MIRROR, t) for t in targets],
                                "text": "mirror %s arriving on %s to %s" % (
                                    what, dev, ", ".join(host.names[t] for t in targets))})
    return actions


def _proto_name(number):
    return dict((v, k) for k, v in PROTOCOLS.items()).get(number, str(number))


def view(spec, host):
    """This container's redirects as the user sees them: {device: {"prio", "ports": {proto: ranges}}}."""
    out = {}
    for dev in spec.devices:
        for prio, entry in host.containers(dev).items():
            if host.veth is None or entry["target"] != host.veth:
                continue
            ports = {}
            for proto, first, size, _address in entry["blocks"]:
                ports.setdefault(_proto_name(proto), []).append((first, first + size - 1))
            ranges = dict((p, portranges.format_set(portranges.normalize(r))) for p, r in ports.items())
            out[dev] = {"prio": prio, "ports": ranges}
    return out


def _predict(spec, before, actions):
    """``view`` as it will be once ``actions`` are applied (check mode)."""
    if spec.state == "absent":
        return {}
    ranges = portranges.format_set(spec.ports)
    out = {}
    for dev in spec.devices:
        prios = [a["prio"] for a in actions if a["action"] == "add_filter" and a["device"] == dev
                 and a["prio"] >= FIRST_PRIO]
        prio = prios[0] if prios else before[dev]["prio"]
        out[dev] = {"prio": prio, "ports": dict((p, ranges) for p in spec.protocols)}
    return out


# -- applying -----------------------------------------------------------------------------------

class _Netlink:
    """The netlink socket of converge while it runs; afterwards (an enclosing unit undoing this part after a
    later part failed) a fresh one per undo step, in the same namespace."""

    def __init__(self, netns, ipr):
        self.netns = netns
        self.ipr = ipr

    def __call__(self, request):
        """Run ``request(ipr)``."""
        if self.ipr is not None:
            return request(self.ipr)
        ipr = netlink.open_iproute(self.netns)
        try:
            return request(ipr)
        finally:
            ipr.close()

    def close(self):
        if self.ipr is not None:
            self.ipr.close()
            self.ipr = None


def _step(nl, host, action, first=True):
    """(do, undo) of one action, each sending its requests through ``nl``; ``first``: no filter was added at the
    action's device, prio and protocol before it in the plan."""
    kind = action["action"]
    dev = action["device"]
    index = host.links[dev]
    if kind == "add_ingress":
        return (lambda: nl(lambda ipr: ipr.tc("add", "ingress", index, INGRESS)),
                lambda: nl(lambda ipr: ipr.tc("del", None, index, INGRESS, parent=TC_H_INGRESS)))
    if kind == "add_filter":
        # the undo removes the whole prio: the first filter added at a prio carries it, the others none
        return (lambda: nl(lambda ipr: _add_filter(ipr, index, action["prio"], action["protocol"], action["keys"],
                                                   action["actions"])),
                (lambda: nl(lambda ipr: _del_prio(ipr, index, action["prio"], action["protocol"]))) if first else None)

    def restore(ipr):
        for f in action["filters"]:
            _add_filter(ipr, index, f["prio"], f["protocol"], _keys_of(f["matched"]), f["actions"])
    return (lambda: nl(lambda ipr: _del_prio(ipr, index, action["prio"], action["protocol"]))), lambda: nl(restore)


def converge(spec, check_mode=False, planned=None):
    """Read the filters, plan, and (unless ``check_mode``) apply; the part's result (contract.py).

    In check mode, devices ``planned`` says this run creates (or all, in a namespace it creates) are
    planned as new ones: no ingress qdisc, no filters. Applied changes hand their undo to the enclosing
    ``transaction.unit``.
    """
    planned = planned or contract.NOTHING_PLANNED
    new = set()
    if check_mode:
        new = set(d for d in [spec.veth] + spec.devices if planned.device(spec.netns, d))
    ipr = None if check_mode and planned.netns(spec.netns) else netlink.open_iproute(spec.netns)
    nl = _Netlink(spec.netns, ipr)
    try:
        host = _Host(spec, ipr, new)
        actions = plan(spec, host)
        before = view(spec, host)
        if actions and not check_mode:
            txn = Transaction()
            steps = []
            added = set()
            for action in actions:
                key = (action["device"], action.get("prio"), action.get("protocol"))
                do, undo = _step(nl, host, action, first=action["action"] != "add_filter" or key not in added)
                if action["action"] == "add_filter":
                    added.add(key)
                steps.append(lambda t, d=action["text"], do=do, undo=undo: t.step(d, do, undo))
            txn.run("veth", steps)
            after = view(spec, _Host(spec, ipr))
        else:
            after = _predict(spec, before, actions) if actions else before
        return {"changed": bool(actions), "changes": [a["text"] for a in actions],
                "diff": {"before": before, "after": after}, "redirects": after,
                "ports": portranges.format_set(spec.ports) if spec.state == "present" else ""}
    finally:
        nl.close()


def spec(params, host=True, planned=None):
    """The part's validated spec from the module's parameters (contract.py)."""
    return RedirectSpec(host=host, planned=planned, **validate.params(OPTIONS, params))
