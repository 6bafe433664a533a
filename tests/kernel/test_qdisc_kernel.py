# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qdisc core against the running kernel: idempotent in the kernel's own units.

On a kernel with sch_fq_codel (Debian's, in the VM tier) fq_codel is converged, re-planned and
changed; on one without it (the build host) it is refused by name and nothing changes. Every other
check holds on both.
"""

import json
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from module_utils import qdisc as tc
from module_utils.errors import ValidationError

FQ_CODEL_ALL = {"target": "5ms", "interval": "100ms", "limit": 5000, "flows": 512, "ecn": True}


def converge(pair, check=False, **kwargs):
    spec = tc.QdiscSpec(kwargs.pop("device", pair.dev_a), netns=pair.a, **kwargs)
    return tc.converge(spec, check_mode=check)


def shown(pair):
    """``tc -j qdisc show`` of the device: what an operator would look at."""
    out = subprocess.run(["tc", "-n", pair.a, "-j", "qdisc", "show", "dev", pair.dev_a], check=True,
                         capture_output=True, text=True).stdout
    return [dict(q, options=q.get("options", {})) for q in json.loads(out)]


def assert_converged(pair, **kwargs):
    """A second plan is empty, in check mode and for real, and check mode changed nothing."""
    before = shown(pair)
    check = converge(pair, check=True, **kwargs)
    assert check["changes"] == [], "check mode on a converged device predicts: %s" % check["changes"]
    again = converge(pair, **kwargs)
    assert again["changes"] == [], "a second run changes: %s" % again["changes"]
    assert shown(pair) == before


def skip_or_refused(pair, qdisc_missing, missing_kind, field, **kwargs):
    """On a kernel without ``missing_kind``, the spec is refused by name, in check mode too, and nothing
    changes; returns whether it was."""
    reason = qdisc_missing(missing_kind)
    if reason is None:
        return False
    before = shown(pair)
    for check in (True, False):
        with pytest.raises(ValidationError) as err:
            converge(pair, check=check, **kwargs)
        assert err.value.field == field and "sch_%s" % missing_kind in err.value.reason, err.value
    assert shown(pair) == before
    return True


def test_fq_codel_root_with_every_option(pair, qdisc_missing):
    if skip_or_refused(pair, qdisc_missing, "fq_codel", "kind", kind="fq_codel", **FQ_CODEL_ALL):
        return
    first = converge(pair, kind="fq_codel", **FQ_CODEL_ALL)
    assert first["changes"]
    # the kernel keeps codel times in 1024 ns units: 5ms reads back 4999us, and that is what the module shows
    assert first["qdisc"]["target"] == 4999 and first["qdisc"]["interval"] == 99999
    assert (first["qdisc"]["limit"], first["qdisc"]["flows"], first["qdisc"]["ecn"]) == (5000, 512, True)
    assert_converged(pair, kind="fq_codel", **FQ_CODEL_ALL)

    # target changes in place: same handle, the kernel's counters carry on
    handle = shown(pair)[0]["handle"]
    changed = converge(pair, kind="fq_codel", **{**FQ_CODEL_ALL, "target": "3ms"})
    assert changed["changes"] == ["change root fq_codel %s on va: (ecn true, flows 512, interval 100000us, "
                                  "limit 5000, target 3000us)" % handle]
    assert shown(pair)[0]["handle"] == handle and shown(pair)[0]["options"]["target"] == 2999
    assert_converged(pair, kind="fq_codel", **{**FQ_CODEL_ALL, "target": "3ms"})

    # flows cannot change in place: check mode says the qdisc is replaced, and the run does it in one request
    spec = {**FQ_CODEL_ALL, "target": "3ms", "flows": 1024}
    predicted = converge(pair, check=True, **dict(spec, kind="fq_codel"))
    assert len(predicted["changes"]) == 1 and "flows 512 -> 1024 cannot change in place" in predicted["changes"][0]
    assert predicted["changes"][0].startswith("replace root qdisc fq_codel %s on va with fq_codel" % handle)
    replaced = converge(pair, kind="fq_codel", **spec)
    assert replaced["changes"] == predicted["changes"]
    (now,) = shown(pair)
    assert now["handle"] != handle and now["options"]["flows"] == 1024 and now["options"]["target"] == 2999
    assert replaced["after"] == dict(predicted["after"], **{k: replaced["after"][k] for k in ("handle",)})
    assert_converged(pair, kind="fq_codel", **spec)


def test_htb_with_fq_codel_leaf_with_every_option(pair, qdisc_missing):
    args = dict(FQ_CODEL_ALL, kind="htb", rate="20mbit", ceil="30mbit", burst="20kb", cburst="40kb",
                leaf="fq_codel")
    if skip_or_refused(pair, qdisc_missing, "fq_codel", "leaf", **args):
        return
    predicted = converge(pair, check=True, **args)
    first = converge(pair, **args)
    assert first["changes"] == predicted["changes"] and len(first["changes"]) == 3
    # check mode's promise is what the kernel then reports
    assert predicted["after"]["class"] == first["after"]["class"]
    assert predicted["after"]["leaf"] == dict(first["after"]["leaf"], **{
        k: v for k, v in predicted["after"]["leaf"].items() if k not in first["after"]["leaf"]})
    assert_converged(pair, **args)

    leaf = [q for q in shown(pair) if q["kind"] == "fq_codel"][0]
    changed = converge(pair, **{**args, "interval": "200ms", "ecn": False})
    assert [c.split(":")[0] for c in changed["changes"]] == ["change fq_codel leaf under class 1"]
    assert [q["handle"] for q in shown(pair) if q["kind"] == "fq_codel"] == [leaf["handle"]]
    assert_converged(pair, **{**args, "interval": "200ms", "ecn": False})

    flows = converge(pair, **{**args, "interval": "200ms", "ecn": False, "flows": 64})
    assert len(flows["changes"]) == 1 and "flows 512 -> 64 cannot change in place" in flows["changes"][0]
    (new_leaf,) = [q for q in shown(pair) if q["kind"] == "fq_codel"]
    assert new_leaf["handle"] != leaf["handle"] and new_leaf["options"]["flows"] == 64
    assert new_leaf["options"]["interval"] == 199999 and not new_leaf["options"].get("ecn")
    assert [q["kind"] for q in shown(pair)].count("htb") == 1  # the class and root stayed
    assert_converged(pair, **{**args, "interval": "200ms", "ecn": False, "flows": 64})
    # and the leaf's flows can go back: the alternating handle does not collide
    assert converge(pair, **args)["changes"]
    assert_converged(pair, **args)


def test_omitted_options_are_left_alone(pair, qdisc_missing):
    """A rerun that leaves out an option keeps what was set before, as documented."""
    converge(pair, kind="pfifo", limit=50)
    assert_converged(pair, kind="pfifo")
    assert [q["options"]["limit"] for q in shown(pair)] == [50]
    if qdisc_missing("fq_codel") is None:
        converge(pair, kind="fq_codel", flows=256, target="2ms")
        assert_converged(pair, kind="fq_codel")
        assert_converged(pair, kind="fq_codel", ecn=shown(pair)[0]["options"].get("ecn", False))
        assert shown(pair)[0]["options"]["flows"] == 256


def test_new_pfifo_without_limit_gets_the_kernels_default(pair):
    """Without ``limit`` the kernel's own default, the device's txqueuelen, not a fixed 1000."""
    pair.sh(pair.a, "ip link set %s txqueuelen 300" % pair.dev_a)
    converge(pair, kind="pfifo")
    assert [q["options"]["limit"] for q in shown(pair)] == [300]
    converge(pair, kind="htb", rate="10mbit", leaf="pfifo")
    assert [q["options"]["limit"] for q in shown(pair) if q["kind"] == "pfifo"] == [300]
    assert_converged(pair, kind="htb", rate="10mbit", leaf="pfifo")


def test_rates_bursts_and_latency_read_back_exactly(pair):
    """htb and tbf on the edges of the range: low rates whose default burst must fit the tick field."""
    for rate in ("64bit", "1kbit", "999kbit", "34gbit"):
        for args in (dict(kind="htb", rate=rate, leaf="pfifo"), dict(kind="tbf", rate=rate, latency="1s")):
            converge(pair, **args)
            assert_converged(pair, **args)


TIMES = st.integers(1, 10 * 10 ** 6).map(lambda us: "%dus" % us)
SPECS = st.one_of(
    st.fixed_dictionaries({"kind": st.just("htb"), "rate": st.integers(1, tc.MAX_RATE),
                           "leaf": st.sampled_from(["pfifo", "none"])},
                          optional={"ceil": st.integers(1, tc.MAX_RATE), "burst": st.integers(1, 2 ** 24),
                                    "cburst": st.integers(1, 2 ** 24), "limit": st.integers(1, 100000)}),
    st.fixed_dictionaries({"kind": st.just("tbf"), "rate": st.integers(1, tc.MAX_RATE)},
                          optional={"burst": st.integers(1, 2 ** 24), "latency": TIMES}),
    st.fixed_dictionaries({"kind": st.just("pfifo")}, optional={"limit": st.integers(1, 2 ** 31)}),
    st.fixed_dictionaries({"kind": st.just("fq_codel")},
                          optional={"target": TIMES, "interval": TIMES, "limit": st.integers(1, 2 ** 20),
                                    "flows": st.integers(1, 65536), "ecn": st.booleans()}),
    st.fixed_dictionaries({"kind": st.just("htb"), "rate": st.integers(1, tc.MAX_RATE), "leaf": st.just("fq_codel")},
                          optional={"target": TIMES, "interval": TIMES, "flows": st.integers(1, 65536)}),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=SPECS)
def test_any_accepted_value_converges_in_one_run(pair, qdisc_missing, args):
    """For any value the module accepts, apply then plan again is empty."""
    for key in ("rate", "ceil"):
        if key in args:
            args[key] = str(args[key])  # bytes per second, as a playbook would write them
    try:
        tc.QdiscSpec(pair.dev_a, **args)
    except ValidationError:
        assume(False)
    uses_fq_codel = "fq_codel" in (args["kind"], args.get("leaf"))
    assume(not (uses_fq_codel and qdisc_missing("fq_codel")))
    converge(pair, **args)
    again = converge(pair, check=True, **args)
    assert again["changes"] == [], "%s: %s" % (args, again["changes"])
