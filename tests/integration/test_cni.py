# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet-cni-port-mapper driven exactly as a container runtime drives it (env vars + stdin),
delegating to Debian's real containernetworking-plugins `bridge` with `host-local` IPAM."""

import json
import os
import subprocess

import pytest

from harness.hermetic import REPO
from harness.runner import INTERPRETERS, run_playbook

PLUGIN = os.path.join(REPO, ".build", "cni", "hostnet-cni-port-mapper")
CNI_PATH = "/usr/lib/cni"
HOST_IP = "192.0.2.1"

TOPOLOGY = r"""
set -e
sysctl -qw net.ipv4.ip_forward=1
ip netns add client
ip link add hveth-cl type veth peer name eth0 netns client
ip addr add 192.0.2.1/24 dev hveth-cl && ip link set hveth-cl up
ip -n client addr add 192.0.2.2/24 dev eth0 && ip -n client link set eth0 up
ip -n client route add default via 192.0.2.1
ip netns add c1 && ip netns add c2
"""


def config(version="1.0.0", ports=((8080, 80, "tcp"),), **extra):
    conf = {
        "cniVersion": version, "name": "mesos-test", "type": "hostnet-cni-port-mapper", "chain": "MESOS-TEST",
        "excludeDevices": ["eth9"],
        "delegate": {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                     "ipam": {"type": "host-local", "subnet": "10.22.0.0/16", "dataDir": "/run/cni-ipam",
                              "routes": [{"dst": "0.0.0.0/0"}]}},
        "args": {"org.apache.mesos": {"network_info": {"name": "mesos-test", "port_mappings": [
            {"host_port": h, "container_port": c, "protocol": p} for h, c, p in ports]}}},
    }
    conf.update(extra)
    return conf


def cni(host, command, conf, container="c1", stdin=None, plugin=PLUGIN, cni_path=CNI_PATH, unset=(), **extra):
    """(exit code, parsed stdout) of one plugin call inside the hermetic host; ``unset`` drops CNI_* variables."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container, CNI_NETNS="/var/run/netns/%s" % container,
               CNI_IFNAME="eth0", CNI_PATH=cni_path, **extra)
    if container is None:
        del env["CNI_CONTAINERID"]
    for name in unset:
        del env[name]
    proc = host.run([plugin], check=False, env=env, input=stdin if stdin is not None else json.dumps(conf))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def tcp(host, ns, address, port):
    argv = ["ip", "netns", "exec", ns, "socat", "-T2", "-", "TCP:%s:%d,connect-timeout=2" % (address, port)]
    return host.run(argv, check=False, stdin=subprocess.DEVNULL).stdout.strip()


def c1_answers_on_the_mapped_port(host):
    """Serve "c1" in container c1 and fetch it from the client namespace through host port 8080."""
    host.spawn(["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo c1"], netns="c1")
    answer = ""
    for _attempt in range(30):
        answer = tcp(host, "client", HOST_IP, 8080)
        if answer:
            break
    return answer == "c1"


def rules(host):
    return host.sh("nft list ruleset; iptables-nft-save -t nat | grep -v '^#'").stdout


@pytest.fixture
def cnihost(host):
    if not os.access(os.path.join(CNI_PATH, "bridge"), os.X_OK):
        pytest.fail("containernetworking-plugins is not installed (make deps installs it)")
    host.sh(TOPOLOGY)
    return host


def test_add_maps_the_port_check_and_del(cnihost):
    host = cnihost
    code, result = cni(host, "ADD", config())
    assert code == 0, result
    ip = result["ips"][0]["address"].split("/")[0]
    assert ip.startswith("10.22.")
    assert c1_answers_on_the_mapped_port(host)
    assert "container_id: c1" in rules(host)
    # CHECK passes with the ADD result, and fails once the rule is deleted by hand
    code, out = cni(host, "CHECK", dict(config(), prevResult=result))
    assert code == 0, out
    host.sh("nft flush map inet MESOS-TEST tcp4")
    code, out = cni(host, "CHECK", dict(config(), prevResult=result))
    assert code == 1 and out["code"] == 102 and "missing or changed" in out["msg"], out
    cni(host, "ADD", config())  # repair
    # DEL removes the rules and the interface; a second DEL succeeds
    code, out = cni(host, "DEL", config())
    assert code == 0, out
    assert "container_id: c1" not in rules(host)
    assert host.sh("ip -n c1 link show eth0", check=False).returncode != 0
    assert tcp(host, "client", HOST_IP, 8080) == ""
    assert cni(host, "DEL", config()) == (0, None)


def test_conflicting_host_port_fails_add_and_leaves_nothing(cnihost):
    host = cnihost
    assert cni(host, "ADD", config())[0] == 0
    before = rules(host)
    code, out = cni(host, "ADD", config(), container="c2")
    assert code == 1 and out["code"] == 100, out
    assert "container c1" in out["msg"] and "c2" in out["msg"], out
    assert rules(host) == before
    assert host.sh("ip -n c2 link show eth0", check=False).returncode != 0  # the delegate's DEL undid it
    assert host.sh("ls /run/cni-ipam/mesos-test").stdout.split().count("10.22.0.3") == 0


def test_chained_after_another_plugin_with_port_mappings_capability(cnihost):
    host = cnihost
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.23.0.7/24"}], "interfaces": []}
    conf = {"cniVersion": "1.0.0", "name": "chained", "type": "hostnet-cni-port-mapper", "prevResult": prev,
            "runtimeConfig": {"portMappings": [{"hostPort": 9090, "containerPort": 90, "protocol": "udp"}]}}
    code, out = cni(host, "ADD", conf)
    assert code == 0 and out == prev
    assert "9090" in rules(host) and "10.23.0.7" in rules(host)
    assert cni(host, "DEL", conf) == (0, None)
    assert "10.23.0.7" not in rules(host)


def test_version_and_status():
    env = dict(os.environ, CNI_COMMAND="VERSION")
    out = subprocess.run([PLUGIN], input='{"cniVersion": "1.0.0"}', env=env, stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    assert json.loads(out) == {"cniVersion": "1.0.0", "supportedVersions": [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("stdin,env_container,code,words", [
    ('{"cniVersion": "1.0.0", "name": "x", "type": "t"}', "c1", 7, "prevResult"),
    (json.dumps(config(delegate={"type": "no-such-plugin"})), "c1", 7, "not found on CNI_PATH"),
    ('{"cniVersion": "1.0.0", "name": ', "c1", 6, "not JSON"),
    (json.dumps(config(ports=((70000, 80, "tcp"),))), "c1", 7,
     "args.org.apache.mesos.network_info.port_mappings[0].host_port"),
    (json.dumps(config(ports=((8080, 80, "icmp"),))), "c1", 7, "protocol"),
    (json.dumps(config(version="0.5.0")), "c1", 1, "not supported"),
    (json.dumps(config(delegate={"type": "bridge", "cniVersion": "2.0.0"})), "c1", 1, "delegate.cniVersion"),
    (json.dumps(config(chain="bad chain")), "c1", 7, "chain"),
    (json.dumps(config(excludeDevices=["a-device-name-16"])), "c1", 7, "excludeDevices[0]"),
    (json.dumps(config()), None, 4, "CNI_CONTAINERID"),
])
def test_bad_configs_give_cni_errors_and_change_nothing(cnihost, stdin, env_container, code, words):
    host = cnihost
    before = rules(host)
    rc, out = cni(host, "ADD", None, container=env_container, stdin=stdin)
    assert rc == 1 and out["code"] == code and words in out["msg"], out
    assert rules(host) == before
    assert host.sh("ip -n c1 link show eth0", check=False).returncode != 0


def test_gc_removes_mappings_of_vanished_containers_and_status(cnihost):
    host = cnihost

    def chained(cid, ip, port):
        return {"cniVersion": "1.1.0", "name": "gcnet", "type": "hostnet-cni-port-mapper",
                "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": ip + "/24"}]},
                "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}}

    assert cni(host, "ADD", chained("keep", "10.24.0.2", 7001), container="keep")[0] == 0
    assert cni(host, "ADD", chained("gone", "10.24.0.3", 7002), container="gone")[0] == 0
    gc = {"cniVersion": "1.1.0", "name": "gcnet", "type": "hostnet-cni-port-mapper",
          "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni(host, "GC", gc, container=None) == (0, None)
    assert "container_id: keep" in rules(host) and "container_id: gone" not in rules(host)
    assert cni(host, "STATUS", gc, container=None) == (0, None)
    code, out = cni(host, "GC", dict(gc, cniVersion="1.0.0"), container=None)
    assert code == 1 and out["code"] == 1, out


# -- the role hostnet.isolation.cni_port_mapper -------------------------------------------------------

ROLE_DIRS = {"cni_port_mapper_bin_dir": "/run/cni/bin", "cni_port_mapper_conf_dir": "/run/cni/net.d",
             "cni_port_mapper_lib_dir": "/run/cni/lib"}
ROLE_PLAY = """
- name: Install the CNI port mapper
  hosts: localhost
  gather_facts: false
  roles:
    - role: hostnet.isolation.cni_port_mapper
"""


def role_vars(networks, **extra):
    return dict(ROLE_DIRS, cni_port_mapper_networks=networks, **extra)


def mesos_network(**extra):
    conf = config()
    item = {"name": conf["name"], "chain": conf["chain"], "exclude_devices": conf["excludeDevices"],
            "delegate": conf["delegate"]}
    item.update(extra)
    return item


def cni_tree(host):
    """Every file under /run/cni with its mode and checksum (what the role owns)."""
    return host.sh("find /run/cni -exec stat -c '%n %a %F' {} + 2>/dev/null | sort; "
                   "find /run/cni -type f -exec sha256sum {} + 2>/dev/null | sort", check=False).stdout


def play(host, extra_vars, check=False):
    return run_playbook(host, ROLE_PLAY, INTERPRETERS["os-pyroute2-0.7"], extra_vars=extra_vars, check=check,
                        diff=check)


def test_role_installs_plugin_and_config_that_a_runtime_uses(cnihost):
    host = cnihost
    variables = role_vars([mesos_network(), mesos_network(name="gone", file="50-gone.conf", state="absent")])
    # check mode predicts changes and touches nothing
    code, stats, _results = play(host, variables, check=True)
    assert code == 0 and stats["localhost"]["changed"] > 0, stats
    assert cni_tree(host) == ""
    code, stats, _results = play(host, variables)
    assert code == 0 and stats["localhost"]["changed"] > 0, stats
    installed = cni_tree(host)
    assert "/run/cni/bin/hostnet-cni-port-mapper 755 regular file" in installed
    written = json.loads(host.sh("cat /run/cni/net.d/mesos-test.conf").stdout)
    assert written == dict((k, v) for k, v in config().items()
                           if k in ("cniVersion", "name", "type", "chain", "excludeDevices", "delegate"))
    # the second run changes nothing
    code, stats, _results = play(host, variables)
    assert code == 0 and stats["localhost"]["changed"] == 0, stats
    assert cni_tree(host) == installed
    # a runtime drives the installed plugin with the installed configuration: real traffic reaches c1
    conf = json.loads(host.sh("cat /run/cni/net.d/mesos-test.conf").stdout)
    conf["args"] = config()["args"]
    code, out = cni(host, "ADD", conf, plugin="/run/cni/bin/hostnet-cni-port-mapper",
                    cni_path="/run/cni/bin:" + CNI_PATH)
    assert code == 0, out
    assert c1_answers_on_the_mapped_port(host)
    # state=absent removes the configuration and leaves the plugin
    variables["cni_port_mapper_networks"] = [mesos_network(state="absent")]
    code, stats, _results = play(host, variables)
    assert code == 0 and stats["localhost"]["changed"] == 1, stats
    assert host.sh("ls /run/cni/net.d").stdout.split() == []
    assert host.sh("test -x /run/cni/bin/hostnet-cni-port-mapper", check=False).returncode == 0


def test_role_repairs_a_deleted_plugin(cnihost):
    host = cnihost
    assert play(host, role_vars([mesos_network()]))[0] == 0
    host.sh("rm /run/cni/bin/hostnet-cni-port-mapper")
    code, stats, _results = play(host, role_vars([mesos_network()]))
    assert code == 0 and stats["localhost"]["changed"] == 1, stats
    assert host.sh("test -x /run/cni/bin/hostnet-cni-port-mapper", check=False).returncode == 0


@pytest.mark.parametrize("networks,extra,words", [
    ([{"delegate": {"type": "bridge"}}], {}, "cni_port_mapper_networks"),
    ([{"name": "n", "cni_version": "0.5.0", "delegate": {"type": "bridge"}}], {}, "cni_version"),
    ([{"name": "n", "delegate": "bridge"}], {}, "delegate"),
    ([{"name": "n"}], {}, "cni_port_mapper_networks[0] (network n): delegate is required"),
    ([{"name": "n", "delegate": {"type": "bridge"}, "state": "gone"}], {}, "state"),
    ([], {"cni_port_mapper_required_capabilities": ["no_such_capability"]}, "no_such_capability"),
])
def test_role_refuses_bad_variables_and_installs_nothing(host, networks, extra, words):
    code, _stats, results = play(host, role_vars(networks, **extra))
    failed = [r for r in results if r.get("failed")]
    assert code != 0 and failed, results
    messages = [failed[0]["msg"]] + [item.get("msg", "") for item in failed[0].get("results", [])]
    assert any(words in msg for msg in messages), messages
    assert cni_tree(host) == ""


def test_fast_add_refuses_a_port_taken_in_another_network_and_checks(cnihost):
    host = cnihost

    def chained(network, ip, port):
        return {"cniVersion": "1.0.0", "name": network, "type": "hostnet-cni-port-mapper",
                "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": ip + "/24"}]},
                "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}}

    # the first ADD of each network creates its table; later ADDs only add elements
    assert cni(host, "ADD", chained("neta", "10.25.0.2", 7100), container="a1")[0] == 0
    assert cni(host, "ADD", chained("netb", "10.26.0.2", 7200), container="b1")[0] == 0
    assert cni(host, "ADD", chained("netb", "10.26.0.3", 7201), container="b2")[0] == 0
    before = rules(host)
    code, out = cni(host, "ADD", chained("netb", "10.26.0.4", 7100), container="b3")
    assert code == 1 and out["code"] == 100 and "a1" in out["msg"] and "network neta" in out["msg"], out
    assert rules(host) == before
    # what the fast path added is what a full read sees: CHECK passes, and DEL removes only b2
    conf = chained("netb", "10.26.0.3", 7201)
    assert cni(host, "CHECK", dict(conf, prevResult=conf["prevResult"]), container="b2") == (0, None)
    assert cni(host, "DEL", conf, container="b2") == (0, None)
    after = rules(host)
    assert "container_id: b2" not in after and "container_id: b1" in after and "container_id: a1" in after
    assert "10.26.0.3 . 10.26.0.3" not in after  # its hairpin element went too


# -- hostile input (issue #17): a network configuration never reaches outside the plugin's own objects ---------

def _chained(ip="10.23.0.7", **mapping):
    item = dict({"hostPort": 9090, "containerPort": 90, "protocol": "tcp"}, **mapping)
    return {"cniVersion": "1.0.0", "name": "chained", "type": "hostnet-cni-port-mapper",
            "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": ip + "/24"}]},
            "runtimeConfig": {"portMappings": [item]}}


@pytest.mark.parametrize("plugin_type", ["../../../run/evil/evil", "/run/evil/evil", "sub/../evil", ".."])
def test_delegate_type_is_a_plugin_name_never_a_path(cnihost, plugin_type):
    host = cnihost
    host.sh("mkdir -p /run/evil/sub && printf '#!/bin/sh\\ntouch /run/evil/ran\\necho {}\\n' > /run/evil/evil && "
            "chmod +x /run/evil/evil && cp /run/evil/evil /run/evil/sub/evil")
    conf = config(delegate=dict(config()["delegate"], type=plugin_type))
    for command in ("ADD", "DEL"):
        code, out = cni(host, command, conf, cni_path="/usr/lib/cni:/run/evil/sub")
        assert code == 1 and out["code"] == 7 and "delegate.type" in out["msg"], out
    assert host.sh("test -e /run/evil/ran", check=False).returncode != 0, "a binary outside CNI_PATH ran"


@pytest.mark.parametrize("mapping,field", [
    ({"hostPort": "1-65535"}, "runtimeConfig.portMappings[0].hostPort"),
    ({"containerPort": "80"}, "runtimeConfig.portMappings[0].containerPort"),
    ({"hostIP": "fe80::1%0 -j RETURN\nCOMMIT"}, "runtimeConfig.portMappings[0].hostIP"),
    ({"hostIP": "2001:db8::10"}, "runtimeConfig.portMappings[0].hostIP"),  # the container has no IPv6 address
])
def test_bad_port_mappings_are_cni_errors_naming_the_field(cnihost, mapping, field):
    host = cnihost
    before = rules(host)
    code, out = cni(host, "ADD", _chained(**mapping))
    assert code == 1 and out["code"] == 7 and field in out["msg"], out
    assert rules(host) == before


def test_a_chain_of_another_owner_is_never_replaced_through_add(cnihost):
    host = cnihost
    host.sh("nft add table inet filter && nft add chain inet filter input '{ type filter hook input priority 0; }' "
            "&& nft add rule inet filter input tcp dport 22 accept")
    before = rules(host)
    code, out = cni(host, "ADD", config(chain="filter"))
    assert code == 1 and out["code"] == 7 and "not a port_mapper table" in out["msg"], out
    assert rules(host) == before
    assert host.sh("ip -n c1 link show eth0", check=False).returncode != 0  # the delegate's DEL undid its part


def test_a_delegate_result_that_is_not_a_result_is_undone(cnihost):
    host = cnihost
    # a delegate that really sets up the interface (Debian's bridge) but prints something else than a result
    host.sh("mkdir -p /run/fakecni && printf '#!/bin/sh\\nif [ \"$CNI_COMMAND\" = ADD ]; then "
            "/usr/lib/cni/bridge >/dev/null; echo not-json; exit 0; fi\\nexec /usr/lib/cni/bridge\\n' "
            "> /run/fakecni/garbled && chmod +x /run/fakecni/garbled")
    conf = config(delegate=dict(config()["delegate"], type="garbled"))
    code, out = cni(host, "ADD", conf, cni_path="/run/fakecni:/usr/lib/cni")
    assert code == 1 and out["code"] == 103 and "not JSON" in out["msg"], out
    assert host.sh("ip -n c1 link show eth0", check=False).returncode != 0  # the delegate's DEL ran
    assert "10.22." not in host.sh("ls /run/cni-ipam/mesos-test 2>/dev/null; true").stdout
    assert "container_id" not in rules(host)


# -- as real runtimes call it (issue #14): libcni without a cached result, Mesos with its own configuration ----

def test_del_works_from_the_configuration_alone_and_repeats(cnihost):
    """libcni sends DEL without prevResult whenever it has no cached result (a failed ADD, a lost cache, a
    reboot), and without CNI_NETNS once the namespace is gone: the mappings are found by container id."""
    host = cnihost
    conf = _chained(ip="10.23.0.9", hostPort=9191, containerPort=91, protocol="udp")
    assert cni(host, "ADD", conf)[0] == 0
    assert "10.23.0.9" in rules(host)
    bare = dict((k, v) for k, v in conf.items() if k != "prevResult")
    assert cni(host, "DEL", bare, unset=("CNI_NETNS",)) == (0, None)
    assert "10.23.0.9" not in rules(host)
    assert cni(host, "DEL", bare, unset=("CNI_NETNS",)) == (0, None)  # nothing there: success, as the spec asks
    assert cni(host, "DEL", dict(bare, runtimeConfig={}), container="never-added") == (0, None)
    # the port is free again for another container
    assert cni(host, "ADD", _chained(ip="10.23.0.10", hostPort=9191), container="c2")[0] == 0


def test_del_with_a_delegate_and_no_prev_result_runs_the_delegate_del(cnihost):
    host = cnihost
    code, result = cni(host, "ADD", config())
    assert code == 0, result
    assert cni(host, "DEL", config(), unset=("CNI_NETNS",)) == (0, None)
    assert "container_id: c1" not in rules(host)
    assert "10.22." not in host.sh("ls /run/cni-ipam/mesos-test 2>/dev/null; true").stdout  # lease released
    assert cni(host, "DEL", config()) == (0, None)


def test_gc_and_status_need_no_prev_result(cnihost):
    host = cnihost
    conf = dict(_chained(ip="10.23.0.11"), cniVersion="1.1.0")
    assert cni(host, "ADD", conf, container="gone")[0] == 0
    gc = dict((k, v) for k, v in conf.items() if k not in ("prevResult", "runtimeConfig"))
    assert cni(host, "STATUS", gc, container=None) == (0, None)
    assert cni(host, "GC", dict(gc, **{"cni.dev/valid-attachments": []}), container=None) == (0, None)
    assert "10.23.0.11" not in rules(host)
    assert cni(host, "GC", gc, container=None) == (0, None)  # again, nothing there


MESOS_DOC_CONFIG = {  # Mesos' port-mapper documentation, as written there (no cniVersion); our type and subnet
    "name": "port-mapper-test", "type": "hostnet-cni-port-mapper", "excludeDevices": ["mesos-cni9"],
    "chain": "MESOS-TEST-PORT-MAPPER",
    "delegate": {"type": "recorder", "bridge": "mesos-cni0", "isGateway": True, "ipMasq": True,
                 "ipam": {"type": "host-local", "subnet": "192.168.0.0/16", "dataDir": "/run/cni-ipam",
                          "routes": [{"dst": "0.0.0.0/0"}]}},
}
MESOS_ARGS = {"org.apache.mesos": {"network_info": {
    "name": "port-mapper-test", "labels": {"labels": [{"key": "app", "value": "myapp"}]},
    "port_mappings": [{"host_port": 8080, "container_port": 80}, {"host_port": 8081, "container_port": 443}]}}}
# A delegate that records what it was given, then runs Debian's bridge.
RECORDER = ("mkdir -p /run/rec && printf '#!/bin/sh\\nin=$(cat)\\nprintf %%s \"$in\" > /run/rec/$CNI_COMMAND.json\\n"
            "printf %%s \"$CNI_ARGS\" > /run/rec/$CNI_COMMAND.args\\nprintf %%s \"$in\" | exec /usr/lib/cni/bridge\\n'"
            " > /run/rec/recorder && chmod +x /run/rec/recorder")


def test_mesos_as_mesos_calls_it(cnihost):
    """The configuration of Mesos' documentation (no cniVersion), Mesos' args and CNI_ARGS, a real bridge."""
    host = cnihost
    host.sh(RECORDER)
    conf = dict(MESOS_DOC_CONFIG, args=MESOS_ARGS)
    env = {"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web"}
    code, result = cni(host, "ADD", conf, cni_path="/run/rec:/usr/lib/cni", **env)
    assert code == 0, result
    # Mesos reads the address from ip4 (spec.proto NetworkInfo): the result is the delegate's, in 0.1.0's shape
    assert result["ip4"]["ip"].startswith("192.168."), result
    assert "ips" not in result
    assert c1_answers_on_the_mapped_port(host)
    given = json.loads(host.sh("cat /run/rec/ADD.json").stdout)
    assert given["args"] == MESOS_ARGS and given["name"] == "port-mapper-test" and "cniVersion" not in given
    assert host.sh("cat /run/rec/ADD.args").stdout == env["CNI_ARGS"]
    assert cni(host, "DEL", conf, cni_path="/run/rec:/usr/lib/cni", **env) == (0, None)
    assert json.loads(host.sh("cat /run/rec/DEL.json").stdout)["args"] == MESOS_ARGS
    assert "container_id: c1" not in rules(host) and tcp(host, "client", HOST_IP, 8080) == ""
    assert cni(host, "DEL", conf, cni_path="/run/rec:/usr/lib/cni", **env) == (0, None)


@pytest.mark.parametrize("version,shape", [("0.2.0", "ip4"), ("0.3.0", "ips"), ("0.3.1", "ips"), ("0.4.0", "ips")])
def test_older_versions_map_ports_and_answer_in_their_shape(cnihost, version, shape):
    host = cnihost
    code, result = cni(host, "ADD", config(version=version))
    assert code == 0, result
    assert result["cniVersion"] == version and shape in result, result
    assert c1_answers_on_the_mapped_port(host)
    code, out = cni(host, "CHECK", dict(config(version=version), prevResult=result))
    if version < "0.4.0":  # CHECK came with 0.4.0: the skel's answer for older configurations
        assert code == 1 and out["code"] == 1 and out["cniVersion"] == version, out
    else:
        assert code == 0, out
    assert cni(host, "DEL", config(version=version)) == (0, None)
    assert "container_id: c1" not in rules(host)


def test_errors_speak_cni_in_the_configurations_version(cnihost):
    host = cnihost
    assert cni(host, "ADD", config(version="0.3.1"))[0] == 0
    code, out = cni(host, "ADD", config(version="0.3.1"), container="c2")
    assert code == 1 and out["code"] == 100 and out["cniVersion"] == "0.3.1", out
    assert "exclusive" not in out["msg"] and "DEL" in out["msg"], out
    code, out = cni(host, "ADD", dict(MESOS_DOC_CONFIG, chain="bad chain"))
    assert code == 1 and out["cniVersion"] == "0.1.0" and out["msg"].startswith("chain"), out
    code, out = cni(host, "ADD", dict(_chained(), name="bad name!"))
    assert code == 1 and out["code"] == 7 and out["msg"].startswith("name: "), out


# -- the DEL/ADD hot path (issue #14): UDP mappings cost no subprocess and no heavy import -------------------------

def udp(host, ns, address, port, sport):
    argv = ["ip", "netns", "exec", ns, "sh", "-c",
            "echo ping | socat -T1 - UDP:%s:%d,sourceport=%d,reuseaddr" % (address, port, sport)]
    return host.run(argv, check=False).stdout.strip()


def udp_conntrack(host, port):
    return host.sh("conntrack -L -p udp --orig-port-dst %d 2>/dev/null" % port, check=False).stdout.strip()


def test_del_deletes_the_udp_conntrack_entries_so_the_next_container_gets_the_flow(cnihost):
    host = cnihost
    ports = ((5353, 53, "udp"),)
    assert cni(host, "ADD", config(ports=ports), container="c1")[0] == 0
    host.spawn(["socat", "UDP-RECVFROM:53,fork,reuseaddr", "SYSTEM:echo c1"], netns="c1")
    answers = [udp(host, "client", HOST_IP, 5353, 40005) for _attempt in range(20)]
    assert "c1" in answers, answers
    assert "dport=5353" in udp_conntrack(host, 5353)
    assert cni(host, "DEL", config(ports=ports), container="c1") == (0, None)
    assert udp_conntrack(host, 5353) == ""  # the DNAT entry toward c1 went with the mapping
    # the same client socket (source port) now reaches the next container on that host port, not c1's old address
    code, result = cni(host, "ADD", config(ports=ports), container="c2")
    assert code == 0, result
    host.spawn(["socat", "UDP-RECVFROM:53,fork,reuseaddr", "SYSTEM:echo c2"], netns="c2")
    answers = [udp(host, "client", HOST_IP, 5353, 40005) for _attempt in range(10)]
    assert "c2" in answers, answers


# Runs the plugin in this Python with an audit hook: the program of every process it starts, and whether pyroute2
# (~0.1 s of imports, and its platform probe runs `uname -p` and `file -b`) got imported.
AUDITED = r"""
import json, os, runpy, sys
started = []
def hook(event, args):
    if event == "subprocess.Popen":
        started.append(os.path.basename(str(args[0] or (args[1] if isinstance(args[1], (str, bytes)) else args[1][0]))))
    elif event in ("os.posix_spawn", "os.exec", "os.system"):
        started.append("%s %r" % (event, args)[:100])
sys.addaudithook(hook)
out = sys.stdout
sys.stdout = sys.stderr
sys.argv = [sys.argv[1]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2")
out.write(json.dumps({"code": code, "started": started, "heavy": heavy}))
"""


LEGACY_TOOLS = ["iptables-legacy-save", "ip6tables-legacy-save", "ip6tables-legacy-restore"]


# nftables: nothing at all; iptables-legacy: only the backend's own save/restore tools (libiptc does IPv4 in
# process), never ldconfig, gcc or ld (python-iptables' library lookup) nor uname or file (pyroute2's platform probe)
@pytest.mark.parametrize("backend,allowed", [("nftables", []), ("iptables-legacy", LEGACY_TOOLS)])
def test_add_and_del_with_udp_mappings_start_no_process_and_import_nothing_heavy(cnihost, backend, allowed):
    host = cnihost
    listing = "nft list ruleset"
    if backend == "iptables-legacy":
        host.sh("iptables-legacy -t nat -S >/dev/null")  # legacy tables loaded: the plugin stays on legacy
        listing = "iptables-legacy-save -t nat"
    conf = {"cniVersion": "1.0.0", "name": "hot", "type": "hostnet-cni-port-mapper",
            "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.27.0.2/24"}, {"address": "fd00:27::2/64"}]},
            "runtimeConfig": {"portMappings": [{"hostPort": 6053, "containerPort": 53, "protocol": "udp"},
                                               {"hostPort": 6080, "containerPort": 80, "protocol": "tcp"}]}}
    # a UDP flow to the port from before: DEL has something to delete
    host.sh("conntrack -I -p udp -s 192.0.2.2 -d 192.0.2.1 --sport 40006 --dport 6053 -t 60 2>/dev/null")
    for command in ("ADD", "DEL", "DEL"):
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="hot1", CNI_NETNS="/var/run/netns/c1",
                   CNI_IFNAME="eth0", CNI_PATH=CNI_PATH)
        proc = host.run(["/usr/bin/python3", "-c", AUDITED, PLUGIN], check=False, env=env, input=json.dumps(conf))
        seen = json.loads(proc.stdout)
        assert seen["code"] == 0 and seen["heavy"] == [], (command, seen, proc.stderr)
        assert set(seen["started"]) <= set(allowed), (command, seen)
        if command == "ADD":
            assert "container_id: hot1" in host.sh(listing).stdout
    assert "container_id: hot1" not in host.sh(listing).stdout
    assert udp_conntrack(host, 6053) == ""
