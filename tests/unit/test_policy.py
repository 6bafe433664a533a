# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host network policy check: each bad policy fails naming the host and the field."""

import copy
import glob
import os

import pytest
import yaml

from module_utils import policy
from module_utils.policy import PolicyError

REPO = os.path.join(os.path.dirname(__file__), "..", "..")

GOOD = {
    "agent_ports": "31000-32000",
    "tasks": [
        {"name": "web", "ports": "31000-31015", "cgroup": "hostnet-tasks/web"},
        {"name": "api", "ports": "31016-31031", "systemd_unit": "api.service"},
        {"name": "batch", "ports": [31100, "31200-31201"]},
    ],
    "namespaces": [{"name": "web", "symlinks": ["/var/run/mesos/netns/web"]}, {"name": "api"}],
    "veths": [
        {"name": "veth-web", "peer": "eth0", "peer_netns": "web", "addresses": ["10.1.0.1/30"],
         "peer_addresses": ["10.1.0.2/30"], "peer_gateway": "10.1.0.1"},
        {"name": "veth-api", "peer": "eth0", "peer_netns": "api"},
    ],
    "qdiscs": [
        {"device": "veth-web", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"},
        {"device": "eth0", "netns": "web", "kind": "tbf", "rate": "20mbit"},
        {"device": "veth-web", "kind": "ingress"},
    ],
    "redirects": [{"veth": "veth-api", "task": "api", "devices": ["eth0"]}],
    "ephemeral_ports": [{"container": "web", "netns": "web", "size": 1024},
                        {"container": "api", "netns": "api", "range": "40960-41983"}],
    "port_mappers": [{"network": "sandbox", "mappings": [
        {"task": "web", "container_id": "web", "container_ip": "10.1.0.2", "host_port": 31000, "container_port": 80},
        {"container_id": "x", "container_ip": "10.1.0.6", "host_port": "31500-31501", "container_port": "80-81"},
    ]}],
    "watcher": {"mode": "enforce", "watch_interval": 5},
}


def bad(mutate):
    p = copy.deepcopy(GOOD)
    mutate(p)
    return p


def setitem(path, value):
    def mutate(p):
        target = p
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def append(path, value):
    def mutate(p):
        target = p
        for key in path:
            target = target[key]
        target.append(value)
    return mutate


INVALID = [
    # (id, mutation, field named, words in the reason)
    ("not-a-mapping", lambda p: p.clear() or p.update({"x": 1}), "host_network_policy.x", "not a policy section"),
    ("bad-agent-range", setitem(["agent_ports"], "32000-31000"), "host_network_policy.agent_ports", "empty range"),
    ("task-without-name", append(["tasks"], {"ports": "31300"}), "host_network_policy.tasks[3].name", "required"),
    ("duplicate-task", append(["tasks"], {"name": "web", "ports": "31400"}), "host_network_policy.tasks[3].name",
     "already declared at host_network_policy.tasks[0]"),
    ("tasks-overlap", setitem(["tasks", 1, "ports"], "31010-31031"), "host_network_policy.tasks[1].ports",
     "31010-31015 overlap task 'web'"),
    ("task-outside-agent-range", setitem(["tasks", 2, "ports"], "30999-31001"), "host_network_policy.tasks[2].ports",
     "30999 lie outside the agent's range"),
    ("task-bad-ports", setitem(["tasks", 0, "ports"], "80-http"), "host_network_policy.tasks[0].ports", "not a port"),
    ("task-cgroup-and-unit", setitem(["tasks", 0, "systemd_unit"], "web.service"),
     "host_network_policy.tasks[0].systemd_unit", "not both"),
    ("task-cgroup-root", setitem(["tasks", 0, "cgroup"], "/./"), "host_network_policy.tasks[0].cgroup",
     "'/./' is the cgroup root"),
    ("task-cgroup-nul", setitem(["tasks", 0, "cgroup"], "web\0x"), "host_network_policy.tasks[0].cgroup", "control"),
    ("task-cgroup-dotdot", setitem(["tasks", 0, "cgroup"], "a/../../etc"), "host_network_policy.tasks[0].cgroup",
     "contains '..'"),
    ("task-cgroup-holds-another", setitem(["tasks", 2, "cgroup"], "hostnet-tasks"), "host_network_policy.tasks[2].cgroup",
     "'hostnet-tasks' contains the cgroup of task 'web' (host_network_policy.tasks[0])"),
    ("task-cgroup-twice", setitem(["tasks", 2, "cgroup"], "/hostnet-tasks/web/"), "host_network_policy.tasks[2].cgroup",
     "is also the cgroup of task 'web'"),
    ("task-unit-option", setitem(["tasks", 1, "systemd_unit"], "-H evil"), "host_network_policy.tasks[1].systemd_unit",
     "not a systemd unit name"),
    ("task-unknown-option", setitem(["tasks", 0, "port"], 31000), "host_network_policy.tasks[0].port",
     "not a task option"),
    ("mapping-in-other-task-range", setitem(["port_mappers", 0, "mappings", 0, "host_port"], 31020),
     "host_network_policy.port_mappers[0].mappings[0].host_port", "31020 lies in the range of task 'api'"),
    ("mapping-without-owner-in-task-range", setitem(["port_mappers", 0, "mappings", 1, "host_port"], "31100-31101"),
     "host_network_policy.port_mappers[0].mappings[1].host_port", "name the owner with task: batch"),
    ("mapping-outside-agent-range", setitem(["port_mappers", 0, "mappings", 1, "host_port"], "8080-8081"),
     "host_network_policy.port_mappers[0].mappings[1].host_port", "8080-8081 lie outside the agent's range"),
    ("mapping-twice", append(["port_mappers", 0, "mappings"], {
        "task": "web", "container_id": "y", "container_ip": "10.1.0.9", "host_port": 31000, "container_port": 81}),
     "host_network_policy.port_mappers[0].mappings[2].host_port", "tcp port 31000 (IPv4) is already mapped by host_network_policy.port_mappers[0].mappings[0]"),
    ("mapping-unknown-task", setitem(["port_mappers", 0, "mappings", 0, "task"], "wbe"),
     "host_network_policy.port_mappers[0].mappings[0].task", "task 'wbe' is not declared"),
    # what the host's port_mapper refuses is refused on the controller, before any host changes (issue #17)
    ("mapper-chain-with-quotes", setitem(["port_mappers", 0, "chain"], 'PM"; flush ruleset'),
     "host_network_policy.port_mappers[0].chain", "not a chain name"),
    ("mapper-device-with-quote", setitem(["port_mappers", 0, "exclude_devices"], ["eth0", "eth'1"]),
     "host_network_policy.port_mappers[0].exclude_devices[1]", "quotes"),
    ("mapping-ip-with-zone", setitem(["port_mappers", 0, "mappings", 0, "container_ip"], "fe80::1%0\nCOMMIT"),
     "host_network_policy.port_mappers[0].mappings[0].container_ip", "zone id"),
    ("mapping-bad-container-ip", setitem(["port_mappers", 0, "mappings", 0, "container_ip"], "10.246.0.300"),
     "host_network_policy.port_mappers[0].mappings[0].container_ip", "not an IPv4 or IPv6 address"),
    ("mapper-twice", append(["port_mappers"], {"network": "sandbox"}), "host_network_policy.port_mappers[1].network",
     "already declared"),
    ("veth-undeclared-namespace", setitem(["veths", 1, "peer_netns"], "apj"), "host_network_policy.veths[1].peer_netns",
     "namespace 'apj' is not declared in host_network_policy.namespaces"),
    ("veth-name-too-long", setitem(["veths", 0, "name"], "veth-web-frontend"), "host_network_policy.veths[0].name",
     "is 17 characters long; Linux allows at most 15"),
    ("duplicate-namespace", append(["namespaces"], {"name": "web"}), "host_network_policy.namespaces[2].name",
     "already declared"),
    ("two-root-qdiscs", append(["qdiscs"], {"device": "veth-web", "kind": "tbf", "rate": "1mbit"}),
     "host_network_policy.qdiscs[3].device", "already declared"),
    ("redirect-undeclared-veth", setitem(["redirects", 0, "veth"], "veth-db"), "host_network_policy.redirects[0].veth",
     "veth 'veth-db' is not declared"),
    ("redirect-not-its-task-ports", setitem(["redirects", 0, "ports"], "31016-31040"),
     "host_network_policy.redirects[0].ports", "31032-31040 are not ports of task 'api'"),
    ("redirect-without-ports", setitem(["redirects", 0, "task"], None), "host_network_policy.redirects[0].ports",
     "give ports, or the task"),
    ("redirects-overlap", append(["redirects"], {"veth": "veth-web", "ports": "31020-31021"}),
     "host_network_policy.redirects[1].ports", "31020-31021 are already redirected by host_network_policy.redirects[0]"),
    ("ephemeral-in-agent-range", setitem(["ephemeral_ports", 1, "range"], "31744-32767"),
     "host_network_policy.ephemeral_ports[1].range", "in the agent's range"),
    ("ephemeral-overlap", setitem(["ephemeral_ports", 0, "range"], "40960-41983"),
     "host_network_policy.ephemeral_ports[1].range", "overlaps host_network_policy.ephemeral_ports[0].range"),
    ("watcher-bad-mode", setitem(["watcher", "mode"], "kill"), "host_network_policy.watcher.mode",
     "'kill' is not one of audit, enforce, prevent"),
    ("watcher-unknown-option", setitem(["watcher", "interval"], 5), "host_network_policy.watcher.interval",
     "not a watcher option"),
    ("watcher-range-only-without-agent", lambda p: (p.pop("agent_ports"), p["watcher"].update(
        check_agent_port_range_only=True)), "host_network_policy.watcher.check_agent_port_range_only",
     "needs host_network_policy.agent_ports"),
    ("watcher-nothing-to-watch", lambda p: [t.pop("cgroup", None) or t.pop("systemd_unit", None)
                                            for t in p["tasks"]] and p["watcher"].update(enabled=True),
     "host_network_policy.watcher.enabled", "no task has a cgroup"),
    ("section-not-a-list", setitem(["veths"], {"name": "veth-web"}), "host_network_policy.veths", "must be a list"),
]


def test_the_good_policy_passes_and_is_normalised():
    out = policy.check("edge-1", copy.deepcopy(GOOD))
    assert [t["ports"] for t in out["tasks"]] == ["31000-31015", "31016-31031", "31100,31200-31201"]
    assert out["redirects"][0]["ports"] == "31016-31031"  # the task's ports
    assert out["watcher"] == {"enabled": True, "mode": "enforce", "watch_interval": 5}
    assert [t["name"] for t in out["watched_tasks"]] == ["web", "api"]
    assert out["agent_ports"] == "31000-32000"


@pytest.mark.parametrize("case", INVALID, ids=[case[0] for case in INVALID])
def test_an_invalid_policy_fails_naming_host_and_field(case):
    _id, mutate, field, words = case
    p = bad(mutate)
    before = copy.deepcopy(p)
    with pytest.raises(PolicyError) as err:
        policy.check("edge-7", p)
    message = str(err.value)
    assert message.startswith("host edge-7: invalid network policy")
    lines = [line.strip() for line in message.splitlines()[1:]]
    hits = [line for line in lines if line.startswith(field + ": ")]
    assert hits, "no problem names %s:\n%s" % (field, message)
    assert any(words in line for line in hits), "%r not in %s" % (words, hits)
    assert p == before  # the check never edits what it was given


def test_every_problem_is_reported_at_once():
    p = bad(lambda p: (p["tasks"][1].update(ports="31010-31020"), p["watcher"].update(mode="kill")))
    with pytest.raises(PolicyError) as err:
        policy.check("h", p)
    assert [problem[0] for problem in err.value.problems] == ["host_network_policy.tasks[1].ports", "host_network_policy.watcher.mode"]


def test_an_empty_policy_is_valid_and_owns_nothing():
    out = policy.check("h", None)
    assert out["watcher"]["enabled"] is False and out["watched_tasks"] == []
    assert all(v == [] for v in policy.owned(out).values())


def test_requirements_follow_the_policy():
    assert policy.requirements(GOOD) == sorted([
        "pyroute2", "qdisc_htb", "qdisc_pfifo", "qdisc_tbf", "qdisc_ingress", "cls_u32", "act_mirred",
        "sock_diag", "sock_diag_cgroup_id", "cgroup_v2"])
    assert "bpf_cgroup_bind" in policy.requirements(dict(GOOD, watcher={"mode": "prevent"}))
    assert policy.requirements({"port_mappers": [{"network": "n", "backend": "iptables"}]}) == [
        "iptables", "iptables_wait", "xt_comment"]
    assert policy.requirements({}) == []
    assert policy.requirements({"qdiscs": [{"device": "a", "kind": "cake"}, {"device": "b", "kind": "fq"}]}) == [
        "pyroute2", "qdisc_cake", "qdisc_fq"]


def test_each_requirement_names_the_first_field_that_needs_it():
    fields = policy.requirement_fields(GOOD)
    assert sorted(fields) == policy.requirements(GOOD)
    assert fields["qdisc_htb"] == "qdiscs[0].kind"
    assert fields["qdisc_pfifo"] == "qdiscs[0].leaf"
    assert fields["qdisc_tbf"] == "qdiscs[1].kind"
    assert fields["cls_u32"] == "redirects[0]"
    assert fields["pyroute2"] == "namespaces[0]"
    assert fields["sock_diag"] == "watcher"
    assert policy.requirement_fields(dict(GOOD, watcher={"mode": "prevent"}))["bpf_cgroup_bind"] == "watcher.mode"
    mappers = {"port_mappers": [{"network": "a"}, {"network": "b", "backend": "nftables"}]}
    assert policy.requirement_fields(mappers) == {"nftables": "port_mappers[1].backend"}


def test_the_watcher_config_takes_what_the_policy_decides():
    from module_utils import host_network
    plan = policy.check("h", copy.deepcopy(GOOD))
    base = {"mode": "audit", "policy_dir": "/etc/w.d", "event_log": "/var/log/w/e.jsonl", "watch_interval": 30,
            "isolated_port_range": "40000-40010"}
    config = host_network.watcher_config(plan, base)
    assert config == {"mode": "enforce", "watch_interval": 5, "include_udp": False,
                      "check_agent_port_range_only": False, "metrics_listen": "127.0.0.1:9613",
                      "agent_port_range": "31000-32000", "policy_dir": "/etc/w.d",
                      "event_log": "/var/log/w/e.jsonl"}  # no isolated range in the policy: none in the config
    plan = policy.check("h", dict(copy.deepcopy(GOOD), agent_ports=None,
                                  watcher={"isolated_port_range": "45000-45100", "include_udp": True}))
    config = host_network.watcher_config(plan)
    assert config["agent_port_range"] == "31000-32000" and config["mode"] == "audit"
    assert config["isolated_port_range"] == "45000-45100" and config["include_udp"] is True


def test_removed_lists_only_what_the_new_policy_drops_and_not_what_goes_with_it():
    old = policy.owned(policy.check("h", copy.deepcopy(GOOD)))
    new = copy.deepcopy(GOOD)
    new["namespaces"] = [{"name": "web"}]            # api's namespace goes ...
    new["veths"] = [new["veths"][0]]                   # ... with veth-api (host end in the root ns: removed)
    new["redirects"] = []
    new["ephemeral_ports"] = [new["ephemeral_ports"][0]]
    new["qdiscs"] = [new["qdiscs"][0]]                 # eth0 in web, and veth-web's ingress, go
    new["port_mappers"] = []
    gone = policy.removed(old, policy.owned(policy.check("h", new)))
    assert [n["name"] for n in gone["namespaces"]] == ["api"]
    assert [v["name"] for v in gone["veths"]] == ["veth-api"]
    assert [r["veth"] for r in gone["redirects"]] == ["veth-api"]
    assert [e["container"] for e in gone["ephemeral_ports"]] == ["api"]
    assert [(q.get("netns", ""), q["device"], q["kind"]) for q in gone["qdiscs"]] == [
        ("", "veth-web", "ingress"), ("web", "eth0", "root")]
    assert [m["network"] for m in gone["port_mappers"]] == ["sandbox"]
    assert all(v == [] for v in policy.removed(old, old).values())


def test_a_qdisc_goes_with_its_removed_veth_or_namespace():
    old = policy.owned(policy.check("h", copy.deepcopy(GOOD)))
    gone = policy.removed(old, policy.owned(policy.check("h", {})))
    assert gone["qdiscs"] == []  # veth-web goes, and web's eth0 with the namespace
    assert [v["name"] for v in gone["veths"]] == ["veth-api", "veth-web"]


SHIPPED = sorted(glob.glob(os.path.join(REPO, "inventories", "*", "host_vars", "*.yml"))
                 + glob.glob(os.path.join(REPO, "inventories", "*", "group_vars", "*.yml")))


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.relpath(p, REPO) for p in SHIPPED])
def test_the_shipped_inventories_pass_the_check(path):
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if "host_network_policy" not in data:
        pytest.skip("no host_network_policy in %s" % os.path.basename(path))
    policy.check(os.path.basename(path)[:-4], data["host_network_policy"])


def test_a_fault_two_checks_find_is_named_once_and_a_range_of_ports_lie():
    tasks = [{"name": "web", "ports": "31000-31009"}, {"name": "api", "ports": "31010-31019"}]
    raw = {"agent_ports": "31000-32000", "tasks": tasks,
           "port_mappers": [{"network": "n", "mappings": [
               {"task": "web", "container_ip": "10.0.0.2", "host_port": 31001, "container_port": 80},
               {"task": "web", "container_id": "c", "container_ip": "10.0.0.2", "host_port": "31011-31012",
                "container_port": "80-81"}]}]}
    with pytest.raises(policy.PolicyError) as err:
        policy.check("h1", raw)
    problems = [list(p) for p in err.value.problems]
    assert problems.count(["host_network_policy.port_mappers[0].mappings[0].container_id",
                           "is required (a non-empty string)"]) == 1
    assert any(field.endswith("mappings[1].host_port") and reason.startswith("31011-31012 lie in the range")
               for field, reason in problems), problems
