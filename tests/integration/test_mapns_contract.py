# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The port_mapper and netns parts on the parts' contract (contract.py), in a hermetic host.

* Undo: converged for real inside ``transaction.unit`` that then fails, a part leaves the host as it was
  (the rulesets, route_localnet, handles, symlinks and directories; snapshot before and after).
* Check mode with ``planned``: for a device the run creates, check mode says exactly what the real run
  then does.
"""

import json
import os

import pytest

from harness.assertions import assert_same
from harness.hermetic import REPO
from harness.runner import INTERPRETERS, run_module

PYTHON = INTERPRETERS["os-pyroute2-0.7"]
PLUGINS = os.path.join(REPO, "plugins")

# Runs inside the hermetic host: the core as a plain package, the result as JSON on stdout.
PRELUDE = """
import json, sys
sys.path.insert(0, %r)
from module_utils import contract, netns, port_mapper, portmap, transaction
from module_utils.errors import ApplyError
args = json.loads(sys.argv[1])
""" % PLUGINS


def core(host, body, **args):
    proc = host.run([PYTHON, "-c", PRELUDE + body, json.dumps(args)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


UNDONE = """
spec = %s.spec(args["params"])
result = None
try:
    with transaction.unit("x"):
        result = %s.converge(spec)
        raise RuntimeError("a later part fails")
except ApplyError as exc:
    print(json.dumps({"result": result, "error": str(exc)}))
"""


def m(cid, ip, host_port, container_port, **extra):
    return dict(container_id=cid, container_ip=ip, host_port=host_port, container_port=container_port, **extra)


@pytest.fixture(params=["nftables", "iptables-nft", "iptables-legacy"])
def mapped(request, host):
    """A host with two port_mapper networks, "other" and "web", and a device toward web's containers."""
    host.sh("ip link add hn-br type bridge && ip addr add 10.88.0.1/24 dev hn-br && ip link set hn-br up")
    if request.param == "iptables-legacy":
        host.sh("iptables-legacy -t nat -S >/dev/null")  # legacy tables loaded: the host uses them
    host.backend = "nftables" if request.param == "nftables" else "iptables"
    # "other" maps IPv6 too, so the host has its nat tables of both families before the run being undone
    for args in ({"network": "other", "mappings": [m("db-1", "10.89.0.5", 15432, 5432),
                                                   m("db-1", "fd00:89::5", 15432, 5432)]},
                 {"network": "web", "mappings": [m("web-1", "10.88.0.2", 8080, 80, protocol="udp")]}):
        result = run_module(host, "hostnet.isolation.port_mapper", dict(args, backend=host.backend), PYTHON)
        assert result["changed"] and not result.get("failed"), result
    return host


@pytest.mark.parametrize("change", [
    {"mappings": [m("web-2", "10.88.0.3", 8443, 443), m("web-3", "fd00:88::3", 8444, 443)], "localhost": True,
     "hairpin": False, "exclude_devices": ["hn-up"]},
    {"chain": "HN-web2", "mappings": [m("web-2", "10.88.0.3", 8443, 443)]},  # renamed: the old name goes
    {"state": "absent"},  # the whole network
], ids=["changed", "renamed", "removed"])
def test_a_port_mapper_run_that_landed_is_undone_by_the_unit(mapped, change):
    before = mapped.snapshot()
    params = dict({"network": "web", "backend": mapped.backend}, **change)
    out = core(mapped, UNDONE % ("portmap", "port_mapper"), params=params)
    assert out["result"]["changed"], out
    assert "a later part fails" in out["error"] and "rolled back everything" in out["error"], out["error"]
    assert_same(before, mapped.snapshot(), "a port_mapper run undone by its unit")
    # the network is still the module's: a converge of the state it was in changes nothing
    again = run_module(mapped, "hostnet.isolation.port_mapper", {
        "network": "web", "backend": mapped.backend, "exclusive": True,
        "mappings": [m("web-1", "10.88.0.2", 8080, 80, protocol="udp")]}, PYTHON)
    assert again["changed"] is False, again


CHECK_THEN_REAL = """
spec = portmap.PortMapperSpec(**args["params"])
planned = contract.Planned()
planned.add_device(None, args["device"])
print(json.dumps(port_mapper.converge(spec, check_mode=True, planned=planned)))
"""
REAL = """
print(json.dumps(port_mapper.converge(portmap.PortMapperSpec(**args["params"]))))
"""


def test_check_mode_sets_route_localnet_on_a_device_the_run_creates_as_the_real_run_then_does(host):
    # as the CNI plugin names them: the host side of the container's veth, created earlier in the same run
    params = {"network": "web", "backend": "nftables", "localhost": True, "localhost_devices": ["hn-veth"],
              "mappings": [m("web-1", "10.88.0.2", 8080, 80)]}
    before = host.snapshot()
    predicted = core(host, CHECK_THEN_REAL, params=params, device="hn-veth")
    assert_same(before, host.snapshot(), "check mode")
    host.sh("ip link add hn-veth type veth peer name hn-veth-c && ip addr add 10.88.0.1/24 dev hn-veth")
    real = core(host, REAL, params=params)
    assert "set /proc/sys/net/ipv4/conf/hn-veth/route_localnet to 1 (was 0)" in real["changes"]
    assert predicted["changes"] == real["changes"]
    assert predicted["route_localnet"] == real["route_localnet"] == ["/proc/sys/net/ipv4/conf/hn-veth/route_localnet"]


def test_check_mode_says_when_it_cannot_name_the_route_localnet_devices(host):
    host.sh("ip link add hn-br type bridge && ip addr add 10.88.0.1/24 dev hn-br && ip link set hn-br up")
    params = {"network": "web", "backend": "nftables", "localhost": True,
              "mappings": [m("web-1", "10.88.0.2", 8080, 80), m("web-2", "10.99.0.2", 8081, 80)]}
    predicted = core(host, CHECK_THEN_REAL, params=params, device="hn-veth")
    # 10.88.0.2 is routed through hn-br today; 10.99.0.2 nowhere yet (the run's new hn-veth may carry it)
    assert "set /proc/sys/net/ipv4/conf/hn-br/route_localnet to 1 (was 0)" in predicted["changes"]
    assert any("10.99.0.2 unrouted yet" in c and "this run creates hn-veth first" in c
               for c in predicted["changes"]), predicted["changes"]


def test_a_netns_run_that_created_things_is_undone_by_the_unit(host):
    host.sh("ip netns add keep-me")
    before = host.snapshot()
    out = core(host, UNDONE % ("netns", "netns"),
               params={"name": "web", "symlinks": ["/run/mesos/netns/web", "/run/mesos/deep/er/web"]})
    assert out["result"]["created"] is True and out["result"]["path"] == "/var/run/netns/web"
    assert "rolled back everything" in out["error"], out["error"]
    assert_same(before, host.snapshot(), "a netns run undone by its unit")


def test_a_removed_namespace_is_reported_as_not_restored(host):
    host.sh("ip netns add web && mkdir -p /run/mesos/netns && ln -s /var/run/netns/web /run/mesos/netns/web")
    out = core(host, UNDONE % ("netns", "netns"),
               params={"name": "web", "state": "absent", "symlinks": ["/run/mesos/netns/web"]})
    assert "cannot be undone" in out["result"]["changes"][-1]
    assert "rolled back with errors" in out["error"] and "cannot be brought back" in out["error"], out["error"]
    # the symlink it removed is back; the handle is not (nothing else was mounted there)
    assert host.sh("readlink /run/mesos/netns/web").stdout.strip() == "/var/run/netns/web"
    assert host.sh("ls /run/netns").stdout.split() == []


def test_netns_check_mode_says_where_the_new_namespace_will_be(host):
    args = {"name": "web"}
    predicted = run_module(host, "hostnet.isolation.netns", args, PYTHON, check=True)
    real = run_module(host, "hostnet.isolation.netns", args, PYTHON)
    assert (predicted["created"], predicted["path"]) == (real["created"], real["path"]) == (True, "/var/run/netns/web")
    assert predicted["changes"] == real["changes"] == ["create a network namespace with its handle at /var/run/netns/web"]
    again = run_module(host, "hostnet.isolation.netns", args, PYTHON, check=True)
    assert (again["created"], again["changes"], again["path"]) == (False, [], "/var/run/netns/web")
