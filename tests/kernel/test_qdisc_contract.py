# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qdisc part on the parts' contract, against the running kernel (fq_codel, cake and fq in the VMs).

Check mode on a veth that the same run creates says what the real run then does; a unit that fails
after the part converged puts every qdisc back as it was.
"""

import itertools
import json
import os
import subprocess

import pytest

from module_utils import contract, qdisc as tc, transaction
from module_utils.errors import ApplyError, ValidationError

_counter = itertools.count()

KINDS = {
    "htb+fq_codel": ({"kind": "htb", "rate": "20mbit", "ceil": "30mbit", "leaf": "fq_codel", "target": "5ms",
                      "interval": "100ms", "flows": 512, "ecn": False, "limit": 5000}, "fq_codel", "leaf"),
    "htb+pfifo": ({"kind": "htb", "rate": "20mbit", "leaf": "pfifo"}, None, None),
    "fq_codel": ({"kind": "fq_codel", "target": "5ms", "flows": 1024}, "fq_codel", "kind"),
    "cake": ({"kind": "cake", "rate": "50mbit", "interval": "20ms"}, "cake", "kind"),
    "fq": ({"kind": "fq", "rate": "100mbit", "limit": 1000}, "fq", "kind"),
    "tbf": ({"kind": "tbf", "rate": "5mbit", "burst": "32kb"}, None, None),
    "pfifo": ({"kind": "pfifo"}, None, None),
    "ingress": ({"kind": "ingress"}, None, None),
}


def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, text=True)


def _shown(netns, dev):
    """Qdiscs (``tc -j``) and htb classes (tc prints no JSON for them) of the device, without counters."""
    def tc_show(*args):
        return subprocess.run(["tc", "-n", netns] + list(args), check=True, capture_output=True, text=True).stdout
    # fq_codel lists its flows that hold packets as classes: traffic (IPv6 router solicitations), not state
    classes = [line for line in tc_show("class", "show", "dev", dev).splitlines() if not line.startswith("class fq_codel")]
    qdiscs = json.loads(tc_show("-j", "qdisc", "show", "dev", dev))
    for qdisc in qdiscs:  # htb's count of packets sent past its classes is traffic too
        qdisc.get("options", {}).pop("direct_packets_stat", None)
    return qdiscs, classes


def _outcome(call):
    """The changes, or the refusal (field, reason) of a kernel without the kind."""
    try:
        result = call()
    except ValidationError as exc:
        return ("refused", exc.field, exc.reason)
    return result["changes"]


@pytest.fixture
def new_names():
    """Names of a namespace pair no one has created yet (removed after the test if it was)."""
    tag = "%s-%d-%d" % (os.environ.get("PYTEST_XDIST_WORKER", "gw"), os.getpid() % 100000, next(_counter))
    names = ("hn-kt-new-%s-a" % tag, "hn-kt-new-%s-b" % tag)
    try:
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.mark.parametrize("case", sorted(KINDS))
def test_check_mode_on_a_veth_the_run_creates_is_the_real_run(case, new_names, qdisc_missing):
    args, needs, field = KINDS[case]
    a, b = new_names
    path = os.path.join(tc.nsutil.DEFAULT_NETNS_DIR, a)
    planned = contract.Planned()
    planned.add_netns(path)
    planned.add_device(path, "va")
    params = dict(args, device="va", netns=a)
    predicted = _outcome(lambda: tc.converge(tc.spec(params, planned=planned), check_mode=True, planned=planned))
    assert not os.path.exists(path), "check mode created the namespace"
    # what the netns and veth parts create: a namespace, a veth in it, both ends up
    _ip("netns", "add", a)
    _ip("netns", "add", b)
    _ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
    _ip("-n", a, "link", "set", "va", "up")
    _ip("-n", b, "link", "set", "vb", "up")
    done = _outcome(lambda: tc.converge(tc.spec(params)))
    assert done == predicted
    if needs and qdisc_missing(needs):
        assert predicted[:2] == ("refused", field) and "sch_%s" % needs in predicted[2]
    else:
        assert predicted and predicted[0] in ("add ingress qdisc on va",
                                              "replace root qdisc the default noqueue on va with %s 1:"
                                              % args["kind"])


@pytest.mark.parametrize("case", ["htb+fq_codel", "cake", "fq", "tbf"])
def test_a_failed_unit_puts_the_qdiscs_back(case, pair, qdisc_missing):
    """What was there (an htb with an fq_codel leaf where the kernel has one, else a tbf) comes back
    when a later part of the unit fails after this one changed it."""
    args, needs, _field = KINDS[case]
    if needs and qdisc_missing(needs):
        pytest.skip(qdisc_missing(needs))
    first = KINDS["htb+fq_codel"][0] if not qdisc_missing("fq_codel") else KINDS["tbf"][0]
    if first["kind"] == args["kind"]:
        first = KINDS["htb+pfifo"][0]
    tc.converge(tc.spec(dict(first, device=pair.dev_a, netns=pair.a)))
    tc.converge(tc.spec({"device": pair.dev_a, "netns": pair.a, "kind": "ingress"}))
    before = _shown(pair.a, pair.dev_a), _shown(pair.b, pair.dev_b)
    with pytest.raises(ApplyError) as err:
        with transaction.unit("qdiscs"):
            assert tc.converge(tc.spec(dict(args, device=pair.dev_a, netns=pair.a)))["changed"]
            assert tc.converge(tc.spec({"device": pair.dev_a, "netns": pair.a, "kind": "ingress",
                                        "state": "absent"}))["changed"]
            assert tc.converge(tc.spec(dict(args, device=pair.dev_b, netns=pair.b)))["changed"]
            raise RuntimeError("a later part failed")
    assert "rolled back everything" in err.value.reason
    assert (_shown(pair.a, pair.dev_a), _shown(pair.b, pair.dev_b)) == before
