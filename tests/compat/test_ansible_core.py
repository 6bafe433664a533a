# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection on every supported ansible-core, as a user installs and runs it.

For each version in COMPAT_CORES (`make test-compat` sets it): that version's venv (.build/core-<v>) with
the collection tarball installed by its own ansible-galaxy (.build/core-<v>/collections), and one
playbook in a hermetic host, run by that version's ansible-playbook: the filters on the controller (the
policy check, a bad policy named by its field, a port filter) and the host_network module converging a
namespace, a veth pair and an nftables port mapping. Check mode first changes nothing, the real run
changes the host, the second run and a check-mode run change nothing.
"""

import json
import os
import tempfile

import pytest

from harness.assertions import assert_same
from harness.hermetic import REPO, HermeticHost
from harness.runner import INTERPRETERS, _task_results, ansible_env

HERE = os.path.dirname(os.path.abspath(__file__))
CORES = os.environ.get("COMPAT_CORES", "").split() or sorted(
    name[len("requirements-ansible-core-"):-len(".txt")] for name in os.listdir(HERE)
    if name.startswith("requirements-ansible-core-"))
PYTHON = INTERPRETERS["os-pyroute2-0.7"]  # the managed host's Python: Debian 12's, with its pyroute2

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    policy:
      agent_ports: 31000-32000
      tasks: [{name: web, ports: 31000-31015}]
      namespaces: [{name: web}]
      veths:
        - {name: veth-web, peer: eth0, peer_netns: web, addresses: [10.77.0.1/30], peer_addresses: [10.77.0.2/30],
           peer_gateway: 10.77.0.1}
      port_mappers:
        - network: web
          backend: nftables
          mappings:
            - {task: web, container_id: web, container_ip: 10.77.0.2, host_port: 31000, container_port: 80}
  tasks:
    - name: Check the policy on the controller
      ansible.builtin.set_fact:
        plan: "{{ policy | hostnet.isolation.network_policy(inventory_hostname) }}"
        needs: "{{ policy | hostnet.isolation.network_policy_requirements }}"
        free: "{{ '31000-32000' | hostnet.isolation.port_difference('31000-31015') }}"

    - name: A bad policy fails naming its field
      block:
        - name: Check a bad policy
          ansible.builtin.set_fact:
            unexpected: "{{ policy | combine({'tasks': [{'name': 'web', 'ports': '31000-99999'}]})
                            | hostnet.isolation.network_policy(inventory_hostname) }}"
      rescue:
        - name: Keep the failure
          ansible.builtin.set_fact:
            bad: "{{ ansible_failed_result.msg }}"

    - name: Converge the host
      hostnet.isolation.host_network:
        host: "{{ inventory_hostname }}"
        policy: "{{ policy }}"
      register: converged

    - name: Report
      ansible.builtin.debug:
        msg: "{{ {'plan': plan, 'needs': needs, 'free': free, 'bad': bad,
                  'changed': converged.changed} | to_json }}"
"""


@pytest.fixture
def host():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    h = HermeticHost("hn-compat-%s" % worker).start()
    try:
        yield h
    finally:
        h.stop()


def run(host, core, check=False):
    """The playbook by ``core``'s ansible-playbook in ``host``: (rc, stats, results by task name)."""
    venv = os.path.join(REPO, ".build", "core-%s" % core)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=os.path.join(REPO, ".build"), delete=False) as f:
        f.write(PLAYBOOK)
    argv = [os.path.join(venv, "bin", "ansible-playbook"), "-c", "local", "-i", "localhost,", f.name,
            "-e", json.dumps({"ansible_python_interpreter": PYTHON})]
    try:
        proc = host.run(argv + (["--check"] if check else []), check=False, env=ansible_env({
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(venv, "collections"),
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
            "ANSIBLE_STDOUT_CALLBACK": "compat_json",
            "PATH": os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", "")}))
    finally:
        os.unlink(f.name)
    try:
        data, results = _task_results(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook %s did not return JSON (%d):\n%s\n%s" % (
            core, proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, data.get("stats", {}).get("localhost", {}), dict((r["_task"], r) for r in results)


@pytest.mark.parametrize("core", CORES)
def test_installed_collection_converges_idempotently(host, core):
    venv = os.path.join(REPO, ".build", "core-%s" % core)
    installed = os.path.join(venv, "collections", "ansible_collections", "hostnet", "isolation")
    assert os.path.isdir(installed), "no collection installed for ansible-core %s: run `make test-compat`" % core
    before = host.snapshot()

    rc, _stats, results = run(host, core, check=True)
    assert rc == 0, failures(results)
    assert results["Converge the host"]["changed"], "check mode on a fresh host predicts no change"
    assert_same(before, host.snapshot(), "host after a check-mode run on ansible-core %s" % core)

    rc, _stats, results = run(host, core)
    assert rc == 0, failures(results)
    assert results["Converge the host"]["changed"]
    report = json.loads(results["Report"]["msg"])
    assert report["plan"]["namespaces"][0]["name"] == "web", report["plan"]
    assert report["free"] == "31016-32000", report
    assert report["needs"] == ["nftables", "pyroute2"], report
    assert "host_network_policy.tasks[0].ports: 99999 is not a port" in report["bad"], report["bad"]
    assert host.sh("ip netns list | cut -d' ' -f1").stdout.split() == ["web"]
    assert "10.77.0.2/30" in host.sh("ip -n web -o addr show dev eth0").stdout
    assert "31000" in host.run(["nft", "list", "ruleset"]).stdout
    after = host.snapshot()

    for check in (False, True):
        rc, stats, results = run(host, core, check=check)
        assert rc == 0, failures(results)
        assert stats["changed"] == 0, [name for name, r in results.items() if r.get("changed")]
    assert_same(after, host.snapshot(), "host after the no-op runs on ansible-core %s" % core)


def failures(results):
    return ["%s: %s" % (name, r.get("msg")) for name, r in results.items() if r.get("failed")]
