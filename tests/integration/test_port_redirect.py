# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.port_redirect: two containers on the host's one IP, each reached on its own ports.

Topology inside a hermetic host: the host's eth0 (10.1.0.1, MAC 02:00:00:00:01:01) is wired to a
client namespace (10.1.0.2); containers c1 and c2 each have an eth0 with the host's address and MAC,
wired to veth-c1 / veth-c2 in the host.
"""

import json
import os
import re
import textwrap

import pytest

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.hermetic import REPO
from harness.runner import run_module

MOD = "hostnet.isolation.port_redirect"
HOST_MAC = "02:00:00:00:01:01"


def _topology(host):
    host.sh("ip netns add client && ip link add eth0 address %s type veth peer name ceth netns client"
            " && ip addr add 10.1.0.1/24 dev eth0 && ip link set eth0 up"
            " && ip -n client addr add 10.1.0.2/24 dev ceth && ip -n client link set ceth up"
            " && ip -n client link set lo up" % HOST_MAC)
    for c in ("c1", "c2"):
        host.sh("ip netns add {c} && ip link add veth-{c} type veth peer name eth0 netns {c}"
                " && ip -n {c} link set eth0 address {mac} && ip -n {c} addr add 10.1.0.1/24 dev eth0"
                " && ip -n {c} link set eth0 up && ip -n {c} link set lo up && ip link set veth-{c} up"
                .format(c=c, mac=HOST_MAC))


def run_core(host, python, code):
    """Run ``code`` (which prints one JSON line last) inside ``host`` with the core importable as module_utils."""
    script = "import json, sys\nsys.path.insert(0, %r)\n" % os.path.join(REPO, "plugins") + textwrap.dedent(code)
    return json.loads(host.run([python, "-c", script]).stdout.strip().splitlines()[-1])


def _serve(host, netns, port, answer, proto="TCP"):
    host.spawn(["socat", "%s-LISTEN:%d,reuseaddr,fork" % (proto, port), "EXEC:echo %s" % answer], netns=netns)


def _ask(host, port, tries=30):
    """What the client gets from 10.1.0.1:port ('' when nothing answers)."""
    out = host.sh("for i in $(seq %d); do r=$(ip netns exec client socat -T1 - TCP:10.1.0.1:%d,connect-timeout=1"
                  " </dev/null 2>/dev/null) && [ -n \"$r\" ] && echo $r && exit 0; sleep 0.1; done; exit 0"
                  % (tries, port), check=False)
    return out.stdout.strip()


def test_two_containers_on_one_ip_each_get_their_ranges(host, python):
    _topology(host)
    c1 = assert_converges(host, MOD, {"veth": "veth-c1", "ports": "8000-8063", "devices": ["eth0"]}, python)
    assert c1["redirects"]["eth0"]["ports"] == {"tcp": "8000-8063", "udp": "8000-8063"}
    # 9000-9099 is not aligned: it takes several blocks, still read back as the one range
    c2 = assert_converges(host, MOD, {"veth": "veth-c2", "ports": "9000-9099", "devices": ["eth0"]}, python)
    assert c2["redirects"]["eth0"]["ports"]["tcp"] == "9000-9099"
    assert len([t for t in c2["changes"] if t.startswith("redirect tcp")]) == 5  # 9000-7,8-15,16-31,32-63,64-99..
    for netns, answer in (("c1", "c1"), ("c2", "c2")):
        for port in (8010, 9050, 8500):
            _serve(host, netns, port, answer)
    _serve(host, None, 8500, "host")
    assert _ask(host, 8010) == "c1"
    assert _ask(host, 9050) == "c2"
    # outside every range: the host answers, neither container sees it
    assert _ask(host, 8500) == "host"
    # ICMP: the host still answers ping on the shared address, and a container's own ping gets its
    # echo reply through the ICMP mirror (as its TCP replies above needed ARP through the ARP mirror)
    host.sh("ip netns exec client ping -c1 -W2 10.1.0.1 >/dev/null")
    host.sh("ip netns exec c2 ping -c1 -W2 10.1.0.2 >/dev/null")


def test_changing_ranges_moves_the_traffic_and_absent_removes_it(host, python):
    _topology(host)
    run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    _serve(host, "c1", 8100, "c1")
    _serve(host, None, 8100, "host")
    assert _ask(host, 8100) == "host"
    result = assert_converges(host, MOD, {"veth": "veth-c1", "ports": "8000-8127"}, python)
    assert result["diff"]["before"]["eth0"]["ports"]["tcp"] == "8000-8063"
    assert result["diff"]["after"]["eth0"]["ports"]["tcp"] == "8000-8127"
    assert _ask(host, 8100) == "c1"
    assert_converges(host, MOD, {"veth": "veth-c1", "state": "absent"}, python)
    assert _ask(host, 8100) == "host"
    assert "mirred" not in host.sh("tc filter show dev eth0 ingress").stdout


def test_filters_of_a_vanished_container_are_removed(host, python):
    _topology(host)
    run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    run_module(host, MOD, {"veth": "veth-c2", "ports": "9000-9063"}, python)
    host.sh("ip netns del c2")  # the container dies; its veth goes with it
    result = run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    assert result["changed"] and any("stale" in c for c in result["changes"]), result["changes"]
    assert "9000" not in str(result)
    assert run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)["changed"] is False


BAD = [
    ({"veth": "veth-c2", "ports": "8010-8020"}, "ports", "already redirected to veth-c1 on eth0"),
    ({"veth": "veth-c2", "ports": "9000-8000"}, "ports", None),
    ({"veth": "veth-c2", "ports": "0-10"}, "ports", "not a port"),
    ({"veth": "veth-c2", "ports": "70000"}, "ports", "not a port"),
    ({"veth": "veth-c2", "ports": "http"}, "ports", None),
    ({"veth": "veth-c2"}, "ports", None),
    ({"veth": "veth-nope", "ports": "9000"}, "veth", "no device veth-nope"),
    ({"veth": "veth-c2", "ports": "9000", "devices": ["eth9"]}, "devices[0]", "no device eth9"),
    ({"veth": "veth-c2", "ports": "9000", "protocols": ["sctp"]}, "protocols", None),
    ({"veth": "veth-c2", "ports": "9000", "address": "fd00::1"}, "address", "not IPv4"),
    ({"veth": "veth-c2", "ports": "9000", "netns": "nope"}, "netns", "does not exist"),
    ({"veth": "eth0", "ports": "9000"}, "veth", "also one of devices"),
]


@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field, reason):
    _topology(host)
    run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    assert_rejected(host, MOD, args, python, field, reason)


_CONVERGE = """
from module_utils import contract, port_redirect as portredirect
planned = contract.Planned()
for path in %(namespaces)r:
    planned.add_netns(path)
for ifname in %(devices)r:
    planned.add_device(None, ifname)
spec = portredirect.spec(%(params)r, planned=planned)
result = portredirect.converge(spec, check_mode=%(check)r, planned=planned)
print(json.dumps(result))
"""


@pytest.mark.parametrize("where", ["veth", "namespace"])
def test_check_mode_plans_what_the_run_creates_as_the_real_run_then_does(host, python, where):
    """A veth the run creates (next to a container that has redirects), or a whole namespace it creates:
    check mode plans against a new device (no ingress qdisc, no filters) and says what the real run does."""
    _topology(host)
    run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    if where == "veth":
        params, namespaces, devices = {"veth": "veth-c3", "ports": "9000-9099", "devices": ["eth0"]}, [], ["veth-c3"]
        create = "ip netns add c3 && ip link add veth-c3 type veth peer name eth0 netns c3 && ip link set veth-c3 up"
    else:
        params = {"veth": "veth-c3", "ports": "9000-9099", "devices": ["up0", "up1"], "netns": "edge"}
        namespaces, devices = ["/var/run/netns/edge"], []  # netns_dir's default
        create = ("ip netns add edge && ip -n edge link add up0 type veth peer name up1"
                  " && ip -n edge link add veth-c3 type veth peer name c3")
    before = host.snapshot()
    predicted = run_core(host, python, _CONVERGE % dict(params=params, namespaces=namespaces, devices=devices,
                                                        check=True))
    assert_same(before, host.snapshot(), "check mode")
    assert predicted["changed"] and any(c.startswith("add ingress qdisc on veth-c3") for c in predicted["changes"])
    host.sh(create)
    applied = run_core(host, python, _CONVERGE % dict(params=params, namespaces=[], devices=[], check=False))
    assert applied["changes"] == predicted["changes"]
    assert applied["diff"] == predicted["diff"] and applied["redirects"] == predicted["redirects"]
    again = run_core(host, python, _CONVERGE % dict(params=params, namespaces=[], devices=[], check=False))
    assert again["changed"] is False


def test_a_unit_that_fails_later_undoes_the_redirects(host, python):
    """Inside transaction.unit, the part lands; a later failure in the unit puts every filter back."""
    _topology(host)
    run_module(host, MOD, {"veth": "veth-c1", "ports": "8000-8063"}, python)
    before = host.snapshot()
    out = run_core(host, python, """
        from module_utils import port_redirect as portredirect, transaction
        from module_utils.errors import ApplyError
        try:
            with transaction.unit("redirects[1]"):
                result = portredirect.converge(portredirect.spec({"veth": "veth-c2", "ports": "9000-9099"}))
                raise RuntimeError("a later part failed")
        except ApplyError as exc:
            print(json.dumps({"changes": result["changes"], "error": str(exc)}))
        """)
    assert "mirror ARP arriving on eth0 to veth-c1, veth-c2" in out["changes"], out["changes"]
    assert out["error"].startswith("redirects[1]: a later part failed; rolled back everything"), out["error"]
    # the filters put back are the same filters; the kernel numbers their hash tables and actions anew
    assert_same(_renumbered(before), _renumbered(host.snapshot()), "the unit that was rolled back")


def _renumbered(snapshot):
    """``snapshot`` without the numbers the kernel picks for u32 hash tables and action instances."""
    def plain(text):
        return re.sub(r"index \d+ ref", "index N ref", re.sub(r"\b(fh|ht) [0-9a-f]+", r"\1 N", text))
    snapshot["host"]["tc"] = plain(snapshot["host"]["tc"])
    for view in snapshot["netns"].values():
        view["tc"] = plain(view["tc"])
    return snapshot
