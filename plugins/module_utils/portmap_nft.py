# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables backend: one native table per network, DNAT through maps.

The packet path does one map lookup per protocol and family, whatever the number of
mappings. Each element carries its container id as a comment. A change re-renders the
network's whole table and replaces it in one ``nft -f`` transaction.

Every table has the same layout (all maps and sets, empty or not), so a new container's
mappings can also be added as elements alone (``add_elements``): the CNI plugin's fast path,
which never reads the maps and so costs the same with 10 or 10,000 mappings on the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from .errors import ApplyError, ValidationError
from .nftrun import Nft, list_tables
from .portmap import MARKER_OPTIONS_RE, PROTOCOLS, NetworkState, hairpin_source, marker_options, \
    parse_marker_options

TABLE_PREFIX = "hostnet-pm-"
_COMMENT_RE = re.compile(r"^hostnet\.isolation port_mapper network=(\S+) %s$" % MARKER_OPTIONS_RE)
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
_IPKW = {4: "ip", 6: "ip6"}


def table_name(spec):
    """The table of a network: ``chain`` when given (as in mesos-cni-port-mapper), else hostnet-pm-<network>."""
    return spec.chain if spec.chain_given else TABLE_PREFIX + spec.network


MAPS = [(family, proto, specific) for family in (4, 6) for proto in PROTOCOLS for specific in (True, False)]
_LAYOUT = set(["hostnet", "excluded", "hairpinnet4", "hairpinnet6", "containers4"] + [
    "%s%d%s" % (proto, family, "a" if specific else "") for family, proto, specific in MAPS])
_ANY = {4: "0.0.0.0", 6: "::"}


def _map_name(family, proto, specific):
    return "%s%d%s" % (proto, family, "a" if specific else "")


class NftablesBackend:
    name = "nftables"

    def __init__(self, nft=None):
        self.nft = Nft(nft)
        self.engine = self.nft.engine
        self._tables = self._markers = self._networks = None  # read once per run
        self._current_layout = {}  # table name -> has every map and set of this version's layout

    def _list(self, what):
        """The JSON objects of one ``list`` command, or None when the object does not exist."""
        code, out, _err = self.nft.run("list " + what, json_output=True)
        return json.loads(out)["nftables"] if code == 0 and out.strip() else None

    # -- reading ---------------------------------------------------------------------------------

    def tables(self):
        """(family, name) of every nftables table on the host."""
        if self._tables is None:
            self._tables = list_tables()
        return self._tables

    def markers(self):
        """{table name: (network, hairpin, localhost, hairpin_prefix)} of the port_mapper tables, from their
        marker sets only."""
        if self._markers is None:
            self._markers = {}
            for family, name in self.tables():
                objects = self._list("set inet %s hostnet" % name) if family == "inet" else None
                # The marker is an element comment: nft 1.0.x's JSON shows no table comments.
                elems = [o["set"].get("elem", []) for o in objects or [] if "set" in o]
                comment = elems[0][0]["elem"].get("comment", "") if elems and elems[0] and isinstance(
                    elems[0][0], dict) else ""
                match = _COMMENT_RE.match(comment)
                if match:
                    self._markers[name] = (match.group(1),) + parse_marker_options(match, 2)
        return self._markers

    def read(self):
        """{table name: (network, NetworkState)} for every port_mapper table on the host."""
        if self._networks is None:
            self._networks = dict((name, self._read_table(name, marker)) for name, marker in self.markers().items())
        return self._networks

    def _read_table(self, name, marker):
        objects = self._list("table inet %s" % name)
        if objects is None:
            raise ApplyError("backend", "nft list table inet %s failed" % name)
        network, hairpin, localhost, prefix = marker
        state = NetworkState(exists=True, hairpin=hairpin, localhost=localhost, hairpin_prefix=prefix)
        names = set(o[kind]["name"] for o in objects for kind in ("set", "map") if kind in o)
        self._current_layout[name] = _LAYOUT <= names
        for obj in objects:
            if "set" in obj and obj["set"]["name"] == "excluded":
                state.exclude_devices = sorted(_plain(e) for e in obj["set"].get("elem", []))
            elif "map" in obj:
                _read_map(obj["map"], state.entries)
        return network, state

    def check_owner(self, spec, networks):
        """Refuse to replace a table that exists and is not this network's (render deletes it whole)."""
        table = table_name(spec)
        field = "chain" if spec.chain_given else "network"
        if table in networks and networks[table][0] != spec.network:
            raise ValidationError(field, "the nftables table inet %s belongs to port_mapper network %s; choose "
                                         "another chain" % (table, networks[table][0]))
        if ("inet", table) in self.tables() and table not in networks:
            raise ValidationError(field, "the nftables table inet %s exists and is not a port_mapper table (it has "
                                         "no hostnet marker); it is left alone: choose another chain" % table)

    # -- writing ---------------------------------------------------------------------------------

    def render(self, spec, state, stale=()):
        """nft -f input that replaces the network's table with ``state`` (or removes it).

        ``stale`` names tables this network had under another name: they go in the same transaction.
        """
        table = table_name(spec)
        lines = []
        for name in list(stale) + [table]:
            lines += ["table inet %s" % name, "delete table inet %s" % name]
        if not state.exists:
            return "\n".join(lines) + "\n"
        maps = {}
        for (family, proto, host_ip, port), value in sorted(state.entries.items()):
            maps.setdefault(_map_name(family, proto, bool(host_ip)), []).append(_map_element(host_ip, port, value))
        ips = dict((f, sorted(set(v[1] for k, v in state.entries.items() if k[0] == f))) for f in (4, 6))
        body = ['  set hostnet { type inet_service; elements = { 1 comment "hostnet.isolation port_mapper '
                'network=%s %s" }; }' % (spec.network, marker_options(state))]
        body.append("  set excluded { type ifname;%s }" % _elements(['"%s"' % d for d in state.exclude_devices]))
        rules = []
        for family, proto, specific in MAPS:
            name = _map_name(family, proto, specific)
            keytype = ("%s . inet_service" % _ADDR_TYPE[family]) if specific else "inet_service"
            body.append("  map %s { type %s : %s . inet_service;%s }"
                        % (name, keytype, _ADDR_TYPE[family], _elements(maps.get(name, []))))
            match = ("%s daddr . %s dport" % (_IPKW[family], proto)) if specific else "%s dport" % proto
            rules.append("    meta nfproto %s meta l4proto %s dnat %s to %s map @%s"
                         % (_NFPROTO[family], proto, _IPKW[family], match, name))
        # the container addresses are kept whatever the options, so adding a container is one step
        for family in (4, 6):
            addr = _ADDR_TYPE[family]
            body.append("  set hairpinnet%d { type %s . %s; flags interval;%s }"
                        % (family, addr, addr, _elements(_hairpin_elements(state.hairpin_sources(family)))))
        body.append("  set containers4 { type ipv4_addr;%s }" % _elements(ips[4]))
        post = []
        if state.hairpin:
            # DNATed traffic from the container's own network (itself, or its bridge's subnet in CNI mode)
            post += ["    ct status dnat %s saddr . %s daddr @hairpinnet%d masquerade" % (_IPKW[f], _IPKW[f], f)
                     for f in (4, 6)]
        if state.localhost:
            post.append("    ip saddr 127.0.0.0/8 ip daddr @containers4 ct status dnat masquerade")
        loopback = [] if state.localhost else ["    ip daddr 127.0.0.0/8 return"]
        body += [
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            "    iifname @excluded return",
            "    fib daddr type local jump mappings",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
        ] + loopback + [
            "    ip6 daddr ::1 return",  # IPv6 cannot route ::1 off the host, so never DNAT it
            "    fib daddr type local jump mappings",
            "  }",
            "  chain mappings {",
        ] + rules + ["  }", "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"] \
            + post + ["  }"]
        lines.append("table inet %s {" % table)
        lines += body
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render_changes(self, spec, before, after):
        """nft -f input that turns ``before`` into ``after`` element by element, or None when the table
        must be rendered whole (it is new, renamed, of an older layout, or its options change)."""
        table = table_name(spec)
        if not (before.exists and after.exists and self._current_layout.get(table)
                and before.options() == after.options()):
            return None
        lines = []
        for key, value in sorted(before.entries.items()):
            if after.entries.get(key) != value:
                family, proto, host_ip, port = key
                key_text = ("%s . %d" % (host_ip, port)) if host_ip else str(port)
                lines.append("delete element inet %s %s { %s }"
                             % (table, _map_name(family, proto, bool(host_ip)), key_text))
        for key, value in sorted(after.entries.items()):
            if before.entries.get(key) != value:
                family, proto, host_ip, port = key
                lines.append("add element inet %s %s { %s }"
                             % (table, _map_name(family, proto, bool(host_ip)), _map_element(host_ip, port, value)))
        prefix = after.hairpin_prefix  # the same as before's: the options did not change
        for family in (4, 6):
            old, new = [set(v[1] for k, v in state.entries.items() if k[0] == family) for state in (before, after)]
            for verb, ips in (("delete", old - new), ("add", new - old)):
                if ips:
                    sources = dict((ip, hairpin_source(ip, prefix[0 if family == 4 else 1])) for ip in ips)
                    lines.append("%s element inet %s hairpinnet%d { %s }" % (
                        verb, table, family, ", ".join(_hairpin_elements(sources))))
                    if family == 4:
                        lines.append("%s element inet %s containers4 { %s }" % (verb, table, ", ".join(sorted(ips))))
        return "\n".join(lines) + "\n"

    def apply(self, spec, before, after, stale=()):
        """Change the table in one transaction: the whole change lands or nothing does.

        Only the elements that change are sent when the table's layout and options stay; otherwise
        the table is replaced whole.
        """
        text = None if stale else self.render_changes(spec, before, after)
        code, _out, err = self.nft.run(text if text is not None else self.render(spec, after, stale))
        if code != 0:
            raise ApplyError("mappings", "nft rejected the ruleset, nothing was changed: %s" % err.strip()[:2000])

    def add_elements(self, spec, entries):
        """Add a container's new wildcard entries as map elements alone, in one transaction; True if they landed.

        Nothing is read but the marker and option sets, so the cost does not grow with the mappings already
        on the host. False (nothing changed) whenever the fast path cannot be sure, and the caller then
        converges the usual way, which also explains any conflict: the table is missing, renamed or
        differently configured; an address-specific mapping could overlap; the key is taken in this
        network (``create`` refuses it in the kernel) or in another one (checked in the same transaction
        by creating and deleting the key there: an existing key makes ``create`` fail).
        """
        own = table_name(spec)
        markers = self.markers()
        if markers.get(own) != (spec.network, spec.hairpin, spec.localhost, spec.hairpin_prefix) or any(
                marker[0] == spec.network for name, marker in markers.items() if name != own):
            return False
        excluded = self._list("set inet %s excluded" % own) or []
        if sorted(_plain(e) for o in excluded if "set" in o for e in o["set"].get("elem", [])) != \
                spec.exclude_devices or not excluded:
            return False
        used = sorted(set((family, proto) for family, proto, host_ip, _port in entries))
        for name in markers:  # an address-specific entry for one of these ports would overlap
            for family, proto in used:
                objects = self._list("map inet %s %s" % (name, _map_name(family, proto, True)))
                if objects is None or any(o["map"].get("elem") for o in objects if "map" in o):
                    return False
        lines = []
        for name in sorted(markers):
            if name != own:
                for family, proto, _host_ip, port in sorted(entries):
                    target = _map_name(family, proto, False)
                    lines += ["create element inet %s %s { %d : %s . 1 }" % (name, target, port, _ANY[family]),
                              "delete element inet %s %s { %d }" % (name, target, port)]
        for (family, proto, host_ip, port), value in sorted(entries.items()):
            lines.append("create element inet %s %s { %s }" % (own, _map_name(family, proto, False),
                                                               _map_element(host_ip, port, value)))
        added = NetworkState(entries=entries, hairpin_prefix=spec.hairpin_prefix)
        for family in (4, 6):
            ips = sorted(set(v[1] for k, v in entries.items() if k[0] == family))
            if ips:
                lines.append("add element inet %s hairpinnet%d { %s }"
                             % (own, family, ", ".join(_hairpin_elements(added.hairpin_sources(family)))))
                if family == 4:
                    lines.append("add element inet %s containers4 { %s }" % (own, ", ".join(ips)))
        code, _out, _err = self.nft.run("\n".join(lines) + "\n")
        return code == 0


def _map_element(host_ip, port, value):
    cid, cip, cport = value
    key = ("%s . %d" % (host_ip, port)) if host_ip else str(port)
    return '%s comment "container_id: %s" : %s . %d' % (key, cid, cip, cport)


def _hairpin_elements(sources):
    """``source network . container ip`` elements from {container ip: source network}."""
    return ["%s . %s" % (sources[ip], ip) for ip in sorted(sources)]


def _elements(items):
    return (" elements = { %s };" % ", ".join(items)) if items else ""


def _plain(value):
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"]["val"]
    return value


def _read_map(obj, entries):
    match = re.match(r"^(tcp|udp|sctp)([46])(a?)$", obj["name"])
    if not match:
        return
    proto, family = match.group(1), int(match.group(2))
    for key, value in obj.get("elem", []):
        comment = key["elem"].get("comment", "") if isinstance(key, dict) and "elem" in key else ""
        key = _plain(key)
        if isinstance(key, dict):
            host_ip, port = key["concat"]
        else:
            host_ip, port = "", key
        cip, cport = value["concat"]
        cid = comment[len("container_id: "):] if comment.startswith("container_id: ") else ""
        entries[(family, proto, host_ip, int(port))] = (cid, cip, int(cport))
