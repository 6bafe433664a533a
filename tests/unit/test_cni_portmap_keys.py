# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CNI portmap's configuration keys (chained mode) and the hairpin source network they render."""

import ipaddress

import pytest
from hypothesis import given, strategies as st

from module_utils import cni
from module_utils.portmap import NetworkState, PortMapperSpec, hairpin_source, parse_marker_options
from module_utils.portmap_ipt import IptablesBackend, _JUMP_RE, chain_rules
from module_utils.portmap_nft import NftablesBackend, _COMMENT_RE

PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:01"}, {"name": "veth1", "mac": "02:00:00:00:00:02"},
                       {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/c1"}],
        "ips": [{"address": "10.31.0.5/24", "interface": 2}, {"address": "fd31::5/64", "interface": 2}]}


def chained(**keys):
    conf = {"cniVersion": "1.0.0", "name": "chainnet", "type": "hostnet-cni-port-mapper", "prevResult": PREV}
    conf.update(keys)
    return conf


def spec(prefix, hairpin=True):
    mappings = [{"container_id": "c1", "container_ip": "10.31.0.5", "host_port": 8080, "container_port": 80},
                {"container_id": "c1", "container_ip": "fd31::5", "host_port": 8080, "container_port": 80}]
    made = PortMapperSpec("chainnet", mappings=mappings, hairpin=hairpin, localhost=True, hairpin_prefix=prefix)
    return made, NetworkState(exists=True, entries=made.entries, hairpin=hairpin, localhost=True,
                              hairpin_prefix=prefix)


def test_snat_by_default_takes_the_subnet_and_the_host_side_interfaces():
    assert cni.portmap_options(chained()) == {"hairpin": True, "localhost": True, "localhost_devices": ["cni0", "veth1"],
                                              "hairpin_prefix": (24, 64)}
    assert cni.portmap_options(chained(snat=False, masqAll=True)) == {"hairpin": False, "localhost": False}
    assert cni.portmap_options(chained(masqAll=True))["hairpin_prefix"] == (0, 0)
    assert cni.portmap_options(chained(markMasqBit=13, conditionsV4=[], conditionsV6=[]))["hairpin"] is True


@pytest.mark.parametrize("keys,words", [
    ({"snat": "false"}, "snat: 'false' is not a boolean"),
    ({"markMasqBit": True}, "markMasqBit: True is not a mark bit"),
    ({"markMasqBit": -1}, "markMasqBit: -1 is not a mark bit"),
    ({"externalSetMarkChain": "KUBE-MARK-MASQ", "markMasqBit": 13}, "externalSetMarkChain: cannot be set with"),
    ({"externalSetMarkChain": "x\n-A"}, "externalSetMarkChain: 'x\\n-A' is not an iptables chain name"),
    ({"conditionsV4": ["-j", "ACCEPT"]}, "conditionsV4: raw iptables match arguments are refused"),
    ({"delegate": {"type": "bridge"}, "snat": True}, "snat: a portmap key"),
])
def test_a_key_that_cannot_be_honoured_is_refused_by_name(keys, words):
    with pytest.raises(cni.CniError) as err:
        cni.portmap_options(chained(**keys))
    assert err.value.code == cni.E_INVALID_CONFIG and words in err.value.msg


def test_a_host_interface_name_that_is_not_one_is_refused_by_its_field():
    prev = dict(PREV, interfaces=[{"name": "../../all"}])
    with pytest.raises(cni.CniError) as err:
        cni.portmap_options(chained(prevResult=prev))
    assert err.value.msg.startswith("prevResult.interfaces[0].name:")


def test_removing_refuses_no_key_and_looks_no_route_up():
    made = cni._spec(chained(conditionsV4=["-j", "ACCEPT"]), state="absent", container_id="c1")
    assert made.localhost_devices == []


@pytest.mark.parametrize("prefix,v4,v6,marker", [
    ((24, 64), "10.31.0.0/24 . 10.31.0.5", "fd31::/64 . fd31::5", " prefix=24/64"),
    ((32, 128), "10.31.0.5/32 . 10.31.0.5", "fd31::5/128 . fd31::5", ""),  # the module's: a container itself
])
def test_nft_hairpin_set_holds_source_network_and_container(prefix, v4, v6, marker):
    made, state = spec(prefix)
    text = NftablesBackend("/bin/true").render(made, state)
    assert v4 in text and v6 in text
    assert "ct status dnat ip saddr . ip daddr @hairpinnet4 masquerade" in text
    assert 'network=chainnet hairpin=1 localhost=1%s"' % marker in text
    comment = "hostnet.isolation port_mapper network=chainnet hairpin=1 localhost=1" + marker
    assert parse_marker_options(_COMMENT_RE.match(comment), 2) == (True, True, prefix)


def test_nft_without_hairpin_masquerades_no_neighbour():
    made, state = spec((24, 64), hairpin=False)
    assert "@hairpinnet" not in "".join(line for line in NftablesBackend("/bin/true").render(made, state).splitlines()
                                        if "masquerade" in line)


def test_iptables_hairpin_rule_takes_the_subnet_and_only_dnat_flows():
    made, state = spec((24, 64))
    rules = [r for r in chain_rules(made, state, 4) if r["target"] == "MASQUERADE" and r["src"] != "127.0.0.0/8"]
    assert rules == [{"chain": "HN-chainnet-POST", "src": "10.31.0.0/24", "dst": "10.31.0.5", "ctstate": "DNAT",
                      "comment": "container_id: c1", "target": "MASQUERADE"}]
    backend = IptablesBackend.__new__(IptablesBackend)
    text = backend.render(made, state, 4, jumps={})
    comment = [line for line in text.splitlines() if line.startswith("-I PREROUTING")][0].split('"')[1]
    assert parse_marker_options(_JUMP_RE.match(comment), 2) == (True, True, (24, 64))
    assert parse_marker_options(_JUMP_RE.match("hostnet port_mapper web hairpin=1 localhost=0"), 2) == \
        (True, False, (32, 128))  # what earlier versions wrote


@given(st.one_of(st.ip_addresses(v=4).map(lambda a: (a, 32)), st.ip_addresses(v=6).map(lambda a: (a, 128))),
       st.integers(0, 128))
def test_hairpin_source_is_the_containers_network(address_bits, prefix):
    address, bits = address_bits
    prefix = min(prefix, bits)
    # the same network; the text may differ where glibc's inet_ntop writes an IPv4-mapped address dotted
    # (::ffff:0.0.0.0/96, which nft and iptables read as ipaddress's ::ffff:0:0/96)
    source = hairpin_source(str(address), prefix)
    assert ipaddress.ip_network(source) == ipaddress.ip_network("%s/%d" % (address, prefix), strict=False)
    assert source.endswith("/%d" % prefix)
