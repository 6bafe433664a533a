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
# CentOS 7 (systemd 219, kernel 3.10): cgroup v1 only
V1_ONLY = """\
18 62 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw,seclabel
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,seclabel,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,seclabel,xattr,\
release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,seclabel,freezer
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,seclabel,memory
30 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,seclabel,cpuacct,cpu
""".splitlines()


def test_cgroup_layouts():
    assert capabilities.cgroup_layout(HYBRID) == {
        "mode": "hybrid", "v2_mount": "/sys/fs/cgroup/unified", "v1_controllers": ["cpu", "cpuacct", "memory"]}
    assert capabilities.cgroup_layout(UNIFIED) == {"mode": "v2", "v2_mount": "/sys/fs/cgroup", "v1_controllers": []}
    assert capabilities.cgroup_layout([l for l in HYBRID if "cgroup2" not in l])["mode"] == "v1"
    assert capabilities.cgroup_layout([])["mode"] == "none"


def test_a_cgroup_v1_only_host_has_no_cgroup_v2_and_the_facts_say_so():
    info, cgroup_v2 = capabilities.probe_cgroups(V1_ONLY)
    assert info == {"mode": "v1", "v2_mount": None, "v1_controllers": ["cpu", "cpuacct", "freezer", "memory"]}
    assert cgroup_v2["available"] is False and cgroup_v2["mount"] is None
    assert cgroup_v2["detail"] == "cgroup mode v1: no cgroup2 file system mounted (cgroup v1 only: cpu, cpuacct, " \
                                  "freezer, memory)"
    facts = dict((name, {"available": True}) for name in capabilities.CAPABILITIES)
    facts["cgroup_v2"] = cgroup_v2
    missing = capabilities.check_required(facts, ["sock_diag", "cgroup_v2"])
    assert missing == ["cgroup_v2 (a mounted cgroup v2 hierarchy): cgroup mode v1: no cgroup2 file system mounted "
                       "(cgroup v1 only: cpu, cpuacct, freezer, memory) [probe: /proc/self/mountinfo]"]


def test_a_cgroup_mount_hidden_under_a_later_mount_does_not_count():
    """As inside a mount namespace with a new sysfs over /sys: listed in mountinfo, out of reach."""
    hidden = HYBRID + ["40 18 0:30 / /sys rw - sysfs sysfs rw", "41 40 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw"]
    reachable = {"/sys/fs/cgroup"}
    info = capabilities.cgroup_layout(hidden, visible=lambda path, fstype: path in reachable)
    assert info == {"mode": "v2", "v2_mount": "/sys/fs/cgroup", "v1_controllers": []}
    reachable = set()
    assert capabilities.cgroup_layout(hidden, visible=lambda path, fstype: path in reachable)["mode"] == "none"


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


def test_gather_with_names_runs_only_the_probes_that_answer_them(monkeypatch):
    ran = []
    yes = capabilities._cap(True, "fake")
    monkeypatch.setattr(capabilities, "probe_iptables", lambda: ran.append("iptables") or (yes, yes))
    monkeypatch.setattr(capabilities, "probe_libnl", lambda: ran.append("libnl") or yes)
    monkeypatch.setattr(capabilities, "probe_bpf", lambda: ran.append("bpf") or yes)
    monkeypatch.setattr(capabilities, "_in_child", lambda func: ran.append("child") or {})
    facts = capabilities.gather(["cgroup_v2"])
    assert ran == [] and set(facts) == {"kernel", "python", "cgroup", "cgroup_v2", "missing"}
    capabilities.gather(["iptables_wait", "qdisc_htb"])
    assert ran == ["iptables", "child"]
    del ran[:]
    capabilities.gather()
    assert ran == ["libnl", "iptables", "bpf", "child"]


def test_the_throwaway_namespace_probes_only_the_groups_asked_for(monkeypatch):
    monkeypatch.setattr(capabilities.nsutil, "unshare", lambda flags: None)
    monkeypatch.setattr(capabilities, "_probe_tc", lambda: {"qdisc_htb": "tc"})
    monkeypatch.setattr(capabilities, "_probe_sock_diag", lambda: {"sock_diag": "sd", "sock_diag_cgroup_id": "sd"})
    asked = []
    monkeypatch.setattr(capabilities, "_probe_netfilter", lambda names=None: asked.append(names) or {"nftables": "nf"})
    out = capabilities._probe_in_throwaway_netns(["sock_diag"])
    assert set(out) == {"sock_diag", "sock_diag_cgroup_id"} and asked == []
    out = capabilities._probe_in_throwaway_netns(["nftables"])
    assert out["nftables"] == "nf" and asked == [["nftables"]] and "qdisc_htb" not in out
