# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.veth in a hermetic host: traffic crosses the pair it builds."""

import json

import pytest

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.runner import run_module

MOD = "hostnet.isolation.veth"

FULL = {
    "name": "veth-web", "peer": "eth0", "peer_netns": "web", "mtu": 1450,
    "mac": "02:42:0a:00:00:01", "peer_mac": "02:42:0a:00:00:02",
    "addresses": ["10.200.0.1/24", "fd00:200::1/64"],
    "peer_addresses": ["10.200.0.2/24", "fd00:200::2/64"],
    "peer_gateway": "10.200.0.1",
}


def _link(host, name, netns=None):
    prefix = "ip -n %s" % netns if netns else "ip"
    return json.loads(host.sh("%s -j -d addr show dev %s" % (prefix, name)).stdout)[0]


def _tcp_echo_works(host, server_ns, address, port=7777):
    """A TCP server in ``server_ns`` answers a client in the host namespace at ``address``."""
    host.spawn(["socat", "TCP-LISTEN:%d,bind=%s,reuseaddr,fork" % (port, address), "EXEC:echo pong"],
               netns=server_ns)
    out = host.sh("for i in $(seq 50); do socat -T2 - TCP:%s:%d </dev/null 2>/dev/null && exit 0; sleep 0.1; done;"
                  " exit 1" % (address if ":" not in address else "[%s]" % address, port), check=False)
    return out.stdout.strip() == "pong"


def test_pair_into_named_namespace_carries_traffic(host, python):
    host.sh("ip netns add web")
    result = assert_converges(host, MOD, FULL, python)
    assert result["interface"]["peer"]["gateway"] == "10.200.0.1"
    peer = _link(host, "eth0", "web")
    hostend = _link(host, "veth-web")
    assert (peer["mtu"], peer["address"], hostend["mtu"], hostend["address"]) == (
        1450, "02:42:0a:00:00:02", 1450, "02:42:0a:00:00:01")
    assert sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in peer["addr_info"] if a["scope"] == "global") \
        == ["10.200.0.2/24", "fd00:200::2/64"]
    assert "default via 10.200.0.1 dev eth0" in host.sh("ip -n web route show default").stdout
    # the peer never appeared in the host namespace under its own name
    assert host.sh("ip link show eth0", check=False).returncode != 0
    assert _tcp_echo_works(host, "web", "10.200.0.2")


def test_changes_only_what_differs(host, python):
    host.sh("ip netns add web")
    run_module(host, MOD, FULL, python)
    index_before = _link(host, "veth-web")["ifindex"]
    changed = dict(FULL, mtu=1400, addresses=["10.200.0.1/24", "10.201.0.1/24"], peer_mac="02:42:0a:00:00:09")
    result = assert_converges(host, MOD, changed, python)
    assert sorted(result["changes"]) == sorted([
        "set veth-web mtu 1450 -> 1400", "set eth0 mtu 1450 -> 1400",
        "set eth0 address 02:42:0a:00:00:02 -> 02:42:0a:00:00:09",
        "remove address fd00:200::1/64 from veth-web", "add address 10.201.0.1/24 to veth-web"])
    assert _link(host, "veth-web")["ifindex"] == index_before  # not recreated


def test_peer_in_process_namespace_on_a_bridge(host, python):
    host.sh("ip link add br-apps type bridge && ip link set br-apps up")
    pid = host.start_app()
    args = {"name": "veth-app", "peer": "eth0", "peer_netns_pid": pid, "master": "br-apps"}
    result = assert_converges(host, MOD, args, python)
    assert result["interface"]["host"]["master"] == "br-apps"
    assert _link(host, "veth-app")["master"] == "br-apps"
    assert host.sh("nsenter -t %d -n ip -br link show eth0" % pid).stdout.split()[0].startswith("eth0")


def test_both_ends_outside_the_calling_namespace(host, python):
    # host end in a named namespace, peer given by the path of a process's namespace
    host.sh("ip netns add edge")
    pid = host.start_app()
    args = {"name": "veth-edge", "peer": "eth1", "netns": "edge", "peer_netns": "/proc/%d/ns/net" % pid,
            "addresses": ["10.9.0.1/24"], "peer_addresses": ["10.9.0.2/24"]}
    result = assert_converges(host, MOD, args, python)
    assert result["interface"]["peer"]["addresses"] == ["10.9.0.2/24"]
    assert "10.9.0.1/24" in host.sh("ip -n edge -br addr show veth-edge").stdout
    assert "10.9.0.2/24" in host.sh("nsenter -t %d -n ip -br addr show eth1" % pid).stdout
    assert host.sh("ip link show veth-edge", check=False).returncode != 0  # not in the calling namespace
    probe = "import socket; s = socket.socket(); s.settimeout(2); print(s.connect_ex(('10.9.0.1', 9)))"
    reach = host.run(["nsenter", "-t", str(pid), "-n", "python3", "-c", probe]).stdout.strip()
    assert reach == "111"  # refused by the host end in "edge": the SYN crossed the pair and was answered


def test_absent_removes_both_ends(host, python):
    host.sh("ip netns add web")
    run_module(host, MOD, FULL, python)
    assert_converges(host, MOD, {"name": "veth-web", "state": "absent"}, python)
    assert host.sh("ip -n web link show eth0", check=False).returncode != 0
    assert host.sh("ip link show veth-web", check=False).returncode != 0


def test_kernel_refusal_rolls_back_everything(host, python):
    # the gateway is not on-link (peer addresses are unmanaged here, so only the kernel can tell):
    # the pair, its addresses and up states must all be undone
    host.sh("ip netns add web")
    before = host.snapshot()
    args = {"name": "veth-web", "peer": "eth0", "peer_netns": "web", "addresses": ["10.200.0.1/24"],
            "peer_gateway": "192.0.2.1"}
    result = run_module(host, MOD, args, python)
    assert result.get("failed") and "rolled back cleanly" in result["msg"], result
    assert_same(before, host.snapshot(), "a failed run")


BAD = [
    ({"name": "a-name-of-16-chr", "peer": "eth0"}, "name", "at most 15"),
    ({"name": "veth0", "peer": "peer-name-16-chr"}, "peer", "at most 15"),
    ({"name": "veth 0", "peer": "eth0"}, "name", "not a valid interface name"),
    ({"name": "veth0"}, "peer", None),
    ({"name": "veth0", "peer": "eth0", "peer_netns": "nope"}, "peer_netns", "does not exist"),
    ({"name": "veth0", "peer": "eth0", "peer_netns_pid": 999999999}, "peer_netns_pid", "no process"),
    ({"name": "veth0", "peer": "eth0", "netns": "web", "netns_pid": 1}, "netns", "mutually exclusive"),
    ({"name": "veth0", "peer": "eth0", "mtu": 10}, "mtu", "not an MTU"),
    ({"name": "veth0", "peer": "eth0", "mac": "zz:00:00:00:00:01"}, "mac", "not a MAC address"),
    ({"name": "veth0", "peer": "eth0", "peer_mac": "01:00:5e:00:00:01"}, "peer_mac", "multicast"),
    ({"name": "veth0", "peer": "eth0", "addresses": ["10.0.0.1"]}, "addresses[0]", "prefix length"),
    ({"name": "veth0", "peer": "eth0", "addresses": ["10.0.0.1/24", "10.0.0.300/24"]}, "addresses[1]", None),
    ({"name": "veth0", "peer": "eth0", "peer_addresses": ["10.0.0.2/24"], "peer_gateway": "10.9.9.9"},
     "peer_gateway", "not inside any of peer_addresses"),
    ({"name": "veth0", "peer": "eth0", "peer_gateway": "not-an-ip"}, "peer_gateway", "not an IPv4 or IPv6"),
    ({"name": "veth0", "peer": "eth0", "master": "br-missing"}, "master", "no device"),
    ({"name": "veth0", "peer": "eth0", "master": "lo"}, "master", "not a bridge"),
    ({"name": "veth0", "peer": "veth0"}, "peer", "same namespace"),
    ({"name": "veth0", "peer": "eth0", "peer_netns": "web"}, "peer", "already exists"),
    ({"name": "br-x", "peer": "eth0"}, "name", "not a veth"),
]


@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field, reason):
    host.sh("ip netns add web && ip -n web link add eth0 type veth peer name other"
            " && ip link add br-x type bridge")
    assert_rejected(host, MOD, args, python, field, reason)
