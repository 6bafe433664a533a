# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.port_mapper with real traffic, for each backend.

Topology inside a hermetic host ("host" is its network namespace):

    client ns  192.0.2.2 / 2001:db8:1::2 --veth-- hveth-cl  192.0.2.1 / 2001:db8:1::1   (host_ip)
    c1 ns      10.88.0.2 / fd00:88::2    --veth-- br0       10.88.0.1 / fd00:88::1
    c2 ns      10.88.0.3 / fd00:88::3    --veth-- br0
"""

import ast
import os
import subprocess
import time

import pytest
import yaml

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.runner import INTERPRETERS, run_module

MOD = "hostnet.isolation.port_mapper"
OS_PY = INTERPRETERS["os-pyroute2-0.7"]
HOST_IP, HOST_IP6 = "192.0.2.1", "2001:db8:1::1"
C1, C2, C1_6 = "10.88.0.2", "10.88.0.3", "fd00:88::2"

TOPOLOGY = r"""
set -e
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip link add br0 type bridge
ip addr add 10.88.0.1/24 dev br0
ip addr add fd00:88::1/64 dev br0 nodad
ip link set br0 up
for i in 1 2; do
  ip netns add c$i
  ip link add hveth-c$i type veth peer name eth0 netns c$i
  ip link set hveth-c$i master br0 up
  ip link set dev hveth-c$i type bridge_slave hairpin on   # as the CNI bridge plugin's hairpinMode does
  ip -n c$i addr add 10.88.0.$((i+1))/24 dev eth0
  ip -n c$i addr add fd00:88::$((i+1))/64 dev eth0 nodad
  ip -n c$i link set eth0 up
  ip -n c$i link set lo up
  ip -n c$i route add default via 10.88.0.1
  ip -n c$i -6 route add default via fd00:88::1
done
ip netns add client
ip link add hveth-cl type veth peer name eth0 netns client
ip addr add 192.0.2.1/24 dev hveth-cl
ip addr add 2001:db8:1::1/64 dev hveth-cl nodad
ip link set hveth-cl up
ip -n client addr add 192.0.2.2/24 dev eth0
ip -n client addr add 2001:db8:1::2/64 dev eth0 nodad
ip -n client link set eth0 up
ip -n client route add default via 192.0.2.1
"""

BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"]


@pytest.fixture(params=BACKENDS)
def net(request, host):
    """The hermetic host with the topology, and the backend option to use."""
    host.sh(TOPOLOGY)
    if request.param == "iptables-legacy":
        host.sh("iptables-legacy -t nat -S >/dev/null")  # the host "uses" legacy iptables: its tables are loaded
    for ns, name in (("c1", "c1"), ("c2", "c2")):
        host.spawn(["socat", "TCP6-LISTEN:80,ipv6only=0,fork,reuseaddr", "SYSTEM:echo %s" % name], netns=ns)
        host.spawn(["socat", "TCP-LISTEN:7001,fork,reuseaddr", "SYSTEM:echo %s-7001" % name], netns=ns)
        host.spawn(["socat", "UDP-RECVFROM:53,fork,reuseaddr", "SYSTEM:echo %s" % name], netns=ns)
        host.spawn(["socat", "UDP6-RECVFROM:53,ipv6only=1,fork,reuseaddr", "SYSTEM:echo %s" % name], netns=ns)
    host.backend = {"nftables": "nftables"}.get(request.param, "iptables")
    host.expect_backend = request.param
    return host


def tcp(host, ns, address, port, timeout=2):
    """What a TCP client in ``ns`` (None: the host) reads from address:port ('' when nothing answers)."""
    target = "[%s]" % address if ":" in address else address
    argv = ["socat", "-T%d" % timeout, "-", "TCP:%s:%d,connect-timeout=%d" % (target, port, timeout)]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    return host.run(argv, check=False, stdin=subprocess.DEVNULL).stdout.strip()


def udp(host, ns, address, port, sport):
    target = "UDP6:[%s]" % address if ":" in address else "UDP:%s" % address
    argv = ["ip", "netns", "exec", ns, "sh", "-c",
            "echo ping | socat -T2 - %s:%d,sourceport=%d,reuseaddr" % (target, port, sport)]
    return host.run(argv, check=False).stdout.strip()


def eventually(fn, expected, tries=30):
    got = None
    for _attempt in range(tries):
        got = fn()
        if got == expected:
            return got
        time.sleep(0.1)
    return got


def mapping(cid, ip, host_port, container_port, **extra):
    return dict(container_id=cid, container_ip=ip, host_port=str(host_port), container_port=str(container_port),
                **extra)


BASE = [mapping("c1", C1, 8080, 80), mapping("c1", C1, 5353, 53, protocol="udp"),
        mapping("c2", C2, "9000-9001", "7000-7001"), mapping("c1", C1_6, 8080, 80)]


def test_tcp_udp_ranges_and_ipv6_reach_the_containers(net):
    result = assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    assert result["backend"] == net.expect_backend
    assert result["engine"] == {"nftables": "libnftables", "iptables-nft": "iptables-nft-restore",
                                "iptables-legacy": "python-iptables (IPv4), ip6tables-legacy-restore (IPv6)"}[
                                    net.expect_backend]
    assert result["counts"] == {"added": 5, "removed": 0, "unchanged": 0}
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"
    assert eventually(lambda: udp(net, "client", HOST_IP, 5353, 40001), "c1", tries=5) == "c1"
    assert tcp(net, "client", HOST_IP, 9001) == "c2-7001"
    assert tcp(net, "client", HOST_IP6, 8080) == "c1"
    assert tcp(net, "client", HOST_IP, 8081) == ""  # not mapped


def test_hairpin_and_localhost(net):
    args = {"network": "pm", "backend": net.backend, "localhost": True, "mappings": BASE}
    result = assert_converges(net, MOD, args, OS_PY)
    assert result["route_localnet"] == ["/proc/sys/net/ipv4/conf/br0/route_localnet"]
    assert eventually(lambda: tcp(net, "c1", HOST_IP, 8080), "c1") == "c1"  # a container to its own host port
    assert tcp(net, None, HOST_IP, 8080) == "c1"  # generated on the host, to its own address
    assert tcp(net, None, "127.0.0.1", 8080) == "c1"  # localhost


def test_without_localhost_loopback_is_not_mapped(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    assert eventually(lambda: tcp(net, None, HOST_IP, 8080), "c1") == "c1"
    assert tcp(net, None, "127.0.0.1", 8080) == ""


def test_excluded_device_is_not_dnated(net):
    args = {"network": "pm", "backend": net.backend, "mappings": BASE, "exclude_devices": ["eth7", "hveth-cl"]}
    assert_converges(net, MOD, args, OS_PY)
    assert tcp(net, "client", HOST_IP, 8080) == ""
    # dropping the exclusion maps the device again: every listed device counted, not only the last
    run_module(net, MOD, dict(args, exclude_devices=["hveth-cl", "eth7"]), OS_PY)
    assert tcp(net, "client", HOST_IP, 8080) == ""
    run_module(net, MOD, dict(args, exclude_devices=[]), OS_PY)
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"


def test_removing_a_container_stops_its_traffic_only(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"
    result = assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "state": "absent",
                                         "container_id": "c1"}, OS_PY)
    assert sorted(m["host_port"] for m in result["removed"]) == ["5353", "8080", "8080"]
    assert tcp(net, "client", HOST_IP, 8080) == ""
    assert tcp(net, "client", HOST_IP, 9001) == "c2-7001"
    assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "state": "absent"}, OS_PY)
    assert tcp(net, "client", HOST_IP, 9001) == ""
    assert "hostnet" not in net.sh("nft list ruleset; iptables-nft-save; iptables-legacy-save").stdout


def test_udp_flow_remapped_to_another_container_reaches_it(net):
    args = {"network": "pm", "backend": net.backend, "exclusive": True,
            "mappings": [mapping("c1", C1, 5353, 53, protocol="udp")]}
    run_module(net, MOD, args, OS_PY)
    assert eventually(lambda: udp(net, "client", HOST_IP, 5353, 40002), "c1") == "c1"
    # same client socket (source port) after the port moved to c2: a stale conntrack entry would keep it on c1
    result = run_module(net, MOD, dict(args, mappings=[mapping("c2", C2, 5353, 53, protocol="udp")]), OS_PY)
    assert result["conntrack_flushed"] >= 1, result
    # retried like any UDP client; a stale conntrack entry would answer "c1" on every try (same source port)
    assert eventually(lambda: udp(net, "client", HOST_IP, 5353, 40002), "c2", tries=5) == "c2"


def test_changing_one_mapping_changes_only_that_one(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    moved = [mapping("c2", C2, 8080, 80)] + BASE[1:]
    result = assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "exclusive": True,
                                         "mappings": moved}, OS_PY)
    assert result["counts"] == {"added": 1, "removed": 1, "unchanged": 4}
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c2") == "c2"


def test_renamed_chain_leaves_no_stale_chain(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    result = assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "chain": "PM-RENAMED",
                                         "mappings": BASE}, OS_PY)
    assert result["stale_chains_removed"] in (["HN-pm"], ["hostnet-pm-pm"])
    rules = net.sh("nft list ruleset; iptables-nft-save; iptables-legacy-save").stdout
    assert "HN-pm" not in rules and "hostnet-pm-pm" not in rules and "PM-RENAMED" in rules
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"


def test_conflicts_name_both_containers_and_change_nothing(net):
    first = run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    assert first.get("changed") and not first.get("failed"), first
    before = net.snapshot()
    result = run_module(net, MOD, {"network": "pm", "backend": net.backend,
                                   "mappings": [mapping("c2", C2, 8080, 80)]}, OS_PY)
    assert result.get("failed") and "container c1" in result["msg"] and "c2" in result["msg"], result
    other = run_module(net, MOD, {"network": "other", "backend": net.backend,
                                  "mappings": [mapping("c9", "10.88.0.9", 8080, 80)]}, OS_PY)
    assert other.get("failed") and "c1" in other["msg"] and "network pm" in other["msg"], other
    assert_same(before, net.snapshot(), "a rejected conflict")


def _failing_tool(host, name, when):
    """Failure injection: a wrapper command ``name`` that fails when the ruleset it is fed contains ``when``.

    It lives in the hermetic host's private /run, first in the PATH the module runs with.
    """
    real = host.sh("command -v %s" % name).stdout.strip()
    host.sh("mkdir -p /run/fail && cat > /run/fail/%s <<'EOF'\n"
            "#!/bin/sh\n"
            "case \"$*\" in *-f*|*restore*|*--noflush*) ;; *) exec %s \"$@\";; esac\n"
            "input=$(cat)\n"
            "case \"$input\" in *%s*) echo injected failure >&2; exit 1;; esac\n"
            "printf '%%s\\n' \"$input\" | exec %s \"$@\"\n"
            "EOF\n"
            "chmod +x /run/fail/%s" % (name, real, when, real, name))
    return {"PATH": "/run/fail:" + os.environ["PATH"]}


_LIBNFTABLES_FAILURE = """\
# Failure injection for the module's Python: libnftables refuses any batch that contains %s.
import ctypes

_CDLL = ctypes.CDLL


class CDLL(_CDLL):
    def __init__(self, name, *args, **kwargs):
        _CDLL.__init__(self, name, *args, **kwargs)
        if "libnftables" in str(name):
            real = _CDLL.__getattr__(self, "nft_run_cmd_from_buffer")

            def run(ctx, text):
                return 1 if b"%s" in text else real(ctx, text)

            self.nft_run_cmd_from_buffer = run


ctypes.CDLL = CDLL
"""


def _failing_libnftables(host, when):
    """Failure injection: a sitecustomize that makes libnftables refuse a batch containing ``when``."""
    host.sh("mkdir -p /run/fail && cat > /run/fail/sitecustomize.py <<'EOF'\n%sEOF" % (_LIBNFTABLES_FAILURE % (when, when)))
    return {"PYTHONPATH": "/run/fail"}


def test_injected_failure_leaves_ruleset_identical(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE[:2]}, OS_PY)
    before = net.snapshot()
    if net.backend == "nftables":
        env, expected = _failing_libnftables(net, "9001"), "nft rejected the ruleset"
    else:  # the IPv4 restore succeeds, the IPv6 one fails: the IPv4 part must be put back
        env = _failing_tool(net, "ip6tables-%s-restore" % net.expect_backend.split("-")[1], "fd00")
        expected = "injected failure"
    args = {"network": "pm", "backend": net.backend, "localhost": True, "mappings": BASE}
    result = run_module(net, MOD, args, OS_PY, env=env)
    assert result.get("failed") and expected in result["msg"], result
    assert_same(before, net.snapshot(), "a failed apply")


def test_auto_follows_what_the_host_uses(host):
    host.sh(TOPOLOGY)
    args = {"network": "pm", "mappings": BASE[:1]}
    assert run_module(host, MOD, args, OS_PY)["backend"] == "nftables"  # nothing in use: native nftables
    assert run_module(host, MOD, args, OS_PY)["backend"] == "nftables"  # and it stays there
    run_module(host, MOD, {"network": "pm", "state": "absent"}, OS_PY)
    host.sh("iptables-nft -t filter -A INPUT -p tcp --dport 22 -j ACCEPT")  # the host's own iptables-nft rules
    assert run_module(host, MOD, args, OS_PY)["backend"] == "iptables-nft"


# Keys a result carries from Ansible itself (and the runner: "action", "_host", "_task"), not from RETURN.
ANSIBLE_KEYS = {"changed", "invocation", "diff", "warnings", "deprecations", "action"}


def test_every_result_key_is_documented(host):
    """What a run returns is what RETURN documents, no more (``network`` was once returned undocumented)."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "modules", "port_mapper.py")) as f:
        tree = ast.parse(f.read())
    documented = next(yaml.safe_load(node.value.value) for node in tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", None) == "RETURN")
    host.sh(TOPOLOGY)
    result = run_module(host, MOD, {"network": "pm", "mappings": BASE[:1]}, OS_PY)
    assert not result.get("failed"), result
    assert result["network"] == "pm"
    returned = set(k for k in result if not k.startswith("_")) - ANSIBLE_KEYS
    assert returned == set(documented), "undocumented: %s; documented, not returned: %s" % (
        sorted(returned - set(documented)), sorted(set(documented) - returned))


def test_empty_list_with_absent_removes_nothing(net):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    result = assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "state": "absent",
                                         "mappings": []}, OS_PY, expect_change=False)
    assert result["counts"]["removed"] == 0
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"


def test_ipv6_udp_remap_flushes_conntrack(net):
    args = {"network": "pm", "backend": net.backend, "exclusive": True,
            "mappings": [mapping("c1", C1_6, 5353, 53, protocol="udp")]}
    run_module(net, MOD, args, OS_PY)
    assert eventually(lambda: udp(net, "client", HOST_IP6, 5353, 40003), "c1") == "c1"
    result = run_module(net, MOD, dict(args, mappings=[mapping("c2", "fd00:88::3", 5353, 53, protocol="udp")]), OS_PY)
    assert result["conntrack_flushed"] >= 1 and not result.get("warnings"), result
    assert eventually(lambda: udp(net, "client", HOST_IP6, 5353, 40003), "c2", tries=5) == "c2"


def test_pypi_pyroute2_interpreter(host):
    """The whole assertion set once more with the other managed-host Python."""
    host.sh(TOPOLOGY)
    assert_converges(host, MOD, {"network": "pm", "mappings": BASE, "localhost": True},
                     INTERPRETERS["pypi-pyroute2"])


BAD = [
    ({"mappings": [mapping("c1", C1, 0, 80)]}, "mappings[0].host_port", "not a port"),
    ({"mappings": [mapping("c1", C1, 65536, 80)]}, "mappings[0].host_port", "not a port"),
    ({"mappings": [mapping("c1", C1, 80, 70000)]}, "mappings[0].container_port", "not a port"),
    ({"mappings": [mapping("c1", C1, "8080-8089", "80-85")]}, "mappings[0].container_port", "has 6 ports"),
    ({"mappings": [mapping("c1", C1, "9000-8000", "80")]}, "mappings[0].host_port", "empty range"),
    ({"mappings": [mapping("c1", C1, "80x", "80")]}, "mappings[0].host_port", "not a port"),
    ({"mappings": [mapping("c1", "10.88.0.300", 80, 80)]}, "mappings[0].container_ip", "not an IPv4 or IPv6"),
    ({"mappings": [mapping("c1", "127.0.0.1", 80, 80)]}, "mappings[0].container_ip", "cannot be a DNAT target"),
    ({"mappings": [mapping("c1", C1, 80, 80, host_ip="2001:db8::1")]}, "mappings[0].host_ip", "IPv6"),
    ({"mappings": [mapping("c1", C1, 80, 80, host_ip="nope")]}, "mappings[0].host_ip", "not an IPv4"),
    ({"mappings": [mapping("c 1", C1, 80, 80)]}, "mappings[0].container_id", "not a container id"),
    ({"mappings": [mapping("c1", C1, 80, 80, protocol="icmp")]}, "protocol", None),
    ({"mappings": [mapping("c1", C1, 80, 80), mapping("c2", C2, "70-90", "70-90")]}, "mappings[1].host_port",
     "already mapped to container c1"),
    ({"mappings": [mapping("c1", C1, 80, 80, host_ip=HOST_IP), mapping("c2", C2, 80, 80)]}, "mappings",
     "overlaps"),
    ({"chain": "bad\"chain"}, "chain", "no quotes"),
    ({"chain": "bad chain"}, "chain", "not a chain name"),
    ({"chain": "x;drop"}, "chain", "not a chain name"),
    ({"chain": "A" * 24}, "chain", "up to 23"),
    ({"network": "n" * 30, "backend": "iptables"}, "network", "set a shorter chain"),
    ({"network": "n" * 49}, "network", "up to 48"),
    ({"network": "bad name"}, "network", "not a network name"),
    ({"exclude_devices": ["a-device-name-16"]}, "exclude_devices[0]", "at most 15"),
    ({"container_id": "c1"}, "container_id", "only used with state=absent"),
    ({"state": "absent", "exclusive": True}, "exclusive", "only used with state=present"),
    ({"mappings": [mapping("c" * 115, C1, 80, 80)]}, "mappings[0].container_id", "up to 114"),
]


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, backend, args, field, reason):
    host.sh(TOPOLOGY)
    run_module(host, MOD, {"network": "keep", "backend": backend, "mappings": [mapping("k", C2, 1234, 80)]}, OS_PY)
    args = dict({"network": "pm", "backend": backend}, **args)
    assert_rejected(host, MOD, args, OS_PY, field, reason)


# -- hostile input: nothing outside the network's own objects is ever written (issue #17) ----------

# Before the fix this host_ip reached ip6tables-restore whole: its lines committed a filter table of their own
# and turned the host's IPv6 INPUT policy from DROP to ACCEPT, reported as a normal change.
INJECTION = "fe80::1%0 -j RETURN\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\n-A HN-pm -d ::2"


def _iptables(net, family=4):
    variant = "legacy" if net.expect_backend == "iptables-legacy" else "nft"
    return "%s-%s" % ("iptables" if family == 4 else "ip6tables", variant)


@pytest.mark.parametrize("field", ["host_ip", "container_ip"])
def test_an_ipv6_zone_id_cannot_carry_ruleset_text(net, field):
    net.sh("%s -P INPUT DROP" % _iptables(net, 6))
    item = dict(mapping("c1", C1_6, 8080, 80), host_ip=HOST_IP6)
    item[field] = INJECTION
    assert_rejected(net, MOD, {"network": "pm", "backend": net.backend, "mappings": [item]}, OS_PY,
                    "mappings[0].%s" % field, "zone id")
    assert net.sh("%s -S INPUT" % _iptables(net, 6)).stdout.splitlines()[0] == "-P INPUT DROP"


@pytest.mark.parametrize("device,reason", [
    ("eth'0", "quotes"), ('eth"0', "quotes"), ("eth\\0", "backslashes"), ("eth\x000", "control characters"),
    ("eth\n0", "whitespace"), ("eth+", "wildcard"), ("e*", "wildcard"),
])
def test_device_names_that_would_break_ruleset_text_are_refused(net, device, reason):
    run_module(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    args = {"network": "pm", "backend": net.backend, "mappings": BASE, "exclude_devices": ["eth7", device]}
    assert_rejected(net, MOD, args, OS_PY, "exclude_devices[1]", reason)
    # and the network still converges and can still be removed
    assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "state": "absent"}, OS_PY)


def test_a_rule_with_unpaired_quotes_left_by_an_older_version_does_not_block_later_runs(net):
    if net.backend == "nftables":
        pytest.skip("iptables-save text only: nftables is read as JSON")
    ipt = _iptables(net)
    net.sh("%s -t nat -N HN-pm && %s -t nat -N HN-pm-POST && %s -t nat -A HN-pm -i \"eth'0\" -j RETURN && "
           "%s -t nat -A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "
           "'hostnet port_mapper pm hairpin=1 localhost=0' -j HN-pm" % (ipt, ipt, ipt, ipt))
    assert_converges(net, MOD, {"network": "pm", "backend": net.backend, "mappings": BASE}, OS_PY)
    assert "eth'0" not in net.sh("%s -t nat -S" % ipt).stdout
    assert eventually(lambda: tcp(net, "client", HOST_IP, 8080), "c1") == "c1"


def _foreign_chain(net):
    """A chain (iptables) or table (nftables) of another owner, with a rule in it; its name."""
    if net.backend == "nftables":
        net.sh("nft add table inet filter && nft add chain inet filter input '{ type filter hook input priority 0; }'"
               " && nft add rule inet filter input tcp dport 22 accept")
        return "filter"
    ipt = _iptables(net)
    net.sh("%s -t nat -N DOCKER && %s -t nat -A DOCKER -p tcp --dport 9999 -j DNAT --to-destination %s:80"
           % (ipt, ipt, C2))
    return "DOCKER"


@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_chain_or_table_of_another_owner_is_never_replaced(net, state):
    name = _foreign_chain(net)
    args = {"network": "pm", "backend": net.backend, "chain": name, "state": state}
    if state == "present":
        args["mappings"] = BASE
    assert_rejected(net, MOD, args, OS_PY, "chain", "not a port_mapper")


def test_a_chain_of_another_network_is_never_taken_over(net):
    run_module(net, MOD, {"network": "other", "backend": net.backend, "chain": "SHARED",
                          "mappings": [mapping("c2", C2, 9100, 80)]}, OS_PY)
    assert_rejected(net, MOD, {"network": "pm", "backend": net.backend, "chain": "SHARED", "mappings": BASE[:1]},
                    OS_PY, "chain", "belongs to port_mapper network other")
    assert eventually(lambda: tcp(net, "client", HOST_IP, 9100), "c2") == "c2"
