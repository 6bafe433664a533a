# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cni_port_mapper role writes and deletes only inside its configuration directory (issue #17)."""

import pytest

from test_cni import cni_tree, play, role_vars

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
