# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host_network role in a hermetic host: converge, idempotence, check mode, removal, bad input.

These policies watch no task (the watcher needs systemd: the molecule `fleet` scenario covers it).
"""

import copy

import pytest

from harness.assertions import assert_same
from harness.runner import INTERPRETERS, run_playbook

PYTHON = INTERPRETERS["os-pyroute2-0.7"]
ROLE = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: hostnet.isolation.host_network
"""

POLICY = {
    "agent_ports": "31000-32000",
    "tasks": [{"name": "web", "ports": "31000-31015"}, {"name": "api", "ports": "31016-31031"}],
    "namespaces": [{"name": "web", "symlinks": ["/run/mesos/netns/web"]}, {"name": "api"}],
    "veths": [
        {"name": "veth-web", "peer": "eth0", "peer_netns": "web", "addresses": ["10.77.0.1/30"],
         "peer_addresses": ["10.77.0.2/30"], "peer_gateway": "10.77.0.1"},
        {"name": "veth-api", "peer": "eth0", "peer_netns": "api", "addresses": ["10.77.0.5/30"],
         "peer_addresses": ["10.77.0.6/30"], "peer_gateway": "10.77.0.5"},
    ],
    "qdiscs": [
        {"device": "veth-web", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"},
        {"device": "eth0", "netns": "api", "kind": "tbf", "rate": "20mbit"},
    ],
    "redirects": [{"veth": "veth-api", "task": "api", "devices": ["hn-up"]}],
    "ephemeral_ports": [{"container": "web", "netns": "web", "size": 1024}],
    "port_mappers": [{"network": "hn-test", "backend": "nftables", "localhost": True, "mappings": [
        {"task": "web", "container_id": "web", "container_ip": "10.77.0.2", "host_port": 31000,
         "container_port": 80}]}],
}


def converge(host, policy, check=False, diff=False):
    rc, stats, results = run_playbook(host, ROLE, PYTHON, {"host_network_policy": policy}, check=check, diff=diff)
    return rc, stats.get("localhost", {}), results


def failures(results):
    return ["%s: %s" % (r["_task"], r.get("msg")) for r in results if r.get("failed")]


@pytest.fixture
def box(host):
    host.sh("ip link add hn-up type veth peer name hn-up-far && ip link set hn-up up && ip link set hn-up-far up")  # the device the redirect hangs off
    # the kernel gives both ends their link-local address (and its local route) once the carrier is up, which
    # a loaded machine takes its time over: wait, so a snapshot taken now does not see them appear later
    host.sh("for i in $(seq 100); do n=$(ip -6 -o addr show scope link -tentative | grep -c 'hn-up'); "
            "[ \"$n\" -ge 2 ] && break; sleep 0.1; done")
    return host


def test_converge_then_nothing_changes_and_traffic_reaches_the_mapped_task(box):
    rc, stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)
    assert stats["changed"] > 0
    snap = box.snapshot()
    assert box.sh("ip netns list | cut -d' ' -f1 | sort").stdout.split() == ["api", "web"]
    assert box.sh("readlink /run/mesos/netns/web").stdout.strip().endswith("/web")
    tc = box.sh("tc qdisc show dev veth-web; ip netns exec api tc qdisc show dev eth0; "
                "tc filter show dev hn-up ingress").stdout
    assert "htb 1:" in tc and "tbf" in tc and "mirred" in tc
    assert box.sh("ip netns exec web cat /proc/sys/net/ipv4/ip_local_port_range").stdout.split() != ["32768", "60999"]
    # real traffic: a listener in web's namespace answers on the mapped host port
    box.spawn(["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello-web"], netns="web")
    out = box.sh("for i in $(seq 50); do r=$(socat -T2 - TCP:127.0.0.1:31000 </dev/null 2>/dev/null) && "
                 "[ -n \"$r\" ] && echo $r && break; sleep 0.1; done").stdout
    assert out.strip() == "hello-web"
    # the second run changes nothing, and neither does a check-mode run
    rc, stats, results = converge(box, POLICY)
    assert rc == 0 and stats["changed"] == 0, [r["_task"] for r in results if r.get("changed")]
    rc, stats, _results = converge(box, POLICY, check=True)
    assert rc == 0 and stats["changed"] == 0
    assert_same(snap, box.snapshot(), "host after the no-op runs")


def module_result(results):
    (result,) = [r for r in results if r["_task"].endswith("Converge the host to its network policy")]
    return result


def test_check_mode_on_a_fresh_host_says_exactly_what_the_real_run_then_does(box):
    """Objects inside the namespaces and on the devices the run creates are planned too (issue #15)."""
    before = box.snapshot()
    rc, stats, results = converge(box, POLICY, check=True, diff=True)
    assert rc == 0, failures(results)
    assert_same(before, box.snapshot(), "host after a check-mode run")
    predicted = module_result(results)["changes"]
    assert any(c.startswith("qdisc (veth-web): ") for c in predicted), predicted
    assert any(c.startswith("port_redirect (veth-api): ") for c in predicted), predicted
    assert any(c.startswith("ephemeral_ports (web): ") for c in predicted), predicted
    rc, stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)
    assert module_result(results)["changes"] == predicted


def test_a_failure_in_a_late_part_leaves_the_host_as_it_was(box):
    """A redirect from a device that is not there fails after namespaces, veths and qdiscs were made:
    all of them are undone, and the error names the policy field (issue #15: no half-converged host)."""
    failing = copy.deepcopy(POLICY)
    failing["redirects"][0]["devices"] = ["hn-not-here"]
    before = box.snapshot()
    rc, _stats, results = converge(box, failing)
    assert rc != 0
    message = " ".join(failures(results))
    assert "host_network_policy.redirects[0]" in message, message
    assert_same(before, box.snapshot(), "host after a run that failed in its redirect step")
    assert box.sh("ip netns list").stdout.split() == []
    rc, _stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)


def test_what_the_policy_drops_is_removed(box):
    rc, _stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)
    smaller = copy.deepcopy(POLICY)
    smaller["namespaces"] = [smaller["namespaces"][0]]       # api goes, with its veth and redirect
    smaller["veths"] = [smaller["veths"][0]]
    smaller["redirects"] = []
    smaller["qdiscs"] = []                                    # veth-web's htb goes
    smaller["ephemeral_ports"] = []
    smaller["port_mappers"] = []
    rc, stats, results = converge(box, smaller)
    assert rc == 0, failures(results)
    view = box.sh("ip netns list; tc qdisc show dev veth-web; ip link show veth-api 2>&1; "
                  "tc filter show dev hn-up ingress; nft list tables; cat /run/hostnet/ephemeral-ports.json").stdout
    assert "api" not in box.sh("ip netns list").stdout and "web" in view
    assert "htb" not in view and "does not exist" in view and "mirred" not in view
    assert "hn-test" not in view and '"web"' not in view.split("tables")[-1]
    rc, stats, _results = converge(box, smaller)
    assert rc == 0 and stats["changed"] == 0


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p["tasks"][1].update(ports="31010-31020"),
     "host localhost: invalid network policy (1 problem):\n  host_network_policy.tasks[1].ports: 31010-31015 overlap"),
    (lambda p: p["port_mappers"][0]["mappings"][0].update(host_port=31020),
     "host_network_policy.port_mappers[0].mappings[0].host_port: 31020 lies in the range of task 'api'"),
    (lambda p: p["veths"][0].update(colour="red"), "host_network_policy.veths.colour"),  # the argument spec
])
def test_a_bad_policy_fails_before_the_host_changes(box, mutate, field):
    policy = copy.deepcopy(POLICY)
    mutate(policy)
    before = box.snapshot()
    rc, _stats, results = converge(box, policy)
    assert rc != 0
    failed = [r for r in results if r.get("failed")]
    assert [r["_host"] for r in failed] == ["localhost"], failures(results)   # the run names the host
    message = " ".join(failures(results))
    assert field in message, message
    assert_same(before, box.snapshot(), "host after a refused policy")


def test_a_failed_run_leaves_nothing_and_a_later_run_converges(box):
    """The veth step fails after the namespaces were created: they are removed again (issue #15)."""
    failing = copy.deepcopy(POLICY)
    failing["namespaces"].append({"name": "extra"})
    failing["veths"].append({"name": "veth-extra", "peer": "eth0", "peer_netns": "extra", "master": "no-such-br"})
    before = box.snapshot()
    rc, _stats, results = converge(box, failing)
    assert rc != 0
    assert [r["_task"].split(" : ")[-1] for r in results if r.get("failed")] == [
        "Converge the host to its network policy"], failures(results)
    assert "host_network_policy.veths[2].master" in " ".join(failures(results))
    assert_same(before, box.snapshot(), "host after a run whose veth step failed")
    rc, _stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)
    assert box.sh("ip netns list | cut -d' ' -f1 | sort").stdout.split() == ["api", "web"]
    assert box.sh("stat -c %a /run/hostnet/host_network.json /run/hostnet").stdout.split() == ["600", "700"]
    rc, stats, _results = converge(box, POLICY)
    assert rc == 0 and stats["changed"] == 0


@pytest.mark.parametrize("damage", ["truncate -s 40", "truncate -s 0", "echo '[1, 2]' >"])
def test_a_damaged_record_stops_the_run_naming_it_and_moving_it_away_recovers(box, damage):
    rc, _stats, results = converge(box, POLICY)
    assert rc == 0, failures(results)
    box.sh("%s /run/hostnet/host_network.json" % damage)
    smaller = copy.deepcopy(POLICY)
    smaller["port_mappers"] = []
    before = box.snapshot()
    rc, _stats, results = converge(box, smaller)
    assert rc != 0
    message = " ".join(failures(results))
    assert "record: /run/hostnet/host_network.json is not a record this module can read" in message
    assert "Nothing was changed" in message and "move the file away" in message, message
    assert_same(before, box.snapshot(), "a run with a damaged record")
    box.sh("rm /run/hostnet/host_network.json")  # the way out the message names
    rc, _stats, results = converge(box, smaller)
    assert rc == 0, failures(results)
    # what the damaged record listed stays: the port mapper network is not removed on its word
    assert "hostnet-pm-hn-test" in box.sh("nft list tables").stdout


# No /usr/sbin in the module's PATH: no nft or iptables command, so the host lacks what the policy's
# nftables port mapper needs (the probe looks for `nft`), the same on every kernel.
NO_SBIN = """
- hosts: localhost
  gather_facts: false
  environment:
    PATH: /usr/bin:/bin
  roles:
    - role: hostnet.isolation.host_network
"""


@pytest.mark.parametrize("extra, field, missing", [
    ({}, "host_network_policy.port_mappers[0].backend", ["nftables"]),
    ({"host_network_required_capabilities": ["xt_comment"]}, "require[0]", ["xt_comment"]),
], ids=["policy-implied", "required"])
def test_a_host_without_a_capability_it_needs_is_refused_unchanged(box, extra, field, missing):
    """The module probes what the policy needs (and host_network_required_capabilities) before it
    changes anything, in check mode too: the error names the field and what the probe found."""
    policy = copy.deepcopy(POLICY)
    if extra:
        policy["port_mappers"] = []  # only the required name is missing then
    before = box.snapshot()
    for check in (True, False):
        rc, _stats, results = run_playbook(box, NO_SBIN, PYTHON, dict(extra, host_network_policy=policy), check=check)
        assert rc != 0
        result = module_result(results)
        assert result["missing"] == missing, result
        assert result["field"] == field, result
        assert "this host lacks what the policy needs, so nothing was changed" in result["msg"]
        assert "needs %s (" % missing[0] in result["msg"]
        assert ("no nft command in PATH" if missing == ["nftables"] else "no iptables command in PATH") in result["msg"]
        assert_same(before, box.snapshot(), "host after a run refused for a missing capability (check=%s)" % check)
    # the same run where the host has it (the machine's PATH)
    rc, _stats, results = run_playbook(box, ROLE, PYTHON, dict(extra, host_network_policy=policy))
    assert rc == 0, failures(results)
    assert missing[0] in module_result(results)["capabilities"]


def test_an_unknown_required_capability_is_refused_naming_it(box):
    before = box.snapshot()
    rc, _stats, results = run_playbook(box, ROLE, PYTHON, {"host_network_policy": POLICY,
                                                           "host_network_required_capabilities": ["warp_drive"]})
    assert rc != 0
    result = module_result(results)
    assert result["field"] == "require[0]"
    assert "unknown capability 'warp_drive'" in result["msg"]
    assert_same(before, box.snapshot(), "host after a run with an unknown required capability")
