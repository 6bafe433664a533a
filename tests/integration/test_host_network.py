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


def test_check_mode_on_a_fresh_host_reports_the_work_and_changes_nothing(box):
    before = box.snapshot()
    rc, stats, results = converge(box, POLICY, check=True, diff=True)
    assert rc == 0, failures(results)
    assert_same(before, box.snapshot(), "host after a check-mode run")
    changed = sorted(set(r["_task"].split(" : ")[-1] for r in results if r.get("changed")))
    assert "Network namespaces" in changed and "Record what the role owns now" in changed
    (waiting,) = [r for r in results if "Check mode - what would be set up" in r["_task"]]
    report = "\n".join(waiting["msg"])
    assert "veth veth-web <-> eth0: would be created once namespace web exists" in report
    assert "qdisc htb on veth-web" in report and "redirect of 31016-31031 to veth-api" in report
    assert "ephemeral ports of web" in report and "port mapper hn-test" in report


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
     "host_network_policy.port_mappers[0].mappings[0].host_port: 31020 lie in the range of task 'api'"),
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


def test_what_a_failed_run_created_is_removed_by_a_later_run(box):
    """The record lists what a run is about to own before it creates anything (issue #17)."""
    failing = copy.deepcopy(POLICY)
    failing["namespaces"].append({"name": "extra"})
    failing["veths"].append({"name": "veth-extra", "peer": "eth0", "peer_netns": "extra", "master": "no-such-br"})
    rc, _stats, results = converge(box, failing)
    assert rc != 0
    assert [r["_task"].split(" : ")[-1] for r in results if r.get("failed")] == ["Veth pairs"], failures(results)
    assert "extra" in box.sh("ip netns list").stdout.split()     # created before the veth step failed
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
    assert "host_network_record: /run/hostnet/host_network.json is not a record this role can read" in message
    assert "Nothing was changed" in message and "move the file away" in message, message
    assert_same(before, box.snapshot(), "a run with a damaged record")
    box.sh("rm /run/hostnet/host_network.json")  # the way out the message names
    rc, _stats, results = converge(box, smaller)
    assert rc == 0, failures(results)
    # what the damaged record listed stays: the port mapper network is not removed on its word
    assert "hostnet-pm-hn-test" in box.sh("nft list tables").stdout
