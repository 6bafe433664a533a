# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet.isolation.capabilities: facts that match what independent tools find, and no side effects."""

import os
import platform
import re
import subprocess

import pytest

from harness.assertions import assert_converges, assert_rejected
from harness.runner import run_module

MOD = "hostnet.isolation.capabilities"


QDISC_ARGS = {"tbf": "tbf rate 1mbit burst 16k latency 50ms"}


def _tc_accepts(kind):
    """Independent check with the tc CLI, in a namespace of its own."""
    script = ("ip link add p0 type veth peer name p1 && tc qdisc add dev p0 root %s" % QDISC_ARGS.get(kind, kind))
    return subprocess.run(["unshare", "--net", "sh", "-c", script], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def test_facts_match_the_host_and_probing_changes_nothing(host, python):
    result = assert_converges(host, MOD, {}, python, expect_change=False)
    caps = result["ansible_facts"]["hostnet_capabilities"]
    assert caps["kernel"] == platform.release()
    for kind in ("htb", "tbf", "fq_codel", "pfifo"):
        assert caps["qdisc_" + kind]["available"] is _tc_accepts(kind), caps["qdisc_" + kind]
    version = re.search(r"v([\d.]+) \((\w+)\)", subprocess.check_output(["iptables", "-V"], text=True))
    assert caps["iptables"]["version"] == version.group(1)
    assert caps["iptables"]["backend"] == {"nf_tables": "nft", "legacy": "legacy"}[version.group(2)]
    assert caps["iptables_wait"]["available"] is True
    assert caps["nftables"]["available"] is True and caps["xt_comment"]["available"] is True
    # the host's cgroup2 mounts that stat(1) can reach (its own sysfs hides the machine's)
    v2 = host.sh("for m in $(awk '$0 ~ / - cgroup2 / {print $5}' /proc/self/mountinfo); do"
                 " [ \"$(stat -f -c %T $m 2>/dev/null)\" = cgroup2fs ] && echo $m; done; true").stdout.split()
    assert caps["cgroup"]["v2_mount"] == (v2[0] if v2 else None)
    assert caps["cgroup_v2"]["available"] is bool(v2)
    libnl = os.path.realpath("/usr/lib/x86_64-linux-gnu/libnl-3.so.200")
    if os.path.exists(libnl):
        assert caps["libnl"]["version"] is not None and caps["libnl"]["available"] is True
    for name in ("qdisc_ingress", "cls_u32", "act_mirred", "sock_diag", "sock_diag_cgroup_id", "bpf_cgroup_bind",
                 "pyroute2"):
        assert caps[name]["available"] is True, caps[name]
    assert caps["missing"] == sorted(n for n, v in caps.items() if isinstance(v, dict) and "available" in v
                                     and not v["available"])


def test_require_fails_naming_each_missing_prerequisite(host, python):
    facts = run_module(host, MOD, {}, python)["ansible_facts"]["hostnet_capabilities"]
    missing = facts["missing"]
    present = sorted(n for n, v in facts.items() if isinstance(v, dict) and v.get("available"))
    ok = run_module(host, MOD, {"require": present}, python)
    assert not ok.get("failed") and ok["missing"] == [], ok
    if not missing:
        pytest.skip("this host has every capability; nothing can be reported missing")
    failed = run_module(host, MOD, {"require": present + missing}, python)
    assert failed.get("failed")
    assert failed["missing"] == missing
    for name in missing:
        assert name in failed["msg"] and facts[name]["probe"] in failed["msg"], failed["msg"]


BAD = [
    ({"require": ["nonsense"]}, "require[0]"),
    ({"require": ["qdisc_htb", "htb"]}, "require[1]"),
    ({"require": ["QDISC_HTB"]}, "require[0]"),
    ({"require": ["fq_codel"]}, "require[0]"),
    ({"require": ["libnl>=3.2.26"]}, "require[0]"),
    ({"require": ["iptables -w"]}, "require[0]"),
    ({"require": [""]}, "require[0]"),
    ({"require": [{"name": "nftables"}]}, "require"),
    ({"gather": "all"}, "gather"),
]


@pytest.mark.parametrize("args,field", BAD, ids=["%s-%d" % (b[1], i) for i, b in enumerate(BAD)])
def test_bad_input_is_rejected_and_changes_nothing(host, python, args, field):
    assert_rejected(host, MOD, args, python, field)
