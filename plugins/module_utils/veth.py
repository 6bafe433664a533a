# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""veth pairs: plan the difference to the spec, apply it all or nothing.

The host end lives in ``netns`` (default: the caller's namespace), the peer
in ``peer_netns``. The pair is created in one RTM_NEWLINK request that
already carries both names, MTUs, MACs and the peer's namespace, so a peer
named ``eth0`` never appears, even briefly, in the host namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket

from . import netlink, nsutil, validate
from . import contract
from .errors import ValidationError
from .transaction import Transaction

# The option schema, once (see contract.py): the module's argument_spec and the policy check use it.
OPTIONS = {
    "name": {"type": "str", "required": True, "bad": ["veth:web", "a-name-longer-than-15", ""]},
    "peer": {"type": "str", "bad": ["eth 0", "x" * 16]},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"], "bad": ["gone"]},
    "netns": {"type": "str", "bad": ["../web", "web/1"]},
    "netns_pid": {"type": "int", "bad": [0, -1, "x"]},
    "peer_netns": {"type": "str", "bad": ["web/../x", ".hidden/x"]},
    "peer_netns_pid": {"type": "int", "bad": [-5, "x"], "bad_with": {"peer_netns": None}},
    "netns_dir": {"type": "path", "default": nsutil.DEFAULT_NETNS_DIR, "bad": ["run/netns"]},
    "mtu": {"type": "int", "bad": [70000, 67, "big"]},
    "mac": {"type": "str", "bad": ["02:00:00:00:00", "01:00:5e:00:00:01", "zz:00:00:00:00:01"]},
    "peer_mac": {"type": "str", "bad": ["02-00-00-00-00-01"]},
    "addresses": {"type": "list", "elements": "str", "bad": [["10.0.0.1/33"], ["10.0.0.300/24"]]},
    "peer_addresses": {"type": "list", "elements": "str", "bad": [["10.77.0.2/33"], ["fe80::1%eth0/64"]]},
    "peer_gateway": {"type": "str", "bad": ["10.0.0.256", "fe80::1%eth0"]},
    "master": {"type": "str", "bad": ["br:0"]},
}


def spec(params, host=True, planned=None):
    """The validated spec (contract.py): ``host=False`` checks everything that needs no host I/O."""
    return VethSpec(host=host, planned=planned, **validate.params(OPTIONS, params))


def _netns_path(field, name, pid, netns_dir, host, planned):
    """The namespace's handle path; without ``host`` (or when this run creates it) only its syntax is checked."""
    if pid is not None:
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValidationError(field, "%r is not a process id" % (pid,))
    elif name is not None:
        if not isinstance(name, str) or not name:
            raise ValidationError(field, "%r is not a namespace name or path" % (name,))
        if not name.startswith("/"):
            nsutil.check_netns_name(field, name)
    if not host:
        return None
    path = os.path.join(netns_dir, name) if name is not None and not name.startswith("/") else name
    if pid is None and planned is not None and planned.netns(path):
        return path
    return nsutil.resolve_netns(field, name=name, pid=pid, netns_dir=netns_dir)


class VethSpec:
    def __init__(self, name, peer=None, state="present", netns=None, netns_pid=None,
                 peer_netns=None, peer_netns_pid=None, netns_dir=nsutil.DEFAULT_NETNS_DIR,
                 mtu=None, mac=None, peer_mac=None, addresses=None, peer_addresses=None,
                 peer_gateway=None, master=None, host=True, planned=None):
        if state not in ("present", "absent"):
            raise ValidationError("state", "%r is not one of present, absent" % (state,))
        self.state = state
        self.name = validate.ifname("name", name)
        if not isinstance(netns_dir, str) or not netns_dir.startswith("/"):
            raise ValidationError("netns_dir", "%r is not an absolute path" % (netns_dir,))
        for field, value, pid in (("netns", netns, netns_pid), ("peer_netns", peer_netns, peer_netns_pid)):
            if value is not None and pid is not None:
                raise ValidationError(field, "give either %s or %s_pid, not both" % (field, field))
        self.planned = planned or contract.NOTHING_PLANNED
        self.netns_label = netns if netns is not None else ("pid %d" % netns_pid if netns_pid else "(current)")
        self.netns_gone = False
        try:
            self.netns = _netns_path("netns_pid" if netns_pid is not None else "netns", netns, netns_pid,
                                     netns_dir, host, planned)
        except ValidationError:
            if state != "absent" or not host:
                raise
            self.netns, self.netns_gone = None, True  # the pair died with its namespace: nothing to remove
        if state == "absent":
            self.peer = validate.ifname("peer", peer) if peer is not None else None
            return
        if peer is None:
            raise ValidationError("peer", "required with state=present")
        self.peer = validate.ifname("peer", peer)
        self.peer_netns = _netns_path("peer_netns_pid" if peer_netns_pid is not None else "peer_netns",
                                      peer_netns, peer_netns_pid, netns_dir, host, planned)
        self.peer_netns_label = (peer_netns if peer_netns is not None
                                 else ("pid %d" % peer_netns_pid if peer_netns_pid else self.netns_label))
        if peer_netns is None and peer_netns_pid is None:
            self.peer_netns = self.netns  # as documented: the host end's namespace
        if host:
            same_ns = self._pending() or _same_ns(self.netns, self.peer_netns)
        else:  # the same namespace when both name the same one (or neither names one)
            same_ns = ((peer_netns, peer_netns_pid) == (netns, netns_pid)
                       or (peer_netns is None and peer_netns_pid is None))
        if self._pending():
            same_ns = self.netns == self.peer_netns
        if same_ns and self.peer == self.name:
            raise ValidationError("peer", "%r is also the host end's name, in the same namespace" % peer)
        self.mtu = validate.mtu("mtu", mtu)
        self.mac = validate.mac("mac", mac)
        self.peer_mac = validate.mac("peer_mac", peer_mac)
        if self.mac and self.mac == self.peer_mac:
            raise ValidationError("peer_mac", "%s is also the host end's mac" % self.mac)
        self.addresses = validate.cidr_list("addresses", addresses)
        self.peer_addresses = validate.cidr_list("peer_addresses", peer_addresses)
        self.peer_gateway = validate.ip_address("peer_gateway", peer_gateway)
        if self.peer_gateway is not None and self.peer_addresses is not None:
            if not any(self.peer_gateway in a.network for a in self.peer_addresses
                       if a.version == self.peer_gateway.version):
                raise ValidationError("peer_gateway", "%s is not inside any of peer_addresses (%s), so the "
                                                      "peer could not reach it"
                                      % (self.peer_gateway, ", ".join(str(a) for a in self.peer_addresses)))
        self.master = validate.ifname("master", master) if master is not None else None

    def _pending(self):
        """Whether one end's namespace is one this run creates (check mode: nothing to read there)."""
        return self.planned.netns(self.netns) or self.planned.netns(getattr(self, "peer_netns", None))


def _same_ns(a, b):
    ia = nsutil.netns_inode(a) if a else nsutil.current_netns_inode()
    ib = nsutil.netns_inode(b) if b else nsutil.current_netns_inode()
    return ia == ib


def pair_view(h, state):
    """Both ends as the user sees them (for diff and return values)."""
    host, peer = state.get("host"), state.get("peer")
    if host is None or peer is None:
        return {"present": host is not None}
    master = netlink.link_state(h.host, index=host["master"]) if host["master"] else None
    gateway = state.get("gateway")
    return {"present": True,
            "host": {"name": host["name"], "mtu": host["mtu"], "mac": host["mac"], "up": host["up"],
                     "addresses": [str(a) for a in state["host_addrs"]],
                     "master": master["name"] if master else None},
            "peer": {"name": peer["name"], "mtu": peer["mtu"], "mac": peer["mac"], "up": peer["up"],
                     "addresses": [str(a) for a in state["peer_addrs"]],
                     "gateway": gateway[0] if gateway else None}}


class _Handles:
    """Netlink sockets for the host end's and the peer's namespace."""

    def __init__(self, spec, pending=False):
        if pending:  # check mode, a namespace this run creates: nothing exists there to read
            self.host = None if spec.planned.netns(spec.netns) else netlink.open_iproute(spec.netns)
            self.peer = None
            return
        self.host = netlink.open_iproute(spec.netns)
        peer_ns = getattr(spec, "peer_netns", None)
        self.peer = self.host if spec.state == "absent" or _same_ns(spec.netns, peer_ns) \
            else netlink.open_iproute(peer_ns)

    def close(self):
        if self.host is not None:
            self.host.close()
        if self.peer not in (None, self.host):
            self.peer.close()


def read_veth(spec, h):
    """The pair as it is now: (host link, peer link, master link, host addrs, peer addrs, gateway)."""
    host = netlink.link_state(h.host, ifname=spec.name)
    if host is not None and host["kind"] != "veth":
        raise ValidationError("name", "%s exists in namespace %s and is a %s device, not a veth"
                                      % (spec.name, spec.netns_label, host["kind"] or "physical"))
    if spec.state == "absent":
        return {"host": host}
    peer = netlink.link_state(h.peer, ifname=spec.peer)
    if host is None and peer is not None:
        raise ValidationError("peer", "%s already exists in namespace %s" % (spec.peer, spec.peer_netns_label))
    if host is not None:
        if peer is None or peer["kind"] != "veth" or peer["link"] != host["index"] or host["link"] != peer["index"]:
            raise ValidationError("peer", "%s exists, but its peer is not %s in namespace %s; remove it first "
                                          "(state: absent) or correct name, peer and peer_netns"
                                  % (spec.name, spec.peer, spec.peer_netns_label))
    master = None
    if spec.master is not None:
        master = netlink.link_state(h.host, ifname=spec.master)
        if master is None:
            raise ValidationError("master", "no device %s in namespace %s" % (spec.master, spec.netns_label))
        if master["kind"] != "bridge":
            raise ValidationError("master", "%s is a %s device, not a bridge" % (spec.master, master["kind"]))
    state = {"host": host, "peer": peer, "master": master, "host_addrs": [], "peer_addrs": [], "gateway": None}
    if host is not None:
        state["host_addrs"] = netlink.addresses(h.host, host["index"])
        state["peer_addrs"] = netlink.addresses(h.peer, peer["index"])
        six = spec.peer_gateway is not None and spec.peer_gateway.version == 6
        state["gateway"] = netlink.default_route(h.peer, socket.AF_INET6 if six else socket.AF_INET)
    return state


def fresh_state(spec, h):
    """The state read_veth would find where this run creates the namespace of an end: no pair yet."""
    master = None
    if spec.master is not None:
        master = netlink.link_state(h.host, ifname=spec.master) if h.host is not None else None
        if master is None or master["kind"] != "bridge":
            raise ValidationError("master", "no bridge %s in namespace %s" % (spec.master, spec.netns_label))
    return {"host": None, "peer": None, "master": master, "host_addrs": [], "peer_addrs": [], "gateway": None}


def plan_veth(spec, h, state=None):
    """Actions that bring the pair to ``spec``, with before/after views for diff."""
    if state is None:
        state = read_veth(spec, h)
    host = state["host"]
    actions = []
    if spec.state == "absent":
        if host is not None:
            actions.append({"action": "delete", "ns": "host", "name": spec.name})
        before = {"name": spec.name, "present": host is not None}
        return {"actions": actions, "before": before, "after": {"name": spec.name, "present": False},
                "state": state}

    peer = state["peer"]
    if host is None:
        actions.append({"action": "create", "name": spec.name, "peer": spec.peer})
        host_addrs, peer_addrs, gateway = [], [], None
        host_up = peer_up = False
        master_index = 0
    else:
        host_addrs, peer_addrs, gateway = state["host_addrs"], state["peer_addrs"], state["gateway"]
        host_up, peer_up = host["up"], peer["up"]
        master_index = host["master"]
        for end, link, want_mac in (("host", host, spec.mac), ("peer", peer, spec.peer_mac)):
            if spec.mtu is not None and link["mtu"] != spec.mtu:
                actions.append({"action": "set", "ns": end, "name": link["name"], "attr": "mtu",
                                "value": spec.mtu, "old": link["mtu"]})
            if want_mac is not None and link["mac"] != want_mac:
                actions.append({"action": "set", "ns": end, "name": link["name"], "attr": "address",
                                "value": want_mac, "old": link["mac"]})
    if spec.master is not None and master_index != state["master"]["index"]:
        actions.append({"action": "set", "ns": "host", "name": spec.name, "attr": "master",
                        "value": state["master"]["index"], "old": master_index})
    for end, name, want, have in (("host", spec.name, spec.addresses, host_addrs),
                                  ("peer", spec.peer, spec.peer_addresses, peer_addrs)):
        if want is None:
            continue
        for addr in have:
            if addr not in want:
                actions.append({"action": "addr_del", "ns": end, "name": name, "address": addr})
        for addr in want:
            if addr not in have:
                actions.append({"action": "addr_add", "ns": end, "name": name, "address": addr})
    for end, name, up in (("host", spec.name, host_up), ("peer", spec.peer, peer_up)):
        if not up:
            actions.append({"action": "set", "ns": end, "name": name, "attr": "state", "value": "up",
                            "old": "down"})
    if spec.peer_gateway is not None:
        want_gw = str(spec.peer_gateway)
        peer_index = peer["index"] if peer is not None else None
        if gateway is None or gateway[0] != want_gw or gateway[1] != peer_index:
            actions.append({"action": "gateway", "ns": "peer", "name": spec.peer, "gateway": spec.peer_gateway,
                            "old": gateway[0] if gateway else None, "old_oif": gateway[1] if gateway else None})

    before = pair_view(h, state)
    # the prediction: what is managed takes the spec's value, the rest stays as it is
    after = {"present": True,
             "host": {"name": spec.name, "mtu": spec.mtu or (host["mtu"] if host else None),
                      "mac": spec.mac or (host["mac"] if host else None), "up": True,
                      "addresses": [str(a) for a in (host_addrs if spec.addresses is None else spec.addresses)],
                      "master": spec.master if spec.master is not None else before.get("host", {}).get("master")},
             "peer": {"name": spec.peer, "mtu": spec.mtu or (peer["mtu"] if peer else None),
                      "mac": spec.peer_mac or (peer["mac"] if peer else None), "up": True,
                      "addresses": [str(a) for a in (peer_addrs if spec.peer_addresses is None
                                                     else spec.peer_addresses)],
                      "gateway": str(spec.peer_gateway) if spec.peer_gateway else (gateway[0] if gateway else None)}}
    return {"actions": actions, "before": before, "after": after, "state": state}


def _create(spec, h):
    kwargs = {"ifname": spec.name, "kind": "veth"}
    peer = {"ifname": spec.peer}
    for target, mtu, mac in ((kwargs, spec.mtu, spec.mac), (peer, spec.mtu, spec.peer_mac)):
        if mtu is not None:
            target["mtu"] = mtu
        if mac is not None:
            target["address"] = mac
    fd = None
    if h.peer is not h.host:
        fd = os.open(spec.peer_netns or "/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        peer["net_ns_fd"] = fd
    kwargs["peer"] = peer
    try:
        h.host.link("add", **kwargs)
    finally:
        if fd is not None:
            os.close(fd)


def _index(ipr, name, field="name"):
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise ValidationError(field, "device %s disappeared while being configured" % name)
    return found[0]


def _step(spec, h, action):
    """(do, undo) for one action."""
    kind = action["action"]
    ipr = h.peer if action.get("ns") == "peer" else h.host
    field = "peer" if action.get("ns") == "peer" else "name"
    name = action.get("name")
    if kind == "create":
        return (lambda: _create(spec, h)), (lambda: h.host.link("del", index=_index(h.host, spec.name)))
    if kind == "delete":
        return (lambda: h.host.link("del", index=_index(h.host, name))), None
    if kind == "set":
        attr = action["attr"]

        def setter(value):
            return lambda: ipr.link("set", index=_index(ipr, name, field), **{attr: value})
        return setter(action["value"]), setter(action["old"])
    if kind in ("addr_add", "addr_del"):
        addr = action["address"]

        def change(cmd):
            return lambda: ipr.addr(cmd, index=_index(ipr, name, field), address=str(addr.ip),
                                    prefixlen=addr.network.prefixlen)
        return (change("add"), change("del")) if kind == "addr_add" else (change("del"), change("add"))
    if kind == "gateway":
        family = socket.AF_INET if action["gateway"].version == 4 else socket.AF_INET6
        dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"

        def route(gw, oif=None):
            if gw is None:
                return lambda: ipr.route("del", dst=dst, family=family, table=netlink.RT_TABLE_MAIN)
            return lambda: ipr.route("replace", dst=dst, family=family, gateway=str(gw),
                                     oif=oif or _index(ipr, name, field), table=netlink.RT_TABLE_MAIN)
        return route(action["gateway"]), route(action["old"], action["old_oif"])
    raise ValueError("unknown action %r" % kind)


def apply_veth(spec, h, plan):
    txn = Transaction()
    steps = []
    for action in plan["actions"]:
        do, undo = _step(spec, h, action)
        description = describe_action(action)
        steps.append(lambda t, d=description, do=do, undo=undo: t.step(d, do, undo))
    return txn.run("veth", steps)


def describe_action(action):
    kind = action["action"]
    if kind == "create":
        return "create veth %s with peer %s" % (action["name"], action["peer"])
    if kind == "delete":
        return "delete veth %s (and its peer)" % action["name"]
    if kind == "set":
        return "set %s %s %s -> %s" % (action["name"], action["attr"], action["old"], action["value"])
    if kind == "addr_add":
        return "add address %s to %s" % (action["address"], action["name"])
    if kind == "addr_del":
        return "remove address %s from %s" % (action["address"], action["name"])
    return "default route via %s on %s (was %s)" % (action["gateway"], action["name"], action["old"])


def converge_veth(spec, check_mode=False, planned=None):
    """Plan, and unless ``check_mode``, apply.

    Returns the plan: ``changes`` (what was or would be done), ``before``, ``after`` (read back
    from the kernel after a real run, predicted in check mode) and ``result`` (both ends with
    their ifindex, None when the pair does not exist).
    """
    if spec.netns_gone:
        gone = {"name": spec.name, "present": False}
        return {"actions": [], "changes": [], "before": gone, "after": gone, "result": None}
    if planned is not None:
        spec.planned = planned
    pending = spec.state == "present" and spec._pending()  # pylint: disable=protected-access
    if pending and not check_mode:
        raise ValidationError("peer_netns" if spec.planned.netns(spec.peer_netns) else "netns",
                              "the namespace does not exist yet")
    h = _Handles(spec, pending)
    try:
        plan = plan_veth(spec, h, fresh_state(spec, h) if pending else None)
        plan["changes"] = [describe_action(a) for a in plan["actions"]]
        state = plan.pop("state")
        if plan["actions"] and not check_mode:
            apply_veth(spec, h, plan)
            state = read_veth(spec, h)
            plan["after"] = pair_view(h, state)
        plan["result"] = None
        if spec.state == "present" and state["host"] is not None:
            plan["result"] = pair_view(h, state)
            plan["result"]["host"]["index"] = state["host"]["index"]
            plan["result"]["peer"]["index"] = state["peer"]["index"]
            del plan["result"]["present"]
        return plan
    finally:
        h.close()


def converge(spec, check_mode=False, planned=None):
    """The part's result (contract.py): ``interface`` is both ends with their ifindex, or None."""
    plan = converge_veth(spec, check_mode, planned)
    return {"changed": bool(plan["actions"]), "changes": plan["changes"], "interface": plan["result"],
            "created": any(a["action"] == "create" for a in plan["actions"]),
            "diff": {"before": plan["before"], "after": plan["after"]}}
