# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the ports watcher looks for cgroups when its configuration does not say (cgroup_root)."""

import json

import pytest

from module_utils import cgroups, watcher
from module_utils.errors import ValidationError
from test_capabilities import HYBRID, UNIFIED, V1_ONLY


@pytest.fixture
def mountinfo(monkeypatch):
    """mountinfo(lines): the watcher's detection sees these mounts (every one reachable)."""
    def use(lines):
        monkeypatch.setattr(cgroups, "host_layout", lambda: cgroups.layout(lines))
    return use


def config(tmp_path, **options):
    path = tmp_path / "watcher.json"
    path.write_text(json.dumps(dict({"syslog": False}, **options)))
    return str(path)


@pytest.mark.parametrize("lines,root", [(UNIFIED, "/sys/fs/cgroup"), (HYBRID, "/sys/fs/cgroup/unified")])
def test_cgroup_root_defaults_to_the_cgroup2_mount_of_either_layout(tmp_path, mountinfo, lines, root):
    mountinfo(lines)
    assert watcher.load_config(config(tmp_path)).cgroup_root == root


def test_without_cgroup2_the_watcher_refuses_naming_cgroup_root_and_what_is_missing(tmp_path, mountinfo):
    mountinfo(V1_ONLY)
    with pytest.raises(ValidationError) as err:
        watcher.load_config(config(tmp_path))
    assert err.value.field == "cgroup_root"
    assert "no cgroup v2 hierarchy is mounted" in err.value.reason and "cgroup v1-only host" in err.value.reason


def test_a_cgroup_root_given_is_used_as_given_on_a_cgroup_v1_host(tmp_path, mountinfo):
    mountinfo(V1_ONLY)
    assert watcher.load_config(config(tmp_path, cgroup_root="/sys/fs/cgroup/freezer")).cgroup_root == \
        "/sys/fs/cgroup/freezer"
