# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight refuses on the controller every value the host would refuse, field by field.

Generic over the parts' schemas (``OPTIONS`` in each core part, contract.py): every option of every
policy section is given each of its schema's bad values in an otherwise valid policy, and the
controller's check (Ansible's argument spec validation of the policy, then the policy check with each
part's own validation, without the host) must refuse it naming exactly that field. A new option
without bad values fails here, so a new field is covered without a new test.
"""

import copy
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from module_utils import contract, host_network, policy

# The filter plugin as the controller runs it, on the very core modules imported above (a second copy of
# the core would register its pyroute2 plugins twice).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".build", "collections"))
for _name, _module in list(sys.modules.items()):
    if _name == "module_utils" or _name.startswith("module_utils."):
        sys.modules["ansible_collections.hostnet.isolation.plugins." + _name] = _module
from ansible_collections.hostnet.isolation.plugins.filter import policy as filters  # noqa: E402 pylint: disable=C0413

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

BASE = {
    "agent_ports": "31000-32000",
    "tasks": [{"name": "web", "ports": "31000-31015"}],
    "namespaces": [{"name": "web", "symlinks": ["/run/mesos/netns/web"]}],
    "veths": [{"name": "veth-web", "peer": "eth0", "peer_netns": "web", "addresses": ["10.77.0.1/30"],
               "peer_addresses": ["10.77.0.2/30"], "peer_gateway": "10.77.0.1", "mtu": 1500}],
    "qdiscs": [{"device": "veth-web", "kind": "htb", "rate": "10mbit"}],
    "redirects": [{"veth": "veth-web", "task": "web", "devices": ["eth1"]}],
    "ephemeral_ports": [{"container": "web", "netns": "web", "size": 1024}],
    "port_mappers": [{"network": "web", "backend": "nftables", "mappings": [
        {"task": "web", "container_id": "web", "container_ip": "10.77.0.2", "host_port": 31000,
         "container_port": 80}]}],
}


def controller_check(value):
    """What the role's preflight runs: the network_policy filter (coercion by the spec, then the check)."""
    return filters.network_policy(value, "h1")


def _cases():
    for section, part, _module in host_network.PARTS:
        drop = host_network.SECTION_DROP.get(section, ())
        for name, option in part.OPTIONS.items():
            if name in drop:
                continue
            for bad in option.get("bad") or [None]:
                yield pytest.param(section, name, option, bad, id="%s.%s=%r" % (section, name, bad))


def test_the_base_policy_passes():
    plan = policy.check("h1", copy.deepcopy(BASE))
    assert plan["veths"][0]["name"] == "veth-web"


@pytest.mark.parametrize("section,name,option,bad", list(_cases()))
def test_every_bad_value_of_every_option_is_refused_naming_the_field(section, name, option, bad):
    assert option.get("bad"), "%s option %s has no bad values in its schema (OPTIONS[%r]['bad'])" % (
        section, name, name)
    value = copy.deepcopy(BASE)
    item = value[section][0]
    item.update(option.get("bad_with") or {})
    item[name] = bad
    field = "%s.%s[0].%s" % (policy.ROOT, section, name)
    # the controller's preflight (the network_policy filter): Ansible's conversion, then the policy check
    with pytest.raises(AnsibleFilterError) as caught:
        controller_check(copy.deepcopy(value))
    text = str(caught.value)
    assert field in text or ("'%s'" % name in text and "'%s'" % section in text), text
    # the core check alone (what the module runs on the host after Ansible's conversion) names it exactly,
    # unless the value is one Ansible's conversion already refuses (a wrong type)
    if "we were unable to convert" not in text and "is of type" not in text and "must be one of" not in text:
        with pytest.raises(policy.PolicyError) as caught:
            policy.check("h1", value)
        assert any(f == field or f.startswith(field + "[") or f.startswith(field + ".")
                   for f, _reason in caught.value.problems), caught.value.problems


def test_the_module_spec_and_docs_come_from_the_schemas():
    """tools/policy_docs.py --check: the role's spec and the module's docs are what the schemas give."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "policy_docs.py"), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_every_part_keeps_the_contract():
    for _section, part, _module in host_network.PARTS:
        assert callable(part.spec) and callable(part.converge)
        assert isinstance(part.OPTIONS, dict) and "state" in part.OPTIONS
        spec = contract.argument_spec(part.OPTIONS)
        assert all("bad" not in o for o in spec.values())


@pytest.mark.parametrize("path, bad, field", [
    (("port_mappers", 0, "mappings", 0, "host_port"), "31000,31002", "port_mappers[0].mappings[0].host_port"),
    (("port_mappers", 0, "mappings", 0, "container_ip"), "10.246.0.300", "port_mappers[0].mappings[0].container_ip"),
    (("veths", 0, "name"), "veth:web", "veths[0].name"),
    (("veths", 0, "peer_addresses"), ["10.77.0.2/33"], "veths[0].peer_addresses"),
    (("veths", 0, "mtu"), 70000, "veths[0].mtu"),
    (("namespaces", 0, "symlinks"), ["run/mesos/netns/web"], "namespaces[0].symlinks"),
    (("qdiscs", 0, "rate"), "10 lightyears", "qdiscs[0].rate"),
    (("port_mappers", 0, "chain"), 'web"; flush ruleset; "', "port_mappers[0].chain"),
])
def test_the_values_that_passed_the_old_preflight_are_refused(path, bad, field):
    """The issue's list: each passed the preflight and failed on the host after changing it."""
    value = copy.deepcopy(BASE)
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(AnsibleFilterError) as caught:
        controller_check(value)
    assert "host_network_policy.%s" % field in str(caught.value), str(caught.value)


def test_the_controllers_policy_check_does_not_load_pyroute2():
    """The filter runs in every worker Ansible forks for a host: it imports the parts to check each item, and
    pyroute2 (which only the host needs, for netlink) is loaded on first use, not with them."""
    code = ("import sys\n"
            "from ansible_collections.hostnet.isolation.plugins.filter import policy\n"
            "policy.network_policy({'tasks': [{'name': 'web', 'ports': '31000'}], 'qdiscs': [{'device': 'eth0',"
            " 'kind': 'fq', 'rate': '10mbit'}], 'veths': [{'name': 'v', 'peer': 'p'}]}, 'h1')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'iptc')))\n")
    collections = os.path.join(os.path.dirname(__file__), "..", "..", ".build", "collections")
    proc = subprocess.run([sys.executable, "-c", code], cwd=collections, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
