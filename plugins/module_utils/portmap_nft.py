# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables backend: one native table per network, DNAT through maps.

The packet path does one map lookup per protocol and family, whatever the number of
mappings. Each element carries its container id as a comment. A change re-renders the
network's whole table and replaces it in one ``nft -f`` transaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import shutil
import subprocess

from .errors import ApplyError
from .portmap import PROTOCOLS, NetworkState

TABLE_PREFIX = "hostnet-pm-"
_COMMENT_RE = re.compile(r"^hostnet\.isolation port_mapper network=(\S+) hairpin=([01]) localhost=([01])$")
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
_IPKW = {4: "ip", 6: "ip6"}


def table_name(spec):
    """The table of a network: ``chain`` when given (as in mesos-cni-port-mapper), else hostnet-pm-<network>."""
    return spec.chain if spec.chain_given else TABLE_PREFIX + spec.network


def _map_name(family, proto, specific):
    return "%s%d%s" % (proto, family, "a" if specific else "")


class NftablesBackend:
    name = "nftables"
    engine = "nft -f"

    def __init__(self, nft=None):
        self.nft = nft or shutil.which("nft")
        if not self.nft:
            raise ApplyError("backend", "nftables backend: no nft command found (install the nftables package)")
        self._tables = self._networks = None  # read once per run: choosing the backend already needs them

    def _run(self, args, stdin=None):
        proc = subprocess.run([self.nft] + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    # -- reading ---------------------------------------------------------------------------------

    def tables(self):
        """(family, name) of every nftables table on the host."""
        if self._tables is None:
            code, out, err = self._run(["-j", "list", "tables"])
            if code != 0:
                raise ApplyError("backend", "nft list tables failed: %s" % err.strip())
            self._tables = [(o["table"]["family"], o["table"]["name"])
                            for o in json.loads(out or '{"nftables": []}')["nftables"] if "table" in o]
        return self._tables

    def read(self):
        """{table name: (network, NetworkState)} for every port_mapper table on the host."""
        if self._networks is None:
            self._networks = {}
            for family, name in self.tables():
                if family == "inet":
                    state = self._read_table(name)
                    if state is not None:
                        self._networks[name] = state
        return self._networks

    def _read_table(self, name):
        code, out, err = self._run(["-j", "list", "table", "inet", name])
        if code != 0:
            raise ApplyError("backend", "nft list table inet %s failed: %s" % (name, err.strip()))
        objects = json.loads(out)["nftables"]
        # The marker is an element comment: nft 1.0.x's JSON shows no table comments.
        marker = [o["set"] for o in objects if "set" in o and o["set"]["name"] == "hostnet"]
        elems = marker[0].get("elem", []) if marker else []
        comment = elems[0]["elem"].get("comment", "") if elems and isinstance(elems[0], dict) else ""
        match = _COMMENT_RE.match(comment)
        if not match:
            return None  # not ours
        state = NetworkState(exists=True, hairpin=match.group(2) == "1", localhost=match.group(3) == "1")
        for obj in objects:
            if "set" in obj and obj["set"]["name"] == "excluded":
                state.exclude_devices = sorted(_plain(e) for e in obj["set"].get("elem", []))
            elif "map" in obj:
                _read_map(obj["map"], state.entries)
        return match.group(1), state

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
        for (family, proto, host_ip, port), (cid, cip, cport) in sorted(state.entries.items()):
            key = ("%s . %d" % (host_ip, port)) if host_ip else str(port)
            maps.setdefault(_map_name(family, proto, bool(host_ip)), []).append(
                '%s comment "container_id: %s" : %s . %d' % (key, cid, cip, cport))
        ips = dict((f, sorted(set(v[1] for k, v in state.entries.items() if k[0] == f))) for f in (4, 6))
        body = ['  set hostnet { type inet_service; elements = { 1 comment "hostnet.isolation port_mapper '
                'network=%s hairpin=%d localhost=%d" }; }' % (spec.network, state.hairpin, state.localhost)]
        body.append("  set excluded { type ifname;%s }" % _elements(['"%s"' % d for d in state.exclude_devices]))
        rules = []
        for family in (4, 6):
            for proto in PROTOCOLS:
                for specific in (True, False):
                    name = _map_name(family, proto, specific)
                    if name not in maps:
                        continue
                    keytype = ("%s . inet_service" % _ADDR_TYPE[family]) if specific else "inet_service"
                    body.append("  map %s { type %s : %s . inet_service;%s }"
                                % (name, keytype, _ADDR_TYPE[family], _elements(maps[name])))
                    match = ("%s daddr . %s dport" % (_IPKW[family], proto)) if specific else "%s dport" % proto
                    rules.append("    meta nfproto %s meta l4proto %s dnat %s to %s map @%s"
                                 % (_NFPROTO[family], proto, _IPKW[family], match, name))
        post = []
        if state.hairpin:
            for family in (4, 6):
                if ips[family]:
                    body.append("  set hairpin%d { type %s . %s;%s }" % (
                        family, _ADDR_TYPE[family], _ADDR_TYPE[family],
                        _elements(["%s . %s" % (ip, ip) for ip in ips[family]])))
                    post.append("    %s saddr . %s daddr @hairpin%d masquerade"
                                % (_IPKW[family], _IPKW[family], family))
        if state.localhost and ips[4]:
            body.append("  set containers4 { type ipv4_addr;%s }" % _elements(ips[4]))
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

    def apply(self, spec, before, after, stale=()):
        """Replace the table in one transaction: the whole change lands or nothing does."""
        del before  # the table is rendered whole; nothing depends on the old one
        code, _out, err = self._run(["-f", "-"], stdin=self.render(spec, after, stale))
        if code != 0:
            raise ApplyError("mappings", "nft rejected the ruleset, nothing was changed: %s" % err.strip()[:2000])


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
