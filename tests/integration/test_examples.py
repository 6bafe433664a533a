# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's EXAMPLES run as a playbook in a hermetic host, as documented."""

import ast
import os

import pytest
import yaml

from harness.hermetic import REPO
from harness.runner import INTERPRETERS, run_playbook

MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "plugins", "modules")) if f.endswith(".py"))


def examples_of(module):
    """The EXAMPLES string of a module, read without importing it."""
    with open(os.path.join(REPO, "plugins", "modules", module + ".py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXAMPLES":
            return node.value.value
    raise AssertionError("%s has no EXAMPLES" % module)


# Modules whose examples converge the machine's own service manager: a hermetic host has no systemd of
# its own, and systemctl would reach the machine's. The molecule ports_watcher scenario runs this module
# (through its role) in systemd containers instead.
NEEDS_SYSTEMD = ("ports_watcher",)


@pytest.mark.parametrize("python", sorted(INTERPRETERS))
@pytest.mark.parametrize("module", MODULES)
def test_examples_run(host, module, python):
    if module in NEEDS_SYSTEMD:
        pytest.skip("%s needs systemd as PID 1 (molecule/ports_watcher runs it)" % module)
    tasks = yaml.safe_load(examples_of(module))
    assert tasks, "%s: EXAMPLES is empty" % module
    # What the examples take from their surroundings: a running container process, a bridge that
    # carries the container subnets the port_mapper examples map to, and a reachable cgroup v2 hierarchy
    # (the hermetic host's own sysfs hides the machine's cgroup mounts; every current distribution has one).
    host.sh("mount -t cgroup2 none /sys/fs/cgroup")
    host.sh("ip link add br-apps type bridge && ip link set br-apps up && ip addr add 10.88.0.1/16 dev br-apps"
            " && ip addr add 10.89.0.1/16 dev br-apps && ip addr add fd00:88::1/64 dev br-apps nodad")
    app_pid = host.start_app()
    play = [{"name": "EXAMPLES of hostnet.isolation.%s" % module, "hosts": "localhost", "gather_facts": False,
             "tasks": tasks}]
    rc, stats, results = run_playbook(host, yaml.safe_dump(play), INTERPRETERS[python],
                                      extra_vars={"app_pid": app_pid, "bridge_name": "br-apps"})
    # (a failure an example expects is marked ignore_errors; it counts as "ignored", not "failures")
    assert rc == 0 and stats["localhost"]["failures"] == 0, "\n".join(
        "%s: %s" % (r["_task"], r.get("msg")) for r in results if r.get("failed"))
    ran = [r["_task"] for r in results]
    assert ran == [t["name"] for t in tasks], "not every example ran: %s" % ran
