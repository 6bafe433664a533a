# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cni_port_mapper role writes and deletes only inside its configuration directory (issue #17), and writes
Mesos delegate configurations and chained network lists that runtimes use (issue #14)."""

import json

import pytest

from test_cni import (CNI_PATH, HOST_IP, TOPOLOGY, c1_answers_on_the_mapped_port, cni, cni_tree, config, mesos_network, play,
                      role_vars, rules, tcp)

BRIDGE = {"type": "bridge", "bridge": "cni0"}


@pytest.mark.parametrize("network,field", [
    ({"name": "../../escape", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": "a/b", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": "..", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": ".hidden", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": "", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": "n\nx", "delegate": BRIDGE}, "cni_port_mapper_networks[1].name"),
    ({"name": "ok", "file": "../../victim.conf", "delegate": BRIDGE}, "cni_port_mapper_networks[1].file"),
    ({"name": "../../victim", "state": "absent"}, "cni_port_mapper_networks[1].name"),
    ({"name": "ok", "file": "../../victim.conf", "state": "absent"}, "cni_port_mapper_networks[1].file"),
])
def test_names_that_leave_the_config_directory_are_refused_before_anything_is_written(host, network, field):
    host.sh("echo keep > /run/victim.conf")
    before = host.sh("ls -A /run").stdout
    code, _stats, results = play(host, role_vars([{"name": "fine-1.x_y", "delegate": BRIDGE}, network]))
    failed = [r for r in results if r.get("failed")]
    assert code != 0 and failed, results
    messages = [item.get("msg", "") for item in failed[0].get("results", [])]
    assert any(msg.startswith(field + ": ") and "is not a safe file name" in msg for msg in messages), messages
    assert cni_tree(host) == ""
    assert host.sh("cat /run/victim.conf").stdout == "keep\n"
    assert host.sh("ls -A /run").stdout == before


# -- mode: chained, the network lists of podman, containerd and CRI-O ---------------------------------------

ROLE_PLUGIN_DIR = "/run/cni/bin"
PORT_MAPPINGS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]


def chained_network(**extra):
    item = {"name": "podnet", "mode": "chained", "plugins": [config()["delegate"]], "chain": "PODNET",
            "exclude_devices": ["eth9"]}
    item.update(extra)
    return item


def libcni(host, command, conflist, container="c1", cached=None):
    """Drive a network list as libcni does: each plugin in order (DEL: in reverse) with the list's cniVersion
    and name, the previous plugin's result (DEL: the cached ADD result) as prevResult, and runtimeConfig
    for the capabilities the plugin declares. Returns (exit code, the list's result or the error object)."""
    plugins = conflist["plugins"] if command == "ADD" else list(reversed(conflist["plugins"]))
    prev = cached
    for plugin in plugins:
        conf = dict(plugin, cniVersion=conflist["cniVersion"], name=conflist["name"])
        if prev is not None:
            conf["prevResult"] = prev
        if (plugin.get("capabilities") or {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": PORT_MAPPINGS}
        # the first on CNI_PATH, looked up inside the host (the role installed ours in its own mount namespace)
        executable = host.run(["sh", "-c", 'for d in "$0" "$1"; do test -x "$d/$2" && echo "$d/$2" && break; done',
                               ROLE_PLUGIN_DIR, CNI_PATH, plugin["type"]]).stdout.strip()
        code, out = cni(host, command, conf, container=container, plugin=executable,
                        cni_path=ROLE_PLUGIN_DIR + ":" + CNI_PATH)
        if code != 0:
            return code, out
        if command == "ADD":
            prev = out
    return 0, prev if command == "ADD" else None


def conf_files(host):
    return host.sh("ls /run/cni/net.d 2>/dev/null", check=False).stdout.split()


def task(results, name):
    return [r for r in results if r["_task"].endswith(" : " + name)][0]


def test_role_writes_a_chained_conflist_that_a_runtime_uses(host):
    host.sh(TOPOLOGY)  # a client namespace and the container namespaces c1, c2
    variables = role_vars([chained_network()])
    # check mode predicts the file (diff mode shows it) and touches nothing
    code, stats, results = play(host, variables, check=True)
    assert code == 0 and stats["localhost"]["changed"] > 0, stats
    assert cni_tree(host) == ""
    diff = task(results, "Write the network configurations")["results"][0]["diff"]
    assert '"type": "hostnet-cni-port-mapper"' in diff[0]["after"], diff
    code, stats, _results = play(host, variables)
    assert code == 0 and stats["localhost"]["changed"] > 0, stats
    assert conf_files(host) == ["podnet.conflist"]
    written = json.loads(host.sh("cat /run/cni/net.d/podnet.conflist").stdout)
    assert written == {"cniVersion": "1.0.0", "name": "podnet", "plugins": [
        config()["delegate"],
        {"type": "hostnet-cni-port-mapper", "capabilities": {"portMappings": True}, "chain": "PODNET",
         "excludeDevices": ["eth9"]}]}
    # the second run, and a check-mode run, change nothing
    installed = cni_tree(host)
    for check in (False, True):
        code, stats, _results = play(host, variables, check=check)
        assert code == 0 and stats["localhost"]["changed"] == 0, stats
        assert cni_tree(host) == installed
    # a runtime drives the written list (bridge, then our plugin with prevResult and runtimeConfig.portMappings)
    code, result = libcni(host, "ADD", written)
    assert code == 0, result
    assert result["ips"][0]["address"].startswith("10.22.")
    assert c1_answers_on_the_mapped_port(host)
    assert "container_id: c1" in rules(host)
    assert libcni(host, "DEL", written, cached=result) == (0, None)
    assert "container_id: c1" not in rules(host)
    assert tcp(host, "client", HOST_IP, 8080) == ""
    # snat and masqAll are written only when set
    code, stats, _results = play(host, role_vars([chained_network(snat=False, masq_all=True, cni_version="1.1.0")]))
    assert code == 0 and stats["localhost"]["changed"] == 1, stats
    written = json.loads(host.sh("cat /run/cni/net.d/podnet.conflist").stdout)
    assert written["cniVersion"] == "1.1.0"
    assert (written["plugins"][-1]["snat"], written["plugins"][-1]["masqAll"]) == (False, True)


def test_role_switches_a_network_between_modes_and_removes_only_its_own_files(host):
    host.sh("mkdir -p /run/cni/net.d && echo '{\"cniVersion\": \"1.0.0\", \"name\": \"keep\", \"type\": \"bridge\"}'"
            " > /run/cni/net.d/keep.conf && echo 'not json' > /run/cni/net.d/mesos-test.conflist")
    foreign = host.sh("sha256sum /run/cni/net.d/*").stdout
    # a delegate network whose .conflist is someone else's: the role leaves it
    assert play(host, role_vars([mesos_network(), chained_network(name="keep")]))[0] == 0
    assert conf_files(host) == ["keep.conf", "keep.conflist", "mesos-test.conf", "mesos-test.conflist"]
    assert host.sh("sha256sum /run/cni/net.d/keep.conf").stdout in foreign
    # switching mode: check mode predicts the removal and changes nothing ...
    host.sh("rm /run/cni/net.d/mesos-test.conflist")
    switched = role_vars([mesos_network(delegate=None, mode="chained", plugins=[config()["delegate"]]),
                          chained_network(name="keep")])
    before = cni_tree(host)
    code, stats, results = play(host, switched, check=True)
    assert code == 0 and stats["localhost"]["changed"] == 2, stats
    assert cni_tree(host) == before
    removal = task(results, "Remove the role's files of networks that changed name or are absent")["results"]
    assert [(r["path"], r["diff"]["before"]["state"], r["diff"]["after"]["state"]) for r in removal] == [
        ("/run/cni/net.d/mesos-test.conf", "file", "absent")], removal
    # ... and the run writes the .conflist and removes the .conf the role wrote, once
    code, stats, _results = play(host, switched)
    assert code == 0 and stats["localhost"]["changed"] == 2, stats
    assert conf_files(host) == ["keep.conf", "keep.conflist", "mesos-test.conflist"]
    assert json.loads(host.sh("cat /run/cni/net.d/mesos-test.conflist").stdout)["plugins"][-1]["chain"] == "MESOS-TEST"
    assert play(host, switched)[1]["localhost"]["changed"] == 0
    # and back: the .conflist goes, the .conf returns
    code, stats, _results = play(host, role_vars([mesos_network(), chained_network(name="keep")]))
    assert code == 0 and stats["localhost"]["changed"] == 2, stats
    assert conf_files(host) == ["keep.conf", "keep.conflist", "mesos-test.conf"]
    # state=absent removes the role's files of either mode, never the foreign keep.conf
    code, stats, _results = play(host, role_vars([{"name": "keep", "state": "absent"},
                                                  {"name": "mesos-test", "state": "absent"}]))
    assert code == 0 and stats["localhost"]["changed"] == 1, stats  # one task removes both
    assert conf_files(host) == ["keep.conf"]
    assert host.sh("sha256sum /run/cni/net.d/keep.conf").stdout in foreign


@pytest.mark.parametrize("network,words", [
    (chained_network(name="a/b"), "cni_port_mapper_networks[0].name: \"a/b\" is not a safe file name"),
    (chained_network(plugins=[{"type": "/usr/bin/sh"}]),
     "cni_port_mapper_networks[0].plugins[0].type: \"/usr/bin/sh\" is not a plugin name"),
    (chained_network(plugins=[BRIDGE, {"type": "../../../usr/bin/sh"}]),
     "cni_port_mapper_networks[0].plugins[1].type: \"../../../usr/bin/sh\" is not a plugin name"),
    (chained_network(plugins=[{"bridge": "cni0"}]), "cni_port_mapper_networks[0].plugins[0].type: null is not"),
    (chained_network(plugins=[BRIDGE, {"type": "hostnet-cni-port-mapper"}]),
     "cni_port_mapper_networks[0].plugins[1].type: hostnet-cni-port-mapper is the plugin the role configures"),
    (chained_network(plugins=None), "cni_port_mapper_networks[0].plugins (network podnet): required with mode chained"),
    (chained_network(plugins=[]), "cni_port_mapper_networks[0].plugins (network podnet): required with mode chained"),
    (chained_network(delegate=BRIDGE), "cni_port_mapper_networks[0].delegate: not used with mode chained"),
    (chained_network(file="podnet.conf"), "cni_port_mapper_networks[0].file: \"podnet.conf\" must end in .conflist"),
    (mesos_network(plugins=[BRIDGE]), "cni_port_mapper_networks[0].plugins: only used with mode chained"),
    (mesos_network(delegate={"type": "/usr/bin/sh"}),
     "cni_port_mapper_networks[0].delegate.type: \"/usr/bin/sh\" is not a plugin name"),
    (mesos_network(file="m.conflist"), "cni_port_mapper_networks[0].file: \"m.conflist\" is a network list name"),
    (chained_network(mode="list"), "mode must be one of: delegate, chained"),
    (chained_network(cni_version="0.2.0"), "cni_port_mapper_networks[0].cni_version: 0.2.0 has no plugin chaining"),
])
def test_role_refuses_a_bad_chained_network_and_writes_nothing(host, network, words):
    code, _stats, results = play(host, role_vars([network]))
    failed = [r for r in results if r.get("failed")]
    assert code != 0 and failed, results
    messages = [failed[0]["msg"]] + [item.get("msg", "") for item in failed[0].get("results", [])]
    assert any(words in msg for msg in messages), messages
    assert cni_tree(host) == ""
