# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.qdisc in a hermetic host: rate limits hold under real bulk TCP traffic."""

import itertools
import json
import os

import pytest

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.hermetic import REPO
from harness.runner import run_module

MOD = "hostnet.isolation.qdisc"
_PORTS = itertools.count(5301)


def _pair(host):
    """Namespaces a and b joined by va (in a, 10.7.0.1) and vb (in b, 10.7.0.2)."""
    host.sh("ip netns add a && ip netns add b && ip link add va netns a type veth peer name vb netns b"
            " && ip -n a addr add 10.7.0.1/24 dev va && ip -n b addr add 10.7.0.2/24 dev vb"
            " && ip -n a link set va up && ip -n b link set vb up && ip -n a link set lo up")


def _qdiscs(host, netns="a", dev="va"):
    return json.loads(host.sh("tc -n %s -j qdisc show dev %s" % (netns, dev)).stdout)


def _iperf(host, seconds=3):
    """Bulk TCP from a to b; returns the receiver's goodput in bits per second."""
    # a port of its own per run: the previous one-off server may not have let go of its port yet
    port = next(_PORTS)
    host.spawn(["iperf3", "-s", "-1", "-B", "10.7.0.2", "-p", str(port)], netns="b")
    # (the first second is left out of the figure: TCP's slow start and the htb's initial burst)
    omit = "-O 1" if seconds > 1 else ""
    # wait until the server listens, then retry the client while it reports an error (iperf3 -J can
    # exit 0 with a JSON "error" when the server is not ready yet)
    script = ("for i in $(seq 100); do ip netns exec b ss -tln | grep -q ':%d ' && break; sleep 0.05; done;"
              " for i in $(seq 50); do out=$(ip netns exec a iperf3 -c 10.7.0.2 -p %d -t %d %s -J 2>/dev/null);"
              " if [ -n \"$out\" ] && ! echo \"$out\" | grep -q '\"error\"'; then echo \"$out\"; exit 0; fi;"
              " sleep 0.1; done; echo \"$out\"; exit 0" % (port, port, seconds, omit))
    report = json.loads(host.sh(script).stdout)
    assert "error" not in report and "sum_received" in report.get("end", {}), report.get("error", report)
    return report["end"]["sum_received"]["bits_per_second"]


@pytest.mark.parametrize("mbit", [10, 50])
def test_htb_limit_holds_under_bulk_tcp(host, python, mbit):
    _pair(host)
    unlimited = _iperf(host, seconds=1)
    assert unlimited > 2 * mbit * 1e6, "the pair is too slow to show a limit: %.1f Mbit/s" % (unlimited / 1e6)
    args = {"device": "va", "netns": "a", "kind": "htb", "rate": "%dmbit" % mbit, "leaf": "pfifo"}
    result = assert_converges(host, MOD, args, python)
    assert result["qdisc"]["class"]["rate"] == mbit * 125000
    measured = _iperf(host)
    print("htb %d Mbit/s: %.2f Mbit/s goodput (unlimited %.0f Mbit/s)" % (mbit, measured / 1e6, unlimited / 1e6))
    assert abs(measured - mbit * 1e6) <= 0.10 * mbit * 1e6, "%.2f Mbit/s through a %d Mbit/s limit" % (
        measured / 1e6, mbit)
    stats = run_module(host, MOD, args, python)["statistics"]
    assert stats["bw_limit"]["bytes"] > mbit * 1e6 / 8 * 2  # the class carried the transfer
    assert stats["bw_limit"]["overlimits"] > 0  # and held it back


def test_tbf_limit_holds(host, python):
    _pair(host)
    args = {"device": "va", "netns": "a", "kind": "tbf", "rate": "20mbit", "burst": "32kb", "latency": "50ms"}
    result = assert_converges(host, MOD, args, python)
    assert result["qdisc"]["rate"] == 2500000 and result["statistics"]["bw_limit"]["packets"] == 0
    measured = _iperf(host)
    print("tbf 20 Mbit/s: %.2f Mbit/s goodput" % (measured / 1e6))
    assert abs(measured - 20e6) <= 2e6, "%.2f Mbit/s through a 20 Mbit/s tbf" % (measured / 1e6)


def test_changing_the_rate_changes_only_the_class(host, python):
    _pair(host)
    args = {"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit", "leaf": "pfifo", "limit": 300}
    run_module(host, MOD, args, python)
    result = assert_converges(host, MOD, dict(args, rate="20mbit", ceil="30mbit"), python)
    assert result["changes"] == [
        "change htb class 1:10 on va: rate 20Mbit ceil 30Mbit burst 25000 cburst 25000"
        " (was rate 10Mbit ceil 10Mbit burst 15140 cburst 15140)"]
    assert result["diff"]["before"]["class"]["rate"] == 1250000
    assert result["diff"]["after"]["class"]["ceil"] == 3750000
    # the leaf was not recreated: its counters and handle carried over
    assert [q["handle"] for q in _qdiscs(host) if q["kind"] == "pfifo"] == ["10:"]


def test_kind_change_grafts_a_new_root_and_absent_restores_the_default(host, python):
    _pair(host)
    run_module(host, MOD, {"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"}, python)
    result = assert_converges(host, MOD, {"device": "va", "netns": "a", "kind": "pfifo", "limit": 50}, python)
    assert result["changes"] == ["replace root qdisc htb 1: on va with pfifo 2:"]
    assert [(q["kind"], q["handle"]) for q in _qdiscs(host)] == [("pfifo", "2:")]
    assert_converges(host, MOD, {"device": "va", "netns": "a", "state": "absent"}, python)
    assert [q["kind"] for q in _qdiscs(host)] == ["noqueue"]


def test_per_cpu_rate_and_ingress(host, python):
    _pair(host)
    args = {"device": "va", "netns": "a", "kind": "htb", "rate_per_cpu": "4mbit", "cpus": 2.5,
            "max_rate": "1gbit", "leaf": "none"}
    result = assert_converges(host, MOD, args, python)
    assert result["qdisc"]["class"]["rate"] == 1250000 and result["qdisc"]["leaf"] is None
    # a container's namespace given by the pid of its init
    pid = host.start_app()
    host.sh("ip link add vc type veth peer name eth0 netns /proc/%d/ns/net" % pid)
    args = {"device": "eth0", "netns_pid": pid, "kind": "tbf", "rate": "1mbit"}
    assert run_module(host, MOD, args, python)["changed"]
    assert "tbf" in host.sh("nsenter -t %d -n tc qdisc show dev eth0" % pid).stdout
    assert not run_module(host, MOD, args, python)["changed"]
    ingress = assert_converges(host, MOD, {"device": "vc", "kind": "ingress"}, python)
    assert ingress["qdisc"] == {"kind": "ingress"}
    assert any(q["kind"] == "ingress" for q in json.loads(host.sh("tc -j qdisc show dev vc").stdout))
    assert_converges(host, MOD, {"device": "vc", "kind": "ingress", "state": "absent"}, python)


def test_missing_fq_codel_fails_naming_it_and_changes_nothing(host, python):
    """This kernel lacks sch_fq_codel: both the leaf and the standalone qdisc are refused by name."""
    _pair(host)
    probe = run_module(host, "hostnet.isolation.capabilities", {}, python)
    fq_codel = probe["ansible_facts"]["hostnet_capabilities"]["qdisc_fq_codel"]
    if fq_codel["available"]:
        pytest.skip("this kernel has fq_codel: %s" % fq_codel["detail"])
    run_module(host, MOD, {"device": "va", "netns": "a", "kind": "tbf", "rate": "5mbit"}, python)
    assert_rejected(host, MOD, {"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit",
                                "leaf": "fq_codel"}, python, "leaf", "sch_fq_codel")
    assert_rejected(host, MOD, {"device": "va", "netns": "a", "kind": "fq_codel", "target": "5ms"}, python,
                    "kind", "sch_fq_codel")
    assert [q["kind"] for q in _qdiscs(host)] == ["tbf"]


def test_fq_codel_live(host, python):
    _pair(host)
    probe = run_module(host, "hostnet.isolation.capabilities", {}, python)
    fq_codel = probe["ansible_facts"]["hostnet_capabilities"]["qdisc_fq_codel"]
    if not fq_codel["available"]:
        pytest.skip("no fq_codel here: %s" % fq_codel["detail"])
    args = {"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit", "leaf": "fq_codel", "target": "5ms",
            "flows": 512, "ecn": False}
    result = assert_converges(host, MOD, args, python)
    assert result["qdisc"]["leaf"]["flows"] == 512 and "bloat_reduction" in result["statistics"]


BAD = [
    ({"device": "va", "netns": "a", "kind": "htb", "rate": "10 mbit/s"}, "rate", "not a rate"),
    ({"device": "va", "netns": "a", "kind": "htb", "rate": "-1"}, "rate", "not a rate"),
    ({"device": "va", "netns": "a", "kind": "htb", "rate": "10mbps/s"}, "rate", None),
    ({"device": "va", "netns": "a", "kind": "tbf", "rate": "1mbit", "latency": "5 minutes"}, "latency", None),
    ({"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit", "ceil": "1mbit"}, "ceil", "below rate"),
    ({"device": "nope0", "netns": "a", "kind": "ingress"}, "device", "no device nope0"),
    ({"device": "va", "netns": "nope", "kind": "ingress"}, "netns", "does not exist"),
    ({"device": "va", "netns_pid": 999999999, "kind": "ingress"}, "netns_pid", "no process"),
    ({"device": "va", "netns": "a", "kind": "htb", "rate_per_cpu": "1mbit"}, "cpus", None),
    ({"device": "va", "netns": "a", "kind": "pfifo", "flows": 3}, "flows", "does not apply"),
    ({"device": "a-device-name-too-long", "kind": "ingress"}, "device", "at most 15"),
    # numbers a float cannot hold: an error naming the field, not a traceback
    ({"device": "va", "netns": "a", "kind": "htb", "rate": "1" + "0" * 400 + "mbit"}, "rate", "above the largest"),
    ({"device": "va", "netns": "a", "kind": "tbf", "rate": "1mbit", "burst": "1" + "0" * 400 + "kb"}, "burst", None),
    ({"device": "va", "netns": "a", "kind": "htb", "rate_per_cpu": "1mbit", "cpus": "nan"}, "cpus", "not a positive"),
    ({"device": "va", "netns": "a", "kind": "htb", "rate_per_cpu": "1mbit", "cpus": "inf"}, "cpus", "not a positive"),
]


@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field, reason):
    _pair(host)
    run_module(host, MOD, {"device": "va", "netns": "a", "kind": "htb", "rate": "5mbit", "leaf": "pfifo"}, python)
    assert_rejected(host, MOD, args, python, field, reason)


def test_check_mode_predicts_without_touching(host, python):
    _pair(host)
    before = host.snapshot()
    result = run_module(host, MOD, {"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit",
                                    "leaf": "pfifo"}, python, check=True)
    assert result["changed"] and result["diff"]["after"]["class"]["rate"] == 1250000
    assert_same(before, host.snapshot(), "check mode")


# -- the parts' contract: the core as the host_network module calls it -------------------------------

PLUGINS = os.path.join(REPO, "plugins")
# converge each spec in one transaction.unit, as host_network does; optionally fail after the last
CORE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from module_utils import contract, qdisc as tc, transaction
from module_utils.errors import HostnetError
job = json.loads(sys.argv[2])
planned = contract.Planned()
for path in job.get("netns", []):
    planned.add_netns(path)
for path, dev in job.get("devices", []):
    planned.add_device(path, dev)
out = []
try:
    with transaction.unit("qdiscs"):
        for params in job["specs"]:
            result = tc.converge(tc.spec(params, planned=planned), check_mode=job["check"], planned=planned)
            out.append({"changed": result["changed"], "changes": result["changes"], "diff": result["diff"]})
        if job.get("fail"):
            raise RuntimeError("a later part failed")
except HostnetError as exc:
    out.append({"field": exc.field, "reason": exc.reason})
print(json.dumps(out))
"""


def _core(host, python, specs, check=False, fail=False, netns=(), devices=()):
    job = {"specs": specs, "check": check, "fail": fail, "netns": list(netns), "devices": list(devices)}
    return json.loads(host.run([python, "-c", CORE, PLUGINS, json.dumps(job)]).stdout)


def test_check_mode_on_what_the_run_creates_says_what_the_real_run_does(host, python):
    """A namespace and a veth the same run creates: check mode plans against a fresh veth, touching
    nothing, and says exactly what the real run then does once they exist."""
    specs = [{"device": "eth0", "netns": "web", "kind": "htb", "rate": "10mbit", "leaf": "pfifo", "limit": 100},
             {"device": "veth-web", "kind": "tbf", "rate": "5mbit", "burst": "32kb"},
             {"device": "veth-web", "kind": "ingress"}]
    before = host.snapshot()
    predicted = _core(host, python, specs, check=True, netns=["/var/run/netns/web"],
                      devices=[["/var/run/netns/web", "eth0"], [None, "veth-web"]])
    assert_same(before, host.snapshot(), "check mode on what the run creates")
    assert [len(p["changes"]) for p in predicted] == [3, 1, 1], predicted
    assert predicted[0]["changes"][0] == "replace root qdisc the default noqueue on eth0 with htb 1:"
    # what the netns and veth parts then create (through their own modules)
    run_module(host, "hostnet.isolation.netns", {"name": "web"}, python)
    run_module(host, "hostnet.isolation.veth", {"name": "veth-web", "peer": "eth0", "peer_netns": "web"}, python)
    done = _core(host, python, specs)
    assert [d["changes"] for d in done] == [p["changes"] for p in predicted]
    assert [d["diff"]["before"] for d in done] == [p["diff"]["before"] for p in predicted]
    assert done[0]["diff"]["after"]["class"] == predicted[0]["diff"]["after"]["class"]
    assert not any(again["changed"] for again in _core(host, python, specs))


def test_a_unit_that_fails_later_undoes_the_qdiscs_it_applied(host, python):
    """Converged for real inside transaction.unit, then a later part fails: the host is as before,
    a tbf put back on one device, the kernel's default on the other, no ingress left."""
    _pair(host)
    run_module(host, MOD, {"device": "va", "netns": "a", "kind": "tbf", "rate": "5mbit", "burst": "20kb"}, python)
    before = host.snapshot()
    specs = [{"device": "va", "netns": "a", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"},
             {"device": "va", "netns": "a", "kind": "ingress"},
             {"device": "vb", "netns": "b", "kind": "htb", "rate": "20mbit", "leaf": "none"}]
    out = _core(host, python, specs, fail=True)
    assert [o["changed"] for o in out[:3]] == [True, True, True]
    assert "a later part failed" in out[3]["reason"] and "rolled back everything" in out[3]["reason"], out
    assert_same(before, host.snapshot(), "a unit rolled back")
