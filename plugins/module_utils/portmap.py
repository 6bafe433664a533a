# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port mappings (DNAT from host ports to container ports): model, validation, planning.

A mapping is expanded into per-port entries keyed by what a packet shows on arrival:
``(family, protocol, host_ip or "", host_port) -> (container_id, container_ip, container_port)``.
Planning compares the desired entries with what the backend reads from the host; the backend
then renders the network's whole ruleset and applies it in one transaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import socket

from . import validate
from .errors import ValidationError
from .validate import NAME_RE, device_match, ifname, no_zone

PROTOCOLS = ("tcp", "udp", "sctp")
_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]*\Z")
CHAIN_MAX = 23  # iptables allows 28; "<chain>-POST" must fit too
CONTAINER_ID_MAX = 114  # an nftables comment holds 128 bytes, with "container_id: " in front
# Words nft's scanner reads as keywords where a table name stands (its initial state in src/scanner.l of nft 0.9.0
# to 1.1.x; the 153 of them nft 1.0.6 knows it refuses as table names, measured), quoted or not ("syntax error,
# unexpected map, expecting string"). A given chain names the nftables table, so such a chain passed every check
# and failed on the host. Words of other scanner states (filter, nat, ...) are fine.
NFT_KEYWORDS = frozenset("""
    8021ad 8021q accept ackseq add addr ah all and arp auto-merge avgpkt bridge burst bypass bytes cfi cgroup
    chain chains checksum classid code comment comp constant continue count counter counters cpi cpu create ct
    daddr day dccp define delete describe destroy device devices direction dnat doff dport drop dscp dst dup
    dynamic echo ecn element elements eol eq esp ether event exists expectation expiration expires export exthdr
    fanout fib flags flow flowlabel flowtable flowtables flush frag frag-off fully-random fwd gateway gc-interval
    ge geneve get goto gre gretap group gt handle hbh hdrlength helper helpers hlen hook hoplimit hour htype
    ibriport ibrname icmp icmpv6 icmpx id igmp iif iifgroup iifname iiftype import in inc include index inet
    insert interval ip ip6 ipsec jhash json jump kind l3proto label last last-entry le left length level limit
    limits list ll log lshift lsrr lt map maps mark masquerade max-delay maxseg memory meta meter meters mh
    microsecond millisecond minute missing mod mode monitor more-fragments mrt mss mtu name nanosecond ne netdev
    nexthdr nexthop nftrace nh noop nop not notrack num numgen obriport obrname offload offset oif oifgroup
    oifname oiftype operation option options or original osf out over packets param-problem pcp performance
    persistent pkttype plen policy port position prefix priority proto-dst proto-src protocol ptr ptype queue
    queue-threshold quota quotas ra random rate redefine redirect reject rename replace reply reqid reserved
    reserved2 reset return right rr rshift rt rt0 rt2 rtclassid rule rules ruleset sack sack-perm sack-permitted
    sack0 sack1 sack2 sack3 saddr sctp secmark secmarks second seed seg-left sequence set sets sid size skgid
    skuid snaplen snat socket spi spnum sport srh ssrr state status symhash synproxy synproxys table tables tag
    tcp th time timeout timestamp to tproxy trace transparent transport tsecr tsval ttl tunnel type typeof udp
    udplite undefine until update urgptr used value version vlan vm vmap vni vtag vxlan week wildcard window with
    wscale xml xor xt zone
""".split())


_IP_CACHE = {}
# hairpin masquerades DNATed traffic to a container from the container's /prefix: (IPv4, IPv6) prefix lengths.
# (32, 128) is a container reaching itself; a CNI bridge's subnet lets its neighbours in too; (0, 0) is everyone.
HAIRPIN_SELF = (32, 128)


def hairpin_source(ip, prefix):
    """The source network (text) for a container address and a prefix length: "10.88.0.0/16"."""
    family, bits = (socket.AF_INET6, 128) if ":" in ip else (socket.AF_INET, 32)
    if prefix == bits:
        return "%s/%d" % (ip, prefix)  # the container itself
    # socket, not ipaddress: ten times faster, and a whole render computes one per container
    address = int.from_bytes(socket.inet_pton(family, ip), "big") >> (bits - prefix) << (bits - prefix)
    return "%s/%d" % (socket.inet_ntop(family, address.to_bytes(bits // 8, "big")), prefix)


def marker_options(state):
    """The options as rulesets' markers spell them; the default hairpin prefix is left out (older markers)."""
    text = "hairpin=%d localhost=%d" % (state.hairpin, state.localhost)
    if tuple(state.hairpin_prefix) != HAIRPIN_SELF:
        text += " prefix=%d/%d" % tuple(state.hairpin_prefix)
    return text


MARKER_OPTIONS_RE = r"hairpin=([01]) localhost=([01])(?: prefix=(\d+)/(\d+))?"


def parse_marker_options(match, first):
    """(hairpin, localhost, hairpin_prefix) from a match of MARKER_OPTIONS_RE whose first group is ``first``."""
    groups = match.groups()[first - 1:first + 3]
    prefix = (int(groups[2]), int(groups[3])) if groups[2] is not None else HAIRPIN_SELF
    return groups[0] == "1", groups[1] == "1", prefix


def check_hairpin_prefix(field, value):
    """(IPv4 prefix length, IPv6 prefix length)."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not 0 <= value[0] <= 32 or not 0 <= value[1] <= 128):
        raise ValidationError(field, "%r is not a pair of prefix lengths (IPv4 0-32, IPv6 0-128)" % (value,))
    return tuple(value)


def _ip(field, value):
    """ipaddress.ip_address without a zone id, memoised: thousands of mappings share a few container addresses."""
    try:
        return _IP_CACHE[value]
    except (KeyError, TypeError):
        pass
    if not isinstance(value, str):  # ipaddress takes an integer (167772161 is 10.0.0.1): a YAML slip, not an address
        raise ValidationError(field, "%r is not an IPv4 or IPv6 address" % (value,))
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(field, "%r is not an IPv4 or IPv6 address" % (value,)) from None
    no_zone(field, parsed)
    if isinstance(value, str):
        _IP_CACHE[value] = parsed
    return parsed


def parse_ports(field, value):
    """(first, last) of a port or an inclusive "first-last" range; 1-65535."""
    if isinstance(value, bool):
        raise ValidationError(field, "%r is not a port or a port range" % (value,))
    if isinstance(value, int):
        first = last = value
    elif isinstance(value, str) and re.match(r"^\s*[0-9]+\s*(-\s*[0-9]+\s*)?\Z", value):
        parts = [int(p) for p in value.split("-")]
        first, last = parts[0], parts[-1]
    else:
        raise ValidationError(field, "%r is not a port or a port range like 8080-8089" % (value,))
    for port in (first, last):
        if not 1 <= port <= 65535:
            raise ValidationError(field, "%d is not a port (1-65535)" % port)
    if first > last:
        raise ValidationError(field, "%s is an empty range (%d > %d)" % (value, first, last))
    return first, last


def _fmt_ports(first, last):
    return str(first) if first == last else "%d-%d" % (first, last)


class Mapping:
    """One validated mapping as the user wrote it (ports may be ranges)."""

    __slots__ = ("container_id", "container_ip", "host_ports", "container_ports", "protocol", "host_ip")

    def __init__(self, field, item):
        if not isinstance(item, dict):
            raise ValidationError(field, "must be a mapping with container_id, container_ip, host_port, "
                                         "container_port")
        unknown = sorted(set(item) - {"container_id", "container_ip", "host_port", "container_port", "protocol",
                                      "host_ip"})
        if unknown:
            raise ValidationError("%s.%s" % (field, unknown[0]), "is not a mapping option")
        self.container_id = check_container_id("%s.container_id" % field, item.get("container_id"))
        self.container_ip = _ip("%s.container_ip" % field, item.get("container_ip"))
        if self.container_ip.is_multicast or self.container_ip.is_unspecified or self.container_ip.is_loopback:
            raise ValidationError("%s.container_ip" % field, "%s cannot be a DNAT target" % self.container_ip)
        for key in ("host_port", "container_port"):
            if item.get(key) is None:
                raise ValidationError("%s.%s" % (field, key), "is required")
        self.host_ports = parse_ports("%s.host_port" % field, item["host_port"])
        self.container_ports = parse_ports("%s.container_port" % field, item["container_port"])
        if self.host_ports[1] - self.host_ports[0] != self.container_ports[1] - self.container_ports[0]:
            raise ValidationError("%s.container_port" % field, "range %s has %d ports but host_port %s has %d" % (
                _fmt_ports(*self.container_ports), self.container_ports[1] - self.container_ports[0] + 1,
                _fmt_ports(*self.host_ports), self.host_ports[1] - self.host_ports[0] + 1))
        self.protocol = item.get("protocol") or "tcp"
        if self.protocol not in PROTOCOLS:
            raise ValidationError("%s.protocol" % field, "%r is not one of %s" % (self.protocol, ", ".join(PROTOCOLS)))
        self.host_ip = None
        if item.get("host_ip"):
            self.host_ip = _ip("%s.host_ip" % field, item["host_ip"])
            if self.host_ip.is_unspecified or self.host_ip.is_multicast:
                # the rules would match no packet: a silent no-op rather than "any address"
                raise ValidationError("%s.host_ip" % field, "%s is no local address a packet arrives at; leave "
                                                            "host_ip out to map every local address" % self.host_ip)
            if self.host_ip.version != self.container_ip.version:
                raise ValidationError("%s.host_ip" % field, "%s is IPv%d but container_ip %s is IPv%d" % (
                    self.host_ip, self.host_ip.version, self.container_ip, self.container_ip.version))

    def entries(self):
        """Per-port (key, value) pairs."""
        host_ip = str(self.host_ip) if self.host_ip else ""
        offset = self.container_ports[0] - self.host_ports[0]
        cip = str(self.container_ip)
        for port in range(self.host_ports[0], self.host_ports[1] + 1):
            yield ((self.container_ip.version, self.protocol, host_ip, port),
                   (self.container_id, cip, port + offset))


def check_container_id(field, value):
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "is required (a non-empty string)")
    if len(value) > CONTAINER_ID_MAX or not _CONTAINER_ID_RE.match(value):
        raise ValidationError(field, "%r is not a container id (up to %d of letters, digits and _.:@+/-)"
                              % (value, CONTAINER_ID_MAX))
    return value


def describe_key(key):
    family, proto, host_ip, port = key
    if host_ip:
        where = ("[%s]" % host_ip) if family == 6 else host_ip
        return "%s/%s:%d" % (proto, where, port)
    return "%s/%d (IPv%d)" % (proto, port, family)


def compact(entries):
    """Group per-port entries back into mapping dicts with ranges (for reports)."""
    out = []
    run = None
    for key in sorted(entries, key=lambda k: (k[0], k[1], k[2], entries[k][0], entries[k][1], k[3])):
        family, proto, host_ip, port = key
        cid, cip, cport = entries[key]
        if (run is not None and run["_k"] == (family, proto, host_ip, cid, cip)
                and port == run["_last"] + 1 and cport == run["_clast"] + 1):
            run["_last"], run["_clast"] = port, cport
            continue
        run = {"_k": (family, proto, host_ip, cid, cip), "_first": port, "_last": port, "_cfirst": cport,
               "_clast": cport}
        out.append(run)
    result = []
    for run in out:
        family, proto, host_ip, cid, cip = run["_k"]
        item = {"container_id": cid, "container_ip": cip, "protocol": proto,
                "host_port": _fmt_ports(run["_first"], run["_last"]),
                "container_port": _fmt_ports(run["_cfirst"], run["_clast"])}
        if host_ip:
            item["host_ip"] = host_ip
        result.append(item)
    return result


def mapping_line(item):
    host = item.get("host_ip") or "*"
    return "%s %s:%s -> %s:%s  container_id=%s" % (
        item["protocol"], host, item["host_port"], item["container_ip"], item["container_port"], item["container_id"])


class NetworkState:
    """What a backend holds for one network (or is asked to hold)."""

    def __init__(self, exists=False, entries=None, exclude_devices=(), hairpin=False, localhost=False,
                 hairpin_prefix=HAIRPIN_SELF):
        self.exists = exists
        self.entries = dict(entries or {})
        self.exclude_devices = sorted(exclude_devices)
        self.hairpin = hairpin
        self.localhost = localhost
        self.hairpin_prefix = tuple(hairpin_prefix)

    def options(self):
        return {"exclude_devices": self.exclude_devices, "hairpin": self.hairpin, "localhost": self.localhost,
                "hairpin_prefix": self.hairpin_prefix}

    def hairpin_sources(self, family):
        """{container ip: the source network whose DNATed traffic to it is masqueraded} of one family."""
        prefix = self.hairpin_prefix[0 if family == 4 else 1]
        return dict((ip, hairpin_source(ip, prefix)) for ip in set(v[1] for k, v in self.entries.items()
                                                                   if k[0] == family))

    def same_as(self, other):
        return (self.exists == other.exists and self.entries == other.entries
                and (not self.exists or self.options() == other.options()))


def _bad_mapping(**change):
    item = {"container_id": "web-1", "container_ip": "10.246.0.3", "host_port": 31000, "container_port": 80}
    item.update(change)
    return [item]


# The port_mapper module's options (contract.py). ``mappings`` is a list of dicts WITHOUT Ansible sub-options:
# Ansible's per-item validation costs ~45 us a mapping (bench/port_mapper.py), so the core checks each item
# (PortMapperSpec, naming ``mappings[i].<key>``); ``suboptions`` (not an argument_spec key) is what the
# documentation lists.
MAPPING_OPTIONS = {
    "container_id": {"type": "str", "required": True, "bad": ["web 1", "c1\n"]},
    "container_ip": {"type": "str", "required": True, "bad": ["10.246.0.300", "fe80::1%eth0", "10.246.0.3/24"]},
    "host_port": {"type": "str", "required": True, "bad": ["31000,31002", "70000", "31009-31000"]},
    "container_port": {"type": "str", "required": True, "bad": ["http", "0"]},
    "protocol": {"type": "str", "choices": list(PROTOCOLS), "default": "tcp", "bad": ["icmp"]},
    "host_ip": {"type": "str", "bad": ["0.0.0.0", "192.0.2.1:8080"]},
}
OPTIONS = {
    "network": {"type": "str", "required": True, "bad": ["web net", "n" * 49]},
    "chain": {"type": "str", "bad": ['HN-"web"', "1portmap", "map"]},
    "mappings": {"type": "list", "elements": "dict", "suboptions": MAPPING_OPTIONS,
                 "bad": [_bad_mapping(host_port="31000,31002"), _bad_mapping(container_ip="10.246.0.300"),
                         _bad_mapping(container_ip="fe80::1%eth0")]},
    "exclude_devices": {"type": "list", "elements": "str", "default": [], "bad": [["eth0:1"], ["docker+"]]},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present", "bad": ["removed"]},
    "container_id": {"type": "str", "bad": ["web 1"]},
    "exclusive": {"type": "bool", "default": False, "bad": ["maybe"]},
    "hairpin": {"type": "bool", "default": True, "bad": ["maybe"]},
    "localhost": {"type": "bool", "default": False, "bad": ["maybe"]},
    "backend": {"type": "str", "choices": ["auto", "nftables", "iptables"], "default": "auto", "bad": ["pf"]},
}


def spec(params, host=True, planned=None):  # pylint: disable=unused-argument
    """The validated PortMapperSpec of the module's parameters or a policy item (contract.py).

    Validation reads nothing from the host, so ``host`` and ``planned`` change nothing here: which backend
    a host uses (and so whether a default chain name is too long for iptables) is known only on the host,
    in ``converge``.
    """
    return PortMapperSpec(**validate.params(OPTIONS, params))


class PortMapperSpec:
    def __init__(self, network, mappings=None, chain=None, exclude_devices=None, state="present",
                 container_id=None, exclusive=False, hairpin=True, localhost=False, backend="auto",
                 hairpin_prefix=HAIRPIN_SELF, localhost_devices=None):
        if not isinstance(network, str) or not NAME_RE.match(network) or len(network) > 48:
            raise ValidationError("network", "%r is not a network name (letters, digits and _.- , up to 48)"
                                  % (network,))
        self.network = network
        if state not in ("present", "absent"):
            raise ValidationError("state", "%r is not one of present, absent" % (state,))
        self.state = state
        if backend not in ("auto", "nftables", "iptables"):
            raise ValidationError("backend", "%r is not one of auto, nftables, iptables" % (backend,))
        self.backend = backend
        given = chain
        if chain is not None:
            if not isinstance(chain, str) or not NAME_RE.match(chain) or len(chain) > CHAIN_MAX:
                raise ValidationError("chain", "%r is not a chain name (letters, digits and _.- , up to %d "
                                               "characters; no quotes, spaces or semicolons)" % (chain, CHAIN_MAX))
            if backend != "iptables" and (not chain[0].isalpha() or chain in NFT_KEYWORDS):
                # a given chain also names the nftables table, and nft takes neither as a table name
                raise ValidationError("chain", "%r cannot name an nftables table (%s); choose another chain name"
                                      % (chain, "it starts with a digit" if not chain[0].isalpha()
                                         else "it is an nft keyword"))
        else:
            chain = "HN-" + network
            if backend == "iptables" and len(chain) > CHAIN_MAX:  # with auto, the backend the host uses decides
                raise ValidationError("network", "the iptables chain %s is longer than %d characters; set a shorter "
                                                 "chain" % (chain, CHAIN_MAX))
        self.chain = chain
        self.chain_given = given is not None
        self.exclude_devices = sorted(set(device_match("exclude_devices[%d]" % i, d)
                                          for i, d in enumerate(_list("exclude_devices", exclude_devices))))
        self.hairpin = _bool("hairpin", hairpin)
        self.localhost = _bool("localhost", localhost)
        self.hairpin_prefix = check_hairpin_prefix("hairpin_prefix", hairpin_prefix)
        # the devices toward the containers, when the caller knows them (a CNI result lists them): route_localnet
        # is set there without a route lookup; None looks the routes up
        self.localhost_devices = None
        if localhost_devices is not None:
            self.localhost_devices = sorted(set(ifname("localhost_devices[%d]" % i, d)
                                                for i, d in enumerate(_list("localhost_devices", localhost_devices))))
        self.exclusive = _bool("exclusive", exclusive)
        self.container_id = None
        if container_id is not None:
            self.container_id = check_container_id("container_id", container_id)
            if mappings:
                raise ValidationError("container_id", "selects a container to remove; it cannot be combined "
                                                      "with mappings")
            if state != "absent":
                raise ValidationError("container_id", "only used with state=absent (to remove one container's "
                                                      "mappings)")
        if exclusive and state != "present":
            raise ValidationError("exclusive", "only used with state=present")
        self.mappings = []
        self.entries = {}
        # state=absent without mappings (None) removes the whole network; an empty list removes nothing
        self.mappings_given = mappings is not None
        if mappings is not None and not isinstance(mappings, list):
            raise ValidationError("mappings", "must be a list")
        for i, item in enumerate(mappings or []):
            field = "mappings[%d]" % i
            mapping = Mapping(field, item)
            self.mappings.append(mapping)
            for key, value in mapping.entries():
                owner = self.entries.get(key)
                if owner is not None:
                    raise ValidationError("%s.host_port" % field, "%s is already mapped to container %s by an "
                                          "earlier item" % (describe_key(key), owner[0]))
                self.entries[key] = value
        _check_wildcard_overlaps(self.entries, "mappings")


def _list(field, value):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):  # a string would be read letter by letter
        raise ValidationError(field, "%r is not a list" % (value,))
    return value


def _bool(field, value):
    if not isinstance(value, bool):  # bool("no") is True
        raise ValidationError(field, "%r is not a boolean (true or false)" % (value,))
    return value


def _check_wildcard_overlaps(entries, field, other=None, any_owner=False):
    """An address-specific mapping and an any-address one for the same port must be the same container.

    Across networks (``any_owner``) they always conflict: one would silently shadow the other.
    """
    other = entries if other is None else other
    for key, value in entries.items():
        family, proto, host_ip, port = key
        twin = (family, proto, "", port) if host_ip else None
        if twin and twin in other and (any_owner or other[twin][0] != value[0]):
            raise ValidationError(field, "%s (container %s) overlaps %s, mapped to container %s" % (
                describe_key(key), value[0], describe_key(twin), other[twin][0]))


def desired_state(spec, actual, others):
    """The NetworkState the host should have; raises on conflicts (naming both containers).

    ``others`` maps other network names to their NetworkState (the same host, same backend).
    """
    if spec.state == "absent":
        if spec.container_id is None and not spec.mappings_given:
            return NetworkState(exists=False)
        keep = dict(actual.entries)
        for key, value in actual.entries.items():
            if spec.container_id is not None and value[0] == spec.container_id:
                del keep[key]
            elif key in spec.entries and spec.entries[key][0] == value[0]:
                del keep[key]
        state = NetworkState(exists=actual.exists, entries=keep, exclude_devices=actual.exclude_devices,
                             hairpin=actual.hairpin, localhost=actual.localhost, hairpin_prefix=actual.hairpin_prefix)
        return state
    entries = {} if spec.exclusive else dict(actual.entries)
    for key, value in spec.entries.items():
        current = entries.get(key)
        if current is not None and current[0] != value[0]:
            raise ValidationError("mappings", "%s is already mapped to container %s; container %s cannot take it "
                                              "(remove it first, or use exclusive: true)"
                                  % (describe_key(key), current[0], value[0]))
        entries[key] = value
    _check_wildcard_overlaps(entries, "mappings")
    for name in sorted(others):
        for key, value in spec.entries.items():
            theirs = others[name].entries.get(key)
            if theirs is not None:
                raise ValidationError("mappings", "%s for container %s is already mapped to container %s in network "
                                                  "%s" % (describe_key(key), value[0], theirs[0], name))
        try:  # an address-specific mapping and an any-address one overlap, whichever network holds which
            _check_wildcard_overlaps(spec.entries, "mappings", others[name].entries, any_owner=True)
            _check_wildcard_overlaps(others[name].entries, "mappings", spec.entries, any_owner=True)
        except ValidationError as exc:
            raise ValidationError("mappings", "%s (network %s)" % (exc.reason, name)) from None
    return NetworkState(exists=True, entries=entries, exclude_devices=spec.exclude_devices, hairpin=spec.hairpin,
                        localhost=spec.localhost, hairpin_prefix=spec.hairpin_prefix)


def diff_entries(before, after):
    """(added, removed, unchanged_count) as per-port dicts of key -> value."""
    added = dict((k, v) for k, v in after.entries.items() if before.entries.get(k) != v)
    removed = dict((k, v) for k, v in before.entries.items() if after.entries.get(k) != v)
    unchanged = sum(1 for k, v in after.entries.items() if before.entries.get(k) == v)
    return added, removed, unchanged


def stale_udp_keys(before, after):
    """UDP host ports whose mapping changed or went: their conntrack entries must go too."""
    return sorted(k for k, v in before.entries.items() if k[1] == "udp" and after.entries.get(k) != v)
