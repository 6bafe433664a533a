# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import re

import pytest

from module_utils import capabilities
from module_utils.errors import ValidationError

HYBRID = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
""".splitlines()
UNIFIED = ["30 1 0:27 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"]


def test_cgroup_layouts():
    assert capabilities.cgroup_layout(HYBRID) == {
        "mode": "hybrid", "v2_mount": "/sys/fs/cgroup/unified", "v1_controllers": ["cpu", "cpuacct", "memory"]}
    assert capabilities.cgroup_layout(UNIFIED)["mode"] == "v2"
    assert capabilities.cgroup_layout([l for l in HYBRID if "cgroup2" not in l])["mode"] == "v1"
    assert capabilities.cgroup_layout([])["mode"] == "none"


@pytest.mark.parametrize("text,expected", [
    ("iptables v1.8.9 (nf_tables)", ("1.8.9", "nft")),
    ("iptables v1.8.7 (legacy)", ("1.8.7", "legacy")),
    ("iptables v1.4.21", ("1.4.21", "legacy")),
    ("garbage", (None, None)),
])
def test_iptables_version(text, expected):
    assert capabilities.parse_iptables_version(text) == expected


def test_require_vocabulary_and_messages():
    facts = dict((name, {"available": True, "probe": "p", "detail": "d"}) for name in capabilities.CAPABILITIES)
    facts["qdisc_fq_codel"] = {"available": False, "probe": "RTM_NEWQDISC fq_codel", "detail": "ENOENT"}
    missing = capabilities.check_required(facts, ["qdisc_htb", "qdisc_fq_codel"])
    assert missing == ["qdisc_fq_codel (fq_codel qdisc (sch_fq_codel)): ENOENT [probe: RTM_NEWQDISC fq_codel]"]
    with pytest.raises(ValidationError) as err:
        capabilities.validate_required(["qdisc_htb", "htb"])
    assert err.value.field == "require[1]" and "'htb'" in err.value.reason


def test_cake_and_fq_are_required_by_name():
    facts = dict((name, {"available": True, "probe": "p", "detail": "d"}) for name in capabilities.CAPABILITIES)
    facts["qdisc_cake"] = {"available": False, "probe": "RTM_NEWQDISC root cake", "detail": "refused: ENOENT"}
    assert capabilities.check_required(facts, ["qdisc_fq", "qdisc_cake"]) == [
        "qdisc_cake (cake qdisc (sch_cake)): refused: ENOENT [probe: RTM_NEWQDISC root cake]"]


def test_the_capabilities_module_documents_every_fact_name():
    """The names ``require`` accepts are the ones the module's documentation lists."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "modules", "capabilities.py")
    with open(path) as f:
        text = f.read()
    require = text[text.index("  require:"):text.index("    type: list")]
    documented = set(re.findall(r"V\((\w+)\)", require))
    assert documented == set(capabilities.CAPABILITIES)
