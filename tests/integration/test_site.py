# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml over two hermetic hosts (nsenter connection): preflight and batches.

The policies watch no task, so no systemd is needed (molecule/fleet runs the whole thing).
"""

import json
import os
import subprocess

import pytest
import yaml

from harness.assertions import assert_same
from harness.hermetic import REPO
from harness.runner import ansible_env

SITE = os.path.join(REPO, "playbooks", "site.yml")


def policy(n):
    return {"namespaces": [{"name": "app"}],
            "veths": [{"name": "veth-app", "peer": "eth0", "peer_netns": "app",
                       "addresses": ["10.90.%d.1/30" % n], "peer_addresses": ["10.90.%d.2/30" % n]}]}


def site(tmp_path, hosts, policies, extra=None):
    inventory = {"all": {"hosts": dict(
        (h.name, {"ansible_connection": "community.docker.nsenter", "ansible_nsenter_pid": h.pid,
                  "ansible_python_interpreter": "/usr/bin/python3", "host_network_policy": p})
        for h, p in zip(hosts, policies))}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", str(path), SITE,
            "-e", json.dumps(extra or {})]
    proc = subprocess.run(argv, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    data = json.loads(proc.stdout)
    return proc.returncode, data["stats"], data


def messages(data):
    out = []
    for play in data["plays"]:
        for task in play["tasks"]:
            for name, result in task["hosts"].items():
                if result.get("failed"):
                    out.append("%s %s: %s" % (name, task["task"]["name"], result.get("msg")))
                    # a loop's items (the preflight checks every host's policy in one loop)
                    out.extend("%s %s [%s]: %s" % (name, task["task"]["name"], item.get("item"), item.get("msg"))
                               for item in result.get("results") or [] if item.get("failed"))
    return out


@pytest.fixture
def two(request):
    from harness.hermetic import HermeticHost
    hosts = [HermeticHost("hn-site-%s-%d" % (os.environ.get("PYTEST_XDIST_WORKER", "gw"), i)).start()
             for i in range(2)]
    try:
        yield hosts
    finally:
        for h in hosts:
            h.stop()


def test_two_hosts_converge_in_batches_then_nothing_changes(tmp_path, two):
    rc, stats, data = site(tmp_path, two, [policy(1), policy(2)], {"hostnet_serial": 1})
    assert rc == 0, messages(data)
    assert all(stats[h.name]["changed"] > 0 for h in two)
    assert [len(p["tasks"]) for p in data["plays"] if p["play"]["name"].startswith("Roll out")] == [
        len(data["plays"][1]["tasks"])] * 2  # one rollout play per batch of one
    assert "10.90.2.2/30" in two[1].sh("ip -n app -br addr").stdout
    rc, stats, data = site(tmp_path, two, [policy(1), policy(2)], {"hostnet_serial": 1})
    assert rc == 0 and all(stats[h.name]["changed"] == 0 for h in two), stats


def test_a_bad_policy_on_one_host_stops_the_run_before_any_host_changes(tmp_path, two):
    bad = policy(2)
    bad["veths"][0]["peer_netns"] = "nope"
    before = [h.snapshot() for h in two]
    rc, _stats, data = site(tmp_path, two, [policy(1), bad])
    assert rc != 0
    text = "\n".join(messages(data))
    assert "host %s: invalid network policy" % two[1].name in text
    assert "host_network_policy.veths[0].peer_netns: namespace 'nope' is not declared" in text
    for h, snap in zip(two, before):
        assert_same(snap, h.snapshot(), "%s after a refused fleet policy" % h.name)


def test_a_host_failing_in_its_batch_leaves_later_batches_untouched(tmp_path, two):
    failing = policy(1)
    failing["veths"][0]["master"] = "no-such-br"  # passes every check, fails when applied
    later = two[1].snapshot()
    rc, stats, data = site(tmp_path, two, [failing, policy(2)], {"hostnet_serial": 1})
    assert rc != 0
    assert messages(data) == [
        "%s hostnet.isolation.host_network : Converge the host to its network policy: host_network_policy.veths[0]"
        ".master: no device no-such-br in namespace (current); rolled back everything this run had applied"
        % two[0].name]
    assert stats[two[0].name]["failures"] == 1
    assert_same(later, two[1].snapshot(), "the host of the later batch")


def test_every_bad_policy_of_the_fleet_is_named_in_one_run(tmp_path, two):
    """The preflight checks every host's policy (one loop on the controller), not only the first bad one."""
    bad = [policy(1), policy(2)]
    bad[0]["veths"][0]["mtu"] = 70000
    bad[1]["veths"][0]["name"] = "veth:app"
    before = [h.snapshot() for h in two]
    rc, _stats, data = site(tmp_path, two, bad)
    assert rc != 0
    text = "\n".join(messages(data))
    assert "host %s: invalid network policy" % two[0].name in text and "veths[0].mtu" in text, text
    assert "host %s: invalid network policy" % two[1].name in text and "veths[0].name" in text, text
    assert not any(p["play"]["name"].startswith("Roll out") and p["tasks"] for p in data["plays"]), "rollout ran"
    for h, snap in zip(two, before):
        assert_same(snap, h.snapshot(), "%s after a refused fleet" % h.name)
