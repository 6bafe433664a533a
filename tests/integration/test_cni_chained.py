# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet-cni-port-mapper chained after Debian's `bridge` + `host-local` exactly as libcni runs a conflist:
bridge ADD first, its result handed on as ``prevResult`` with ``runtimeConfig.portMappings``; DEL in reverse.

Each behaviour is also run with CNI's own `portmap` in our place, to show it is the same one.
The bridge path runs without br_netfilter: the hermetic host's namespace turns its bridge-nf-call
sysctls off (they are per network namespace), so bridged frames never see the IP hooks.
"""

import ipaddress
import json
import os

import pytest

from harness.hermetic import REPO

OURS = os.path.join(REPO, ".build", "cni", "hostnet-cni-port-mapper")
PORTMAP = "/usr/lib/cni/portmap"
CNI_PATH = "/usr/lib/cni"
HOST_IP = "192.0.2.1"
GATEWAY = "10.31.0.1"
PLUGINS = {"hostnet": OURS, "portmap": PORTMAP}
# ours on each backend it picks for itself (what the host already uses: seeded here), and portmap (iptables)
KINDS = {"hostnet-nftables": ("hostnet", ""),
         "hostnet-iptables-nft": ("hostnet", "nft add table ip nat"),
         "hostnet-iptables-legacy": ("hostnet", "iptables-legacy -t nat -S >/dev/null"),
         "portmap": ("portmap", "")}

TOPOLOGY = r"""
set -e
sysctl -qw net.ipv4.ip_forward=1
for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables; do
  if [ -e $f ]; then echo 0 > $f; fi
done
ip link set lo up
ip netns add client
ip link add hveth-cl type veth peer name eth0 netns client
ip addr add 192.0.2.1/24 dev hveth-cl && ip link set hveth-cl up
echo 1 > /proc/sys/net/ipv4/conf/hveth-cl/route_localnet
ip -n client addr add 192.0.2.2/24 dev eth0 && ip -n client link set eth0 up
ip -n client route add default via 192.0.2.1
ip netns add c1 && ip netns add c2 && ip netns add c3
"""

BRIDGE = {"cniVersion": "1.0.0", "name": "chainnet", "type": "bridge", "bridge": "cni0", "isGateway": True,
          "ipMasq": False, "hairpinMode": True,
          "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "dataDir": "/run/cni-ipam",
                   "routes": [{"dst": "0.0.0.0/0"}]}}


def call(host, plugin, command, conf, container):
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container,
               CNI_NETNS="/var/run/netns/%s" % container, CNI_IFNAME="eth0", CNI_PATH=CNI_PATH)
    proc = host.run([plugin], check=False, env=env, input=json.dumps(conf))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def mapper_conf(kind, prev, ports=(), **keys):
    conf = {"cniVersion": "1.0.0", "name": "chainnet", "type": os.path.basename(PLUGINS[kind]),
            "prevResult": prev,
            "runtimeConfig": {"portMappings": [{"hostPort": h, "containerPort": c, "protocol": "tcp"}
                                               for h, c in ports]}}
    conf.update(keys)
    return conf


def add(host, kind, container, ports=(), **keys):
    """bridge ADD, then the port mapper's ADD with bridge's result: (mapper's result, container ip)."""
    code, prev = call(host, os.path.join(CNI_PATH, "bridge"), "ADD", BRIDGE, container)
    assert code == 0, prev
    code, result = call(host, PLUGINS[kind], "ADD", mapper_conf(kind, prev, ports, **keys), container)
    assert code == 0, result
    assert result["ips"] == prev["ips"]  # a chained plugin passes the previous result on
    return result, result["ips"][0]["address"].split("/")[0]


def delete(host, kind, container, result, ports=(), **keys):
    code, out = call(host, PLUGINS[kind], "DEL", mapper_conf(kind, result, ports, **keys), container)
    assert code == 0, out
    code, out = call(host, os.path.join(CNI_PATH, "bridge"), "DEL", BRIDGE, container)
    assert code == 0, out


def serve(host, container, reply="SYSTEM:echo $SOCAT_PEERADDR"):
    """A TCP server on port 80 of ``container`` that answers with the client address it sees."""
    host.spawn(["socat", "TCP-LISTEN:80,fork,reuseaddr", reply], netns=container)


def fetch(host, address, port, netns=None, attempts=1):
    argv = ["socat", "-T2", "-", "TCP:%s:%d,connect-timeout=2" % (address, port)]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    answer = ""
    for _attempt in range(attempts):
        answer = host.run(argv, check=False, stdin=open(os.devnull)).stdout.strip()
        if answer:
            break
    return answer


def ruleset(host):
    return host.sh("nft list ruleset; iptables-nft-save -t nat 2>/dev/null | grep -v '^#'; "
                   "iptables-legacy-save 2>/dev/null | grep -v '^#'; true").stdout


def route_localnet(host):
    out = host.sh("cd /proc/sys/net/ipv4/conf && grep -H . */route_localnet").stdout
    return dict(line.split("/route_localnet:") for line in out.split())


@pytest.fixture
def chainhost(host):
    for plugin in ("bridge", "host-local", "portmap"):
        if not os.access(os.path.join(CNI_PATH, plugin), os.X_OK):
            pytest.fail("containernetworking-plugins is not installed (make deps installs it)")
    host.sh(TOPOLOGY)
    return host


@pytest.fixture(params=sorted(KINDS))
def kind(request, chainhost):
    """The plugin in the conflist after bridge; the host's rules seeded so that ours picks the backend named."""
    plugin, seed = KINDS[request.param]
    if seed:
        chainhost.sh(seed)
    chainhost.kind = request.param
    return plugin


WHERE = {"hostnet-nftables": "nft list table inet hostnet-pm-chainnet",
         "hostnet-iptables-nft": "iptables-nft-save -t nat | grep -- '-A HN-chainnet '",
         "hostnet-iptables-legacy": "iptables-legacy-save -t nat | grep -- '-A HN-chainnet '",
         "portmap": "iptables-save -t nat | grep -- '-A CNI-DN-'"}


def test_host_clients_reach_the_container_at_localhost_and_del_removes_every_rule(chainhost, kind):
    host = chainhost
    sysctls_before = route_localnet(host)
    result, ip = add(host, kind, "c1", [(8080, 80)])
    serve(host, "c1")
    assert fetch(host, HOST_IP, 8080, attempts=30) in (HOST_IP, GATEWAY)  # from the host itself
    assert fetch(host, "127.0.0.1", 8080) == GATEWAY
    assert fetch(host, HOST_IP, 8080, netns="client") == "192.0.2.2"  # from outside: the client's own address
    assert route_localnet(host)["cni0"] == "1"
    assert ip in host.sh(WHERE[host.kind]).stdout  # the backend each kind is meant to use

    delete(host, kind, "c1", result, [(8080, 80)])
    assert ip not in ruleset(host) and "8080" not in ruleset(host)
    assert fetch(host, "127.0.0.1", 8080) == ""
    after = route_localnet(host)
    assert dict((k, v) for k, v in after.items() if k in sysctls_before) == sysctls_before  # nothing reset
    assert host.sh("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert call(host, PLUGINS[kind], "DEL", mapper_conf(kind, result, [(8080, 80)]), "c1") == (0, None)


@pytest.mark.parametrize("snat", [True, False], ids=["snat", "no-snat"])
def test_a_container_reaches_its_neighbour_through_the_host_port(chainhost, kind, snat):
    host = chainhost
    keys = {} if snat else {"snat": False}
    c1_result, c1_ip = add(host, kind, "c1", [(8080, 80)], **keys)
    c2_result, c2_ip = add(host, kind, "c2", [(8081, 80)], **keys)  # ours: the nftables fast path
    c3_result, c3_ip = add(host, kind, "c3", **keys)  # no ports: the runtime still runs the whole conflist
    serve(host, "c1")
    serve(host, "c2")
    assert fetch(host, HOST_IP, 8080, netns="client", attempts=30) == "192.0.2.2"
    assert fetch(host, HOST_IP, 8081, netns="client", attempts=30) == "192.0.2.2"
    if snat:
        # the reply comes back through the host, so the caller sees the host port it called (as with portmap)
        assert fetch(host, HOST_IP, 8080, netns="c3", attempts=5) == GATEWAY
        assert fetch(host, HOST_IP, 8080, netns="c2", attempts=5) == GATEWAY
        assert fetch(host, HOST_IP, 8081, netns="c1", attempts=5) == GATEWAY
        assert fetch(host, HOST_IP, 8080, netns="c1", attempts=5) == GATEWAY  # itself
        assert fetch(host, "127.0.0.1", 8081) == GATEWAY
    else:
        # c1 answers straight over the bridge from its own address: the caller drops it, as with portmap
        assert fetch(host, HOST_IP, 8080, netns="c3", attempts=2) == ""
        assert fetch(host, HOST_IP, 8081, netns="c1", attempts=2) == ""
        assert fetch(host, "127.0.0.1", 8081) == ""
    delete(host, kind, "c3", c3_result, **keys)
    delete(host, kind, "c2", c2_result, [(8081, 80)], **keys)
    assert c2_ip not in ruleset(host) and c1_ip in ruleset(host)
    assert fetch(host, HOST_IP, 8080, netns="client", attempts=5) == "192.0.2.2"  # c1 keeps its port
    delete(host, kind, "c1", c1_result, [(8080, 80)], **keys)
    rules = ruleset(host)
    assert c1_ip not in rules and c2_ip not in rules and c3_ip not in rules


def test_masq_all_hides_every_client_address(chainhost, kind):
    host = chainhost
    if kind == "portmap":
        with open(PORTMAP, "rb") as f:
            if b"masqAll" not in f.read():
                pytest.skip("this portmap predates masqAll (containernetworking-plugins 1.2; Debian 12 has 1.1.1)")
    result, ip = add(host, kind, "c1", [(8080, 80)], masqAll=True)
    serve(host, "c1")
    assert fetch(host, HOST_IP, 8080, netns="client", attempts=30) == GATEWAY
    delete(host, kind, "c1", result, [(8080, 80)], masqAll=True)
    assert ip not in ruleset(host)


@pytest.mark.parametrize("key,value,words", [
    ("conditionsV4", ["-s", "192.0.2.0/24"], "raw iptables match arguments are refused"),
    ("conditionsV6", ["!", "-i", "eth0"], "raw iptables match arguments are refused"),
    ("conditionsV4", "-s 192.0.2.0/24", "must be a list"),
    ("snat", "yes", "is not a boolean"),
    ("masqAll", 1, "is not a boolean"),
    ("markMasqBit", 32, "is not a mark bit"),
    ("externalSetMarkChain", "KUBE MARK", "is not an iptables chain name"),
])
def test_a_refused_key_is_a_cni_error_naming_it_and_changes_nothing(chainhost, key, value, words):
    host = chainhost
    code, prev = call(host, os.path.join(CNI_PATH, "bridge"), "ADD", BRIDGE, "c1")
    assert code == 0, prev
    before, sysctls = ruleset(host), route_localnet(host)
    conf = mapper_conf("hostnet", prev, [(8080, 80)], **{key: value})
    code, out = call(host, OURS, "ADD", conf, "c1")
    assert code == 1 and out["code"] == 7 and out["msg"].startswith(key + ":") and words in out["msg"], out
    assert out["cniVersion"] == "1.0.0"
    assert ruleset(host) == before and route_localnet(host) == sysctls
    # the runtime then deletes the attachment: DEL never refuses a key, so bridge's DEL runs too
    assert call(host, OURS, "DEL", conf, "c1") == (0, None)


def test_both_mark_keys_are_refused_together_and_mark_keys_change_no_traffic(chainhost):
    host = chainhost
    code, prev = call(host, os.path.join(CNI_PATH, "bridge"), "ADD", BRIDGE, "c1")
    assert code == 0, prev
    conf = mapper_conf("hostnet", prev, [(8080, 80)], markMasqBit=14, externalSetMarkChain="KUBE-MARK-MASQ")
    code, out = call(host, OURS, "ADD", conf, "c1")
    assert code == 1 and out["code"] == 7 and out["msg"].startswith("externalSetMarkChain:"), out
    del conf["externalSetMarkChain"]
    code, out = call(host, OURS, "ADD", conf, "c1")
    assert code == 0, out
    serve(host, "c1")
    assert fetch(host, "127.0.0.1", 8080, attempts=30) == GATEWAY


@pytest.mark.parametrize("keys", [{"snat": "yes"}, {"markMasqBit": 32},
                                  {"markMasqBit": 14, "externalSetMarkChain": "KUBE-MARK-MASQ"}],
                         ids=["snat-not-bool", "mark-bit-32", "both-mark-keys"])
@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_values_portmap_refuses_are_refused_here_too(chainhost, kind, keys):
    """Where portmap refuses a value, so do we; where it takes raw conditions, we refuse (documented)."""
    host = chainhost
    code, prev = call(host, os.path.join(CNI_PATH, "bridge"), "ADD", BRIDGE, "c1")
    assert code == 0, prev
    before = ruleset(host)
    code, out = call(host, PLUGINS[kind], "ADD", mapper_conf(kind, prev, [(8080, 80)], **keys), "c1")
    # portmap answers with codes of its own choosing; ours is the spec's "invalid network config"
    assert code == 1 and out["msg"] and (kind == "portmap" or out["code"] == 7), out
    assert ruleset(host) == before


def test_ipv6_neighbour_reaches_the_container_through_the_host_port(chainhost, kind):
    """The same on IPv6 (a dual-stack bridge): hairpin masquerade for the /64; ::1 is never mapped."""
    host = chainhost
    host.sh("sysctl -qw net.ipv6.conf.all.forwarding=1; ip addr add 2001:db8::1/64 dev hveth-cl nodad")
    ipam = dict((k, v) for k, v in BRIDGE["ipam"].items() if k != "subnet")
    ipam.update(ranges=[[{"subnet": "10.31.0.0/24"}], [{"subnet": "fd31::/64"}]],
                routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    dual = dict(BRIDGE, ipam=ipam)
    results = {}
    for container, ports in (("c1", [(8080, 80)]), ("c2", [])):
        code, prev = call(host, os.path.join(CNI_PATH, "bridge"), "ADD", dual, container)
        assert code == 0, prev
        code, results[container] = call(host, PLUGINS[kind], "ADD", mapper_conf(kind, prev, ports), container)
        assert code == 0, results[container]
    host.settle()
    host.spawn(["socat", "TCP6-LISTEN:80,ipv6only=1,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"], netns="c1")
    answer = fetch(host, "[2001:db8::1]", 8080, netns="c2", attempts=30)
    assert answer and ipaddress.ip_address(answer.strip("[]")) == ipaddress.ip_address("fd31::1"), answer
    assert fetch(host, "[::1]", 8080) == ""
    for container, ports in (("c2", []), ("c1", [(8080, 80)])):
        assert call(host, PLUGINS[kind], "DEL", mapper_conf(kind, results[container], ports), container)[0] == 0
        assert call(host, os.path.join(CNI_PATH, "bridge"), "DEL", dual, container)[0] == 0
    assert "fd31::" not in ruleset(host)
