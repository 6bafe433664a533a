# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.ephemeral_ports: ranges that stay put, avoid what they must, and carry real connections."""

import json

import pytest

from harness.assertions import assert_converges, assert_rejected, assert_same
from harness.runner import INTERPRETERS, run_module
from test_port_redirect import _topology, run_core

MOD = "hostnet.isolation.ephemeral_ports"
STATE = "/run/hostnet/ephemeral-ports.json"


def _sysctl(host, netns):
    return host.sh("ip netns exec %s cat /proc/sys/net/ipv4/ip_local_port_range" % netns).stdout.split()


def _allocations(host):
    return json.loads(host.sh("cat %s" % STATE).stdout)["allocations"]


def test_ranges_avoid_agent_ports_host_range_and_each_other(host, python):
    host.sh("ip netns add c1 && ip netns add c2 && ip netns add c3"
            " && echo '20000 29999' > /proc/sys/net/ipv4/ip_local_port_range")
    common = {"agent_ports": "1024-4095", "pool": "1024-32767"}
    first = assert_converges(host, MOD, dict(common, container="c1", netns="c1"), python)
    assert first["range"] == {"first": 4096, "last": 5119, "size": 1024, "ports": "4096-5119"}
    assert _sysctl(host, "c1") == ["4096", "5119"]
    second = assert_converges(host, MOD, dict(common, container="c2", netns="c2", size=4096), python)
    assert second["range"]["ports"] == "8192-12287"  # aligned to 4096, after c1's block
    # the lowest free aligned block: 5120-6143 is free but not aligned to 2048
    third = assert_converges(host, MOD, dict(common, container="c3", netns="c3", size=2048), python)
    assert third["range"]["ports"] == "6144-8191"
    # the host's own range (20000-29999) rules out the 8192-blocks at 16384 and 24576
    host.sh("ip netns add c5")
    fifth = run_module(host, MOD, dict(common, container="c5", netns="c5", size=8192, pool="1024-65535"), python)
    assert fifth["range"]["ports"] == "32768-40959"
    run_module(host, MOD, {"container": "c5", "state": "absent"}, python)
    assert _allocations(host) == {"c1": [4096, 5119], "c2": [8192, 12287], "c3": [6144, 8191]}
    # a rerun (a restart of whatever calls us) returns the same ranges and changes nothing
    again = run_module(host, MOD, dict(common, container="c2", netns="c2", size=4096), python)
    assert again["changed"] is False and again["range"]["ports"] == "8192-12287"
    # release c1; its block is handed out again
    assert_converges(host, MOD, {"container": "c1", "state": "absent"}, python)
    assert "c1" not in _allocations(host)
    host.sh("ip netns add c4")
    fourth = run_module(host, MOD, dict(common, container="c4", netns="c4"), python)
    assert fourth["range"]["ports"] == "4096-5119"


def test_a_range_that_no_longer_fits_is_replaced(host, python):
    host.sh("ip netns add c1")
    run_module(host, MOD, {"container": "c1", "netns": "c1", "pool": "1024-8191"}, python)
    assert _sysctl(host, "c1") == ["1024", "2047"]
    moved = assert_converges(host, MOD, {"container": "c1", "netns": "c1", "pool": "1024-8191",
                                         "agent_ports": "1024-2047"}, python)
    assert moved["range"]["ports"] == "2048-3071"
    assert moved["diff"]["before"]["range"] == "1024-2047"
    assert _sysctl(host, "c1") == ["2048", "3071"]


def test_outgoing_connections_use_the_range_through_port_redirect(host, python):
    """c1 shares the host's IP; its connections to the client leave from its range and the replies find it."""
    _topology(host)
    eph = run_module(host, MOD, {"container": "c1", "netns": "c1", "size": 256, "pool": "10000-20000"}, python)
    assert not eph.get("failed"), eph.get("msg")
    ports = eph["range"]["ports"]
    assert ports == "10240-10495"
    redirect = run_module(host, "hostnet.isolation.port_redirect",
                          {"veth": "veth-c1", "ports": "8000-8063,%s" % ports}, python)
    assert not redirect.get("failed"), redirect.get("msg")
    host.spawn(["socat", "TCP-LISTEN:5000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERPORT"], netns="client")
    seen = []
    for _attempt in range(3):
        out = host.sh("for i in $(seq 30); do r=$(ip netns exec c1 socat -T1 - TCP:10.1.0.2:5000,connect-timeout=1"
                      " </dev/null 2>/dev/null) && [ -n \"$r\" ] && echo $r && exit 0; sleep 0.1; done; exit 1")
        seen.append(int(out.stdout.strip()))
    assert all(10240 <= p <= 10495 for p in seen), seen
    # and without the redirect of its range, the replies would go to the host instead: the connection fails
    run_module(host, "hostnet.isolation.port_redirect", {"veth": "veth-c1", "ports": "8000-8063"}, python)
    failed = host.sh("ip netns exec c1 socat -T1 - TCP:10.1.0.2:5000,connect-timeout=1 </dev/null", check=False)
    assert failed.returncode != 0


BAD = [
    ({"container": "c2", "netns": "c2", "size": 1000}, "size", "not a power of two"),
    ({"container": "c2", "netns": "c2", "size": 4}, "size", "not a power of two"),
    ({"container": "c2", "netns": "c2", "range": "40000-41023"}, "range", "not aligned"),
    ({"container": "c2", "netns": "c2", "range": "40960-41000"}, "range", "not a power of two"),
    ({"container": "c2", "netns": "c2", "range": "4096-5119,8192-9215"}, "range", "not one range"),
    ({"container": "c2", "netns": "c2", "range": "1024-2047"}, "range", "container c1's range"),
    ({"container": "c2", "netns": "c2", "range": "32768-33791"}, "range", "ip_local_port_range"),
    ({"container": "c2", "netns": "c2", "range": "31744-32767", "agent_ports": "31000-32000"}, "range",
     "the agent's ports"),
    ({"container": "c2", "netns": "c2", "range": "512-1023"}, "range", None),
    ({"container": "c2", "netns": "c2", "pool": "1024-4095", "size": 4096}, "size", "no free aligned block"),
    ({"container": "c2", "netns": "c2", "agent_ports": "not-ports"}, "agent_ports", None),
    ({"container": "c2", "netns": "nope"}, "netns", "does not exist"),
    ({"container": "c2"}, "netns", None),
    ({"container": "", "netns": "c2"}, "container", None),
]


@pytest.mark.parametrize("args,field,reason", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field, reason):
    host.sh("ip netns add c1 && ip netns add c2")
    run_module(host, MOD, {"container": "c1", "netns": "c1"}, python)
    state = host.sh("cat %s" % STATE).stdout
    assert_rejected(host, MOD, args, python, field, reason)
    assert host.sh("cat %s" % STATE).stdout == state
    assert _sysctl(host, "c2") == _sysctl(host, "c2") and _sysctl(host, "c2") != ["1024", "2047"]


PYTHON = INTERPRETERS["os-pyroute2-0.7"]  # the part is plain Python: one interpreter is enough
_CONVERGE = """
from module_utils import contract, ephemeral_ports as ephemeral
planned = contract.Planned()
for path in %(namespaces)r:
    planned.add_netns(path)
spec = ephemeral.spec(%(params)r, planned=planned)
print(json.dumps(ephemeral.converge(spec, check_mode=%(check)r, planned=planned)))
"""


def test_check_mode_plans_a_namespace_the_run_creates_as_the_real_run_then_does(host):
    """A new namespace holds the kernel's default range (32768-60999), whatever the host's own range is."""
    host.sh("ip netns add c0 && echo '20000 29999' > /proc/sys/net/ipv4/ip_local_port_range")
    run_module(host, MOD, {"container": "c0", "netns": "c0"}, PYTHON)
    params = {"container": "c1", "netns": "c1", "size": 2048}
    before = host.snapshot()
    predicted = run_core(host, PYTHON, _CONVERGE % dict(params=params, namespaces=["/var/run/netns/c1"], check=True))
    assert_same(before, host.snapshot(), "check mode")
    assert predicted["changes"] == ["set ip_local_port_range in c1 to 2048-4095 (was 32768-60999)",
                                    "allocate 2048-4095 to c1"]
    host.sh("ip netns add c1")
    applied = run_core(host, PYTHON, _CONVERGE % dict(params=params, namespaces=[], check=False))
    assert (applied["changes"], applied["diff"], applied["range"]) == \
        (predicted["changes"], predicted["diff"], predicted["range"])
    assert _sysctl(host, "c1") == ["2048", "4095"]


@pytest.mark.parametrize("others", [False, True], ids=["first-allocation", "next-to-another"])
def test_a_unit_that_fails_later_undoes_the_allocation_and_the_sysctl(host, others):
    """Inside transaction.unit the range lands (file and namespace); a later failure puts both back, and
    a state file the run created goes again."""
    host.sh("ip netns add c1 && ip netns add c0")
    if others:
        run_module(host, MOD, {"container": "c0", "netns": "c0"}, PYTHON)
    before = host.snapshot()
    out = run_core(host, PYTHON, """
        from module_utils import ephemeral_ports as ephemeral, transaction
        from module_utils.errors import ApplyError
        try:
            with transaction.unit("ephemeral_ports[1]"):
                result = ephemeral.converge(ephemeral.spec({"container": "c1", "netns": "c1"}))
                landed = open("%s").read()
                raise RuntimeError("a later part failed")
        except ApplyError as exc:
            print(json.dumps({"changes": result["changes"], "landed": landed, "error": str(exc)}))
        """ % STATE)
    assert len(out["changes"]) == 2 and '"c1"' in out["landed"], out
    assert "rolled back everything" in out["error"], out["error"]
    assert_same(before, host.snapshot(), "the unit that was rolled back")
