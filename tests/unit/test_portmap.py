# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port-mapper model and planning, and the iptables renderer/parser round trip."""

import shlex

import pytest
from hypothesis import given, strategies as st

from module_utils.errors import ValidationError
from module_utils.portmap import NetworkState, PortMapperSpec, compact, desired_state, diff_entries, parse_ports, \
    stale_udp_keys
from module_utils.portmap_ipt import IptablesBackend, _parse_rule
from module_utils.portmap_nft import NftablesBackend


def m(cid, ip, host_port, container_port, **extra):
    return dict(container_id=cid, container_ip=ip, host_port=host_port, container_port=container_port, **extra)


@pytest.mark.parametrize("value,expected", [(80, (80, 80)), ("8080", (8080, 8080)), ("8080-8089", (8080, 8089)),
                                            (" 1 - 2 ", (1, 2)), (65535, (65535, 65535))])
def test_parse_ports(value, expected):
    assert parse_ports("p", value) == expected


@pytest.mark.parametrize("value", [0, 65536, "-1", "8080-", "a", True, None, "9-8", 8.5])
def test_parse_ports_rejects(value):
    with pytest.raises(ValidationError) as err:
        parse_ports("mappings[0].host_port", value)
    assert err.value.field == "mappings[0].host_port"


def test_ranges_expand_with_offset_and_compact_back():
    spec = PortMapperSpec("n", mappings=[m("a", "10.0.0.2", "8080-8082", "80-82", protocol="udp")])
    assert spec.entries == {(4, "udp", "", 8080): ("a", "10.0.0.2", 80), (4, "udp", "", 8081): ("a", "10.0.0.2", 81),
                            (4, "udp", "", 8082): ("a", "10.0.0.2", 82)}
    assert compact(spec.entries) == [{"container_id": "a", "container_ip": "10.0.0.2", "protocol": "udp",
                                      "host_port": "8080-8082", "container_port": "80-82"}]


@given(st.lists(st.tuples(st.integers(1, 60000), st.integers(0, 20), st.integers(1, 3000), st.sampled_from("ab")),
                max_size=12))
def test_compact_then_expand_is_identity(items):
    entries = {}
    for host, length, cport, cid in items:
        for i in range(length + 1):
            if host + i <= 65535 and cport + i <= 65535:
                entries[(4, "tcp", "", host + i)] = (cid, "10.0.0.%d" % (ord(cid) - 95), cport + i)
    again = PortMapperSpec("n", mappings=compact(entries)).entries if entries else {}
    assert again == entries


def test_conflicts_name_both_containers():
    actual = NetworkState(exists=True, entries={(4, "tcp", "", 80): ("web", "10.0.0.2", 80)})
    spec = PortMapperSpec("n", mappings=[m("api", "10.0.0.3", 80, 8080)])
    with pytest.raises(ValidationError, match="already mapped to container web; container api"):
        desired_state(spec, actual, {})
    # exclusive: the listed set replaces the network's, so api takes the port legitimately
    spec = PortMapperSpec("n", mappings=[m("api", "10.0.0.3", 80, 8080)], exclusive=True)
    assert desired_state(spec, actual, {}).entries == {(4, "tcp", "", 80): ("api", "10.0.0.3", 8080)}
    # another network holding the port is a conflict whatever exclusive says
    with pytest.raises(ValidationError, match="mapped to container web in network other"):
        desired_state(spec, NetworkState(), {"other": actual})


def test_absent_by_container_and_whole_network_and_udp_staleness():
    actual = NetworkState(exists=True, entries={(4, "tcp", "", 80): ("web", "10.0.0.2", 80),
                                                (4, "udp", "", 53): ("dns", "10.0.0.3", 53)})
    after = desired_state(PortMapperSpec("n", state="absent", container_id="dns"), actual, {})
    assert list(after.entries) == [(4, "tcp", "", 80)] and after.exists
    assert stale_udp_keys(actual, after) == [(4, "udp", "", 53)]
    added, removed, unchanged = diff_entries(actual, after)
    assert (added, list(removed), unchanged) == ({}, [(4, "udp", "", 53)], 1)
    assert desired_state(PortMapperSpec("n", state="absent"), actual, {}).exists is False


def test_iptables_render_parses_back_to_the_same_state():
    spec = PortMapperSpec("web", exclude_devices=["eth1", "eth0"], localhost=True, mappings=[
        m("a", "10.0.0.2", "8080-8081", "80-81"), m("b", "10.0.0.3", 53, 53, protocol="udp", host_ip="192.0.2.1"),
        m("c", "fd00::2", 443, 8443, protocol="sctp")])
    state = NetworkState(exists=True, entries=spec.entries, exclude_devices=spec.exclude_devices, hairpin=True,
                         localhost=True)
    backend = IptablesBackend.__new__(IptablesBackend)
    back = NetworkState(exists=True)
    for family in (4, 6):
        text = backend.render(spec, state, family, jumps={})
        for line in text.splitlines():
            if line.startswith("-A HN-web "):
                _parse_rule(family, shlex.split(line), back)
        assert text.count("-I PREROUTING 1 -m addrtype --dst-type LOCAL") == 1
    assert back.entries == state.entries
    assert sorted(set(back.exclude_devices)) == ["eth0", "eth1"]


def test_nft_render_uses_one_map_lookup_per_family_and_protocol():
    spec = PortMapperSpec("web", mappings=[m("a", "10.0.0.%d" % (i % 200 + 2), 10000 + i, 80) for i in range(1000)])
    text = NftablesBackend("/bin/true").render(spec, NetworkState(exists=True, entries=spec.entries, hairpin=True))
    rules = [line.strip() for line in text.splitlines() if " dnat " in line and " map @" in line]
    # one rule per map, whatever the number of mappings; every table has all of them (the fast path relies on it)
    assert len(rules) == 12 and len(set(rules)) == 12
    assert "meta nfproto ipv4 meta l4proto tcp dnat ip to tcp dport map @tcp4" in rules
    assert "meta nfproto ipv6 meta l4proto udp dnat ip6 to ip6 daddr . udp dport map @udp6a" in rules
    assert text.count('comment "container_id: a"') == 1000
    assert text.count("map tcp4 {") == 1


def test_absent_with_an_empty_list_removes_nothing():
    actual = NetworkState(exists=True, entries={(4, "tcp", "", 80): ("web", "10.0.0.2", 80)})
    after = desired_state(PortMapperSpec("n", state="absent", mappings=[]), actual, {})
    assert after.exists and after.entries == actual.entries


def test_wildcard_and_address_specific_overlap_across_networks_either_way():
    specific = NetworkState(exists=True, entries={(4, "tcp", "192.0.2.1", 80): ("a", "10.0.0.2", 80)})
    wildcard = NetworkState(exists=True, entries={(4, "tcp", "", 80): ("a", "10.0.0.2", 80)})
    with pytest.raises(ValidationError, match="network other"):
        desired_state(PortMapperSpec("n", mappings=[m("b", "10.0.0.3", 80, 80)]), NetworkState(), {"other": specific})
    with pytest.raises(ValidationError, match="network other"):
        desired_state(PortMapperSpec("n", mappings=[m("b", "10.0.0.3", 80, 80, host_ip="192.0.2.1")]),
                      NetworkState(), {"other": wildcard})


@pytest.mark.parametrize("kwargs,field", [({"network": "web\n"}, "network"), ({"network": "w", "chain": "C\n"}, "chain"),
                                          ({"network": "w", "mappings": [m("c1\n", "10.0.0.2", 1, 1)]},
                                           "mappings[0].container_id")])
def test_trailing_newlines_are_not_names(kwargs, field):
    with pytest.raises(ValidationError) as err:
        PortMapperSpec(**kwargs)
    assert err.value.field == field


# -- the contract: spec() refuses on the controller what the host's backend would refuse later ----------------

def _spec(**params):
    from module_utils import portmap
    return portmap.spec(dict({"network": "web", "mappings": [m("web-1", "10.246.0.3", 31000, 80)]}, **params),
                        host=False)


@pytest.mark.parametrize("params,field", [
    # nft refuses a table name that starts with a digit or is one of its keywords ("unexpected map"), and a given
    # chain names the table: these passed every check and failed in `nft -f` on the host
    ({"chain": "1portmap"}, "chain"), ({"chain": "map"}, "chain"), ({"chain": "counter", "backend": "auto"}, "chain"),
    # with the iptables backend asked for, the default chain HN-<network> must fit iptables' limit
    ({"network": "n" * 21, "backend": "iptables"}, "network"),
    # a wildcard host address matches no packet: DNAT to "0.0.0.0" was a silent no-op
    ({"mappings": [m("web-1", "10.246.0.3", 31000, 80, host_ip="0.0.0.0")]}, "mappings[0].host_ip"),
    ({"mappings": [m("web-1", "fd00::3", 31000, 80, host_ip="ff02::1")]}, "mappings[0].host_ip"),
    # ipaddress takes an integer as an address: 167772161 was mapped to 10.0.0.1
    ({"mappings": [m("web-1", 167772161, 31000, 80)]}, "mappings[0].container_ip"),
    # non-ASCII digits: int() reads them, nothing else in the chain does
    ({"mappings": [m("web-1", "10.246.0.3", "\u0663\u0661\u0660\u0660\u0660", 80)]}, "mappings[0].host_port"),
    ({"hairpin": "maybe"}, "hairpin"), ({"exclusive": "x"}, "exclusive"), ({"localhost": [True]}, "localhost"),
    ({"exclude_devices": {"eth0": 1}}, "exclude_devices"),
    ({"mappings": ["web-1:10.246.0.3:31000:80"]}, "mappings[0]"),
    ({"container_id": "web-1", "state": "absent"}, "container_id"),  # with mappings: one or the other
    ({"exclusive": True, "state": "absent", "mappings": None}, "exclusive"),
])
def test_spec_refuses_what_the_host_would_refuse_naming_the_field(params, field):
    with pytest.raises(ValidationError) as err:
        _spec(**params)
    assert err.value.field == field


def test_every_bad_value_of_the_schema_is_refused_naming_its_field():
    from module_utils import portmap
    for name, option in portmap.OPTIONS.items():
        for bad in option["bad"]:
            with pytest.raises(ValidationError) as err:
                _spec(**{name: bad})
            assert err.value.field.split("[")[0] == name, (name, bad, err.value)
    for name, option in portmap.MAPPING_OPTIONS.items():
        for bad in option["bad"]:
            with pytest.raises(ValidationError) as err:
                _spec(mappings=[dict(m("web-1", "10.246.0.3", 31000, 80), **{name: bad})])
            assert err.value.field == "mappings[0].%s" % name, (name, bad, err.value)


def test_spec_takes_values_as_ansibles_argument_spec_converts_them():
    # the controller sees the policy's raw values; the module sees them converted by Ansible: the same outcome
    spec = _spec(hairpin="no", exclusive="yes", exclude_devices="docker0,eth1", chain="HN-web")
    assert (spec.hairpin, spec.exclusive, spec.exclude_devices) == (False, True, ["docker0", "eth1"])
    assert _spec(network=1234).network == "1234"
    # the same chain is fine for the iptables backend, which has no keywords
    assert _spec(chain="map", backend="iptables").chain == "map"
    # a word of another scanner state is a fine table name (the host's "inet filter" is refused on the host, as
    # another owner's table)
    assert _spec(chain="filter").chain == "filter"
    assert _spec(mappings=None, state="absent").mappings_given is False


def test_a_string_where_a_list_belongs_is_not_read_letter_by_letter():
    with pytest.raises(ValidationError) as err:
        PortMapperSpec("web", exclude_devices="eth0")
    assert err.value.field == "exclude_devices"


def test_changes_name_each_mapping_and_summarise_beyond_a_hundred():
    from module_utils import port_mapper
    spec = PortMapperSpec("web", mappings=[m("c%d" % i, "10.0.0.2", 10000 + i, 80) for i in range(150)])
    after = NetworkState(exists=True, entries=spec.entries, hairpin=True)
    backend = NftablesBackend("/bin/true")
    added, removed, _unchanged = diff_entries(NetworkState(), after)
    changes = port_mapper._sentences(spec, backend, "hostnet-pm-web", NetworkState(), after, [], added, removed, [],
                                     [])
    assert changes[0] == "create the nftables table inet hostnet-pm-web for network web"
    assert changes[1] == "add mapping tcp *:10000 -> 10.0.0.2:80  container_id=c0"
    assert changes[-1] == "add 50 more mappings (listed in added)" and len(changes) == 102
