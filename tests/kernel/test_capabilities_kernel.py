# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capabilities facts tell the truth about the kernel they run on.

Each qdisc the facts report on is cross-checked with the tc command in a namespace of the test's
own: available exactly when the kernel accepts one. On the build host's kernel (no sch_fq_codel)
fq_codel is reported missing naming the module; on Debian's kernels (fq_codel built in) it is there.
"""

import platform

import pytest

from harness.runner import run_local_module
from module_utils import capabilities

# tc arguments for a qdisc that needs some (the rest are added by kind alone)
TC_ARGS = {"tbf": "root tbf rate 1mbit burst 16k latency 50ms", "htb": "root handle 1: htb default 10",
           "ingress": "ingress", "cake": "root cake bandwidth 20mbit"}


@pytest.fixture(scope="module")
def facts():
    return capabilities.gather()


def _qdisc_kinds(facts):
    return sorted(name[len("qdisc_"):] for name in facts if name.startswith("qdisc_"))


def _tc_accepts(pair, kind):
    """The tc command's answer, on the pair's veth: does this kernel take a qdisc of ``kind``?"""
    args = TC_ARGS.get(kind, "root " + kind)
    added = pair.sh(pair.a, "tc qdisc add dev %s %s && echo added || true" % (pair.dev_a, args)).stdout.strip()
    if added == "added":
        pair.sh(pair.a, "tc qdisc del dev %s %s" % (pair.dev_a, "ingress" if kind == "ingress" else "root"))
    return added == "added"


def _debian_kernel():
    with open("/proc/version") as f:
        return "debian-kernel@lists.debian.org" in f.read()


def test_each_qdisc_is_reported_available_exactly_when_the_kernel_accepts_it(pair, facts, qdisc_missing):
    kinds = _qdisc_kinds(facts)
    assert {"htb", "tbf", "fq_codel", "pfifo", "ingress"} <= set(kinds), kinds
    for kind in kinds:
        entry = facts["qdisc_" + kind]
        accepted = _tc_accepts(pair, kind)
        assert entry["available"] is accepted, (kind, entry, "tc accepts it" if accepted else "tc refuses it")
        assert ("qdisc_" + kind in facts["missing"]) is not accepted, facts["missing"]
        # the probe the qdisc module asks before it plans (check mode too) agrees
        assert (qdisc_missing(kind) is None) is accepted, (kind, qdisc_missing(kind))
    assert facts["kernel"] == platform.release()


def test_fq_codel_is_there_on_debian_and_refused_by_name_where_it_is_not(pair, facts, qdisc_missing):
    entry = facts["qdisc_fq_codel"]
    if _debian_kernel():  # Debian builds sch_fq_codel into its kernels (CONFIG_NET_SCH_FQ_CODEL=y)
        assert entry["available"] is True, entry
    if _tc_accepts(pair, "fq_codel"):
        assert entry == dict(entry, available=True, detail="accepted")
        assert capabilities.check_required(facts, ["qdisc_fq_codel", "qdisc_htb"]) == []
    else:
        assert entry["available"] is False and "sch_fq_codel" in entry["detail"], entry
        assert "sch_fq_codel" in qdisc_missing("fq_codel")
        refusal = capabilities.check_required(facts, ["qdisc_htb", "qdisc_fq_codel"])
        assert len(refusal) == 1 and refusal[0].startswith("qdisc_fq_codel (fq_codel qdisc (sch_fq_codel))")
        assert "sch_fq_codel" in refusal[0].split(":", 1)[1], refusal


def test_the_capabilities_module_reports_what_the_core_finds(facts):
    """End to end: ansible runs hostnet.isolation.capabilities on this kernel (local connection)."""
    result = run_local_module("hostnet.isolation.capabilities", {})
    assert not result.get("failed") and result["changed"] is False, result.raw
    reported = result["ansible_facts"]["hostnet_capabilities"]
    assert reported["kernel"] == platform.release()
    for name in capabilities.CAPABILITIES:
        assert reported[name]["available"] is facts[name]["available"], (name, reported[name], facts[name])
    assert reported["missing"] == facts["missing"]
