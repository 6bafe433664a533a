# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cake and fq against the running kernel: converged in the kernel's units, changed in place.

On Debian's kernels (the VM tier) sch_cake and sch_fq are modules the kernel loads on first use; on
the build host's kernel they are missing, and every spec is refused by name, in check mode too,
with nothing changed.
"""

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from module_utils import qdisc as tc
from module_utils.errors import ValidationError
from test_qdisc_kernel import assert_converged, converge, shown, skip_or_refused

CAKE = {"kind": "cake", "rate": "20mbit", "target": "3ms", "interval": "50ms"}
FQ = {"kind": "fq", "rate": "100mbit", "limit": 777}
PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins")
DEBIAN_PYTHON = "/usr/bin/python3"


def root(pair):
    (qdisc,) = shown(pair)
    return qdisc


def test_cake_converges_and_changes_in_place(pair, qdisc_missing):
    if skip_or_refused(pair, qdisc_missing, "cake", "kind", **CAKE):
        return
    before = shown(pair)
    predicted = converge(pair, check=True, **CAKE)
    assert predicted["changes"] == ["replace root qdisc the default noqueue on va with cake 1:"]
    assert shown(pair) == before  # check mode changed nothing
    first = converge(pair, **CAKE)
    assert first["changes"] == predicted["changes"]
    # cake keeps microseconds and bytes per second: what was asked for reads back exactly
    assert {k: first["qdisc"][k] for k in ("rate", "target", "interval")} == {
        "rate": 2500000, "target": 3000, "interval": 50000}
    assert first["after"] == predicted["after"]
    options = root(pair)["options"]
    assert (options["bandwidth"], options["rtt"]) == (2500000, 50000)
    assert set(first["statistics"]) == {"qdisc", "bw_limit", "bloat_reduction"}
    assert_converged(pair, **CAKE)

    # a new rate and rtt change in place: same handle
    handle = root(pair)["handle"]
    spec = {**CAKE, "rate": "30mbit", "interval": "80ms"}
    changed = converge(pair, **spec)
    assert changed["changes"] == ["change root cake 1: on va: (interval 80000us, rate 30mbit, target 3000us)"]
    assert root(pair)["handle"] == handle and root(pair)["options"]["rtt"] == 80000
    assert_converged(pair, **spec)

    # back to no shaping, and a rerun that leaves everything out keeps what is there
    unlimited = converge(pair, kind="cake", rate="unlimited")
    assert unlimited["changes"] == ["change root cake 1: on va: (rate unlimited)"]
    assert root(pair)["options"]["bandwidth"] == "unlimited" and unlimited["qdisc"]["rate"] == "unlimited"
    assert "bw_limit" not in unlimited["statistics"]
    assert_converged(pair, kind="cake", rate="unlimited")
    assert_converged(pair, kind="cake")
    assert (root(pair)["handle"], root(pair)["options"]["rtt"]) == (handle, 80000)


def test_fq_converges_and_changes_in_place(pair, qdisc_missing):
    if skip_or_refused(pair, qdisc_missing, "fq", "kind", **FQ):
        return
    before = shown(pair)
    predicted = converge(pair, check=True, **FQ)
    assert shown(pair) == before  # check mode changed nothing
    assert predicted["changes"] == ["replace root qdisc the default noqueue on va with fq 1:"]
    first = converge(pair, **FQ)
    assert first["changes"] == predicted["changes"]
    assert (first["qdisc"]["limit"], first["qdisc"]["rate"]) == (777, 12500000)
    options = root(pair)["options"]
    assert (options["limit"], options["maxrate"]) == (777, 12500000)
    assert_converged(pair, **FQ)

    handle = root(pair)["handle"]
    changed = converge(pair, kind="fq", limit=2000, rate="unlimited")
    assert changed["changes"] == ["change root fq 1: on va: (limit 2000, rate unlimited)"]
    assert root(pair)["handle"] == handle and root(pair)["options"]["limit"] == 2000
    assert "maxrate" not in root(pair)["options"]  # tc shows no maxrate when there is none
    assert_converged(pair, kind="fq", rate="unlimited")
    assert_converged(pair, kind="fq")

    # another kind is grafted in one request, and check mode says which
    if qdisc_missing("cake") is None:
        graft = converge(pair, check=True, **CAKE)
        assert graft["changes"] == ["replace root qdisc fq 1: on va with cake 2:"]
        assert converge(pair, **CAKE)["changes"] == graft["changes"]
        assert root(pair)["kind"] == "cake"
        assert_converged(pair, **CAKE)


def test_debians_pyroute2_sends_and_reads_cake_and_fq(pair, qdisc_missing):
    """The modules also run under /usr/bin/python3 with Debian's pyroute2 0.7, whose tc() and decoder
    find the fq plugin the same way."""
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from module_utils import netlink, qdisc as tc\n"
        "if netlink.PYROUTE2_IMPORT_ERROR is not None:\n"
        "    sys.exit(3)\n"
        "from module_utils.errors import ValidationError\n"
        "out = []\n"
        "for args in json.loads(sys.argv[3]):\n"
        "    spec = tc.QdiscSpec('va', netns=sys.argv[2], **args)\n"
        "    try:\n"
        "        out.append([tc.converge(spec)['qdisc'], tc.converge(spec, check_mode=True)['changes']])\n"
        "    except ValidationError as exc:\n"
        "        out.append([exc.field, exc.reason])\n"
        "print(json.dumps(out))\n")
    specs = [CAKE, FQ]
    result = subprocess.run([DEBIAN_PYTHON, "-c", script, PLUGINS, pair.a, json.dumps(specs)],
                            capture_output=True, text=True, check=False)
    if result.returncode == 3:
        pytest.skip("%s has no pyroute2" % DEBIAN_PYTHON)
    assert result.returncode == 0, result.stderr
    cake, fq = json.loads(result.stdout)
    if qdisc_missing("cake"):
        assert cake[0] == "kind" and "sch_cake" in cake[1]
    else:
        assert {k: cake[0][k] for k in ("kind", "rate", "target", "interval")} == {
            "kind": "cake", "rate": 2500000, "target": 3000, "interval": 50000}
        assert cake[1] == []
    if qdisc_missing("fq"):
        assert fq[0] == "kind" and "sch_fq" in fq[1]
    else:
        assert {k: fq[0][k] for k in ("kind", "rate", "limit")} == {"kind": "fq", "rate": 12500000, "limit": 777}
        assert fq[1] == []
        assert (root(pair)["options"]["limit"], root(pair)["options"]["maxrate"]) == (777, 12500000)


RATES = st.one_of(st.just("unlimited"), st.integers(1, tc.MAX_RATE).map(str))
TIMES = st.integers(1, 10 * 10 ** 6).map(lambda us: "%dus" % us)
SPECS = st.one_of(
    st.fixed_dictionaries({"kind": st.just("cake")}, optional={"rate": RATES, "target": TIMES, "interval": TIMES}),
    st.fixed_dictionaries({"kind": st.just("fq")}, optional={"rate": RATES, "limit": st.integers(1, tc.MAX_U32)}),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=SPECS)
def test_any_accepted_cake_or_fq_converges_in_one_run(pair, qdisc_missing, args):
    """For any value the module accepts, apply then plan again is empty (or, without the qdisc, a
    refusal by name that changes nothing)."""
    try:
        tc.QdiscSpec(pair.dev_a, **args)
    except ValidationError:
        assume(False)
    if qdisc_missing(args["kind"]):
        before = shown(pair)
        with pytest.raises(ValidationError) as err:
            converge(pair, **args)
        assert err.value.field == "kind" and "sch_%s" % args["kind"] in err.value.reason
        assert shown(pair) == before
        return
    converge(pair, **args)
    again = converge(pair, check=True, **args)
    assert again["changes"] == [], "%s: %s" % (args, again["changes"])
