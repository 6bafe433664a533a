# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qdisc core without a kernel: units, validation, and the netlink requests it makes.

fq_codel is not built into the build host's kernel, so what the module asks the kernel for an
fq_codel leaf is checked here, down to the encoded TCA_FQ_CODEL_* attributes.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import common as tc_common
from pyroute2.netlink.rtnl.tcmsg import plugins as tc_plugins
from pyroute2.netlink.rtnl.tcmsg import sched_fq_codel, tcmsg

from module_utils import sched_fq, qdisc as tc
from module_utils.errors import ValidationError


@pytest.mark.parametrize("text,expected", [
    ("10mbit", 1250000), ("1.5gbit", 187500000), ("800kbit", 100000), ("125kbps", 125000),
    ("1250000", 1250000), (1250000, 1250000), ("10Mbit", 1250000), ("1mibit", 131072), ("8bit", 1),
])
def test_rates(text, expected):
    assert tc.parse_rate("rate", text) == expected


@pytest.mark.parametrize("text,reason", [
    ("10 mbit/s", "not a rate"), ("-1", "not a rate"), (-1, "negative"), ("10mbits", "unknown unit"),
    ("", "not a rate"), ("fast", "not a rate"), ("0", "below one byte"), ("40gbit", "above the largest"),
    (True, "not a rate"),
])
def test_bad_rates_name_the_field(text, reason):
    with pytest.raises(ValidationError) as err:
        tc.parse_rate("rate", text)
    assert err.value.field == "rate" and reason in err.value.reason


def test_sizes_and_times():
    assert tc.parse_size("burst", "32kb") == 32768
    assert tc.parse_size("burst", "15140") == 15140
    assert tc.parse_size("burst", "1m") == 1048576
    assert tc.parse_time("target", "5ms") == 5000
    assert tc.parse_time("target", "100us") == 100
    assert tc.parse_time("target", "1s") == 1000000
    with pytest.raises(ValidationError, match="unknown unit"):
        tc.parse_time("target", "5min")


def test_format_rate_round_trips():
    for text in ("10mbit", "1gbit", "800kbit", "12500kbit"):
        rate = tc.parse_rate("rate", text)
        assert tc.parse_rate("rate", tc.format_rate(rate)) == rate


def test_per_cpu_rate_is_bounded():
    spec = tc.QdiscSpec("lo", kind="htb", rate_per_cpu="5mbit", cpus=2.5, leaf="pfifo")
    assert spec.options["rate"] == 1562500  # 12.5 Mbit/s
    spec = tc.QdiscSpec("lo", kind="htb", rate_per_cpu="5mbit", cpus=64, max_rate="100mbit", leaf="pfifo")
    assert spec.options["rate"] == 12500000
    spec = tc.QdiscSpec("lo", kind="tbf", rate_per_cpu="1mbit", cpus=0.1, min_rate="1mbit")
    assert spec.options["rate"] == 125000


@pytest.mark.parametrize("kwargs,field,reason", [
    ({"kind": "htb"}, "rate", "required"),
    ({"kind": "htb", "rate": "10mbit", "rate_per_cpu": "1mbit", "cpus": 1}, "rate", "not both"),
    ({"kind": "htb", "rate_per_cpu": "1mbit"}, "cpus", "required"),
    ({"kind": "htb", "rate_per_cpu": "1mbit", "cpus": 0}, "cpus", "positive"),
    ({"kind": "htb", "rate": "10mbit", "ceil": "5mbit"}, "ceil", "below rate"),
    ({"kind": "htb", "rate": "10mbit", "leaf": "sfq"}, "leaf", "not one of"),
    ({"kind": "htb", "rate": "10mbit", "leaf": "pfifo", "flows": 10}, "flows", "only applies to fq_codel"),
    ({"kind": "htb", "rate": "10mbit", "min_rate": "5mbit", "max_rate": "1mbit"}, "min_rate", "above max_rate"),
    ({"kind": "tbf", "rate": "10mbit", "leaf": "pfifo"}, "leaf", "does not apply to kind=tbf"),
    ({"kind": "fq_codel", "target": "200ms", "interval": "100ms"}, "target", "longer than interval"),
    ({"kind": "fq_codel", "flows": 0}, "flows", "between 1 and 65536"),
    ({"kind": "fq_codel", "ecn": "yes"}, "ecn", "true or false"),
    ({"kind": "ingress", "rate": "1mbit"}, "rate", "does not apply to kind=ingress"),
    ({"kind": "pfifo", "limit": 0}, "limit", "between 1"),
    ({"kind": "red"}, "kind", "not one of"),
    ({}, "kind", "required"),
    ({"state": "absent", "rate": "1mbit"}, "rate", "does not apply to state=absent"),
])
def test_bad_specs_name_the_field(kwargs, field, reason):
    with pytest.raises(ValidationError) as err:
        tc.QdiscSpec("lo", **kwargs)
    assert err.value.field == field and reason in err.value.reason, str(err.value)


@settings(max_examples=2000, deadline=None)
@given(rate=st.integers(1, tc.MAX_RATE), size=st.integers(1, tc.MAX_RATE))
def test_ticks_are_what_pyroute2_sends(rate, size):
    """The plan's ticks are the ones pyroute2 computes for a request, so the kernel reads back exactly them."""
    assert tc.xmit_ticks(rate, size) == tc_common.calc_xmittime(rate, size)


@given(st.integers(0, tc.MAX_U32))
def test_codel_times_put_back_exactly(usec):
    """A time read back (in the kernel's 1024 ns units) can be sent again and reads back the same."""
    readback = tc.codel_readback(usec)
    assert readback <= usec and tc.codel_readback(tc.codel_usec_for(readback)) == readback


def test_codel_readback_is_the_kernels():
    # measured on Debian's 6.1 (kernel-vm.md): 5ms reads 4999us, 100ms 99999us, 1ms 999us; multiples of 128us exact
    assert [tc.codel_readback(u) for u in (5000, 100000, 1000, 128, 256000)] == [4999, 99999, 999, 128, 256000]


@pytest.mark.parametrize("rate", ["64bit", "1kbit", "100kbit", "10mbit", "34gbit"])
@pytest.mark.parametrize("kind,max_ticks", [("htb", tc.MAX_U32), ("tbf", tc.TBF_MAX_BUFFER_TICKS)])
def test_default_burst_fits_the_kernels_field(rate, kind, max_ticks):
    spec = tc.QdiscSpec("lo", kind=kind, rate=rate)
    assert 1 <= tc.xmit_ticks(spec.options["rate"], spec.options["burst"]) <= max_ticks
    if spec.options["rate"] >= 15140:
        assert spec.options["burst"] >= 15140


def test_a_burst_the_kernel_cannot_hold_is_named():
    with pytest.raises(ValidationError) as err:
        tc.QdiscSpec("lo", kind="tbf", rate="1kbit", burst="64kb")
    assert err.value.field == "burst" and "largest burst at this rate: 536 bytes" in err.value.reason
    with pytest.raises(ValidationError) as err:
        tc.QdiscSpec("lo", kind="htb", rate="1kbit", ceil="2kbit", cburst="1m")
    assert err.value.field == "cburst"


class FakeLink(dict):
    def __init__(self, txqueuelen):
        super().__init__()
        self.txqueuelen = txqueuelen

    def get_attr(self, name):
        return self.txqueuelen if name == "IFLA_TXQLEN" else None


class FakeIpr:
    """Records tc requests; refuses the qdisc kinds in ``missing`` as a kernel without them does."""

    def __init__(self, missing=()):
        self.calls = []
        self.missing = missing

    def link_lookup(self, ifname):
        return [7]

    def get_links(self, index):
        return [FakeLink(txqueuelen=300)]

    def get_qdiscs(self, index):
        return []

    def get_classes(self, index):
        return []

    def tc(self, command, kind, index, handle=0, **kwargs):
        if kind in self.missing and command in ("add", "replace"):
            raise NetlinkError(2, "No such file or directory")
        self.calls.append((command, kind, index, handle, kwargs))

    def close(self):
        pass


def _converge(monkeypatch, fake, **kwargs):
    monkeypatch.setattr(tc.netlink, "open_iproute", lambda path=None: fake)
    return tc.converge(tc.QdiscSpec("veth0", **kwargs))


def test_htb_with_fq_codel_leaf_sends_the_options_given(monkeypatch):
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="htb", rate="10mbit", leaf="fq_codel", flows=2048, target="5ms",
              interval="100ms", ecn=True, limit=10240)
    (graft, cls, leaf) = fake.calls
    assert graft[:4] == ("replace", "htb", 7, 0x10000) and graft[4] == {"default": 0x10}
    assert cls[:4] == ("add-class", "htb", 7, 0x10010)
    assert cls[4] == {"parent": 0x10000, "rate": 1250000, "ceil": 1250000, "burst": 15140, "cburst": 15140}
    assert leaf[:4] == ("add", "fq_codel", 7, 0x100000) and leaf[4]["parent"] == 0x10010
    # encode the request as pyroute2 sends it, then decode it as the kernel would read it
    options = dict(leaf[4])
    del options["parent"]
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = 7, 0x100000, 0x10010
    msg["attrs"] = [["TCA_KIND", "fq_codel"], ["TCA_OPTIONS", sched_fq_codel.get_parameters(options)]]
    msg.encode()
    sent = tcmsg(msg.data)
    sent.decode()
    attrs = dict(sent.get_attr("TCA_OPTIONS")["attrs"])
    assert sent.get_attr("TCA_KIND") == "fq_codel"
    assert attrs == {"TCA_FQ_CODEL_FLOWS": 2048, "TCA_FQ_CODEL_TARGET": 5000, "TCA_FQ_CODEL_INTERVAL": 100000,
                     "TCA_FQ_CODEL_ECN": 1, "TCA_FQ_CODEL_LIMIT": 10240}


def test_fq_codel_with_kernel_defaults_sends_no_options(monkeypatch):
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="fq_codel")
    assert fake.calls == [("replace", "fq_codel", 7, 0x10000, {})]


def test_missing_fq_codel_is_named_and_the_graft_is_undone(monkeypatch):
    fake = FakeIpr(missing=("fq_codel",))
    with pytest.raises(ValidationError) as err:
        _converge(monkeypatch, fake, kind="htb", rate="10mbit", leaf="fq_codel")
    assert err.value.field == "leaf" and "sch_fq_codel" in err.value.reason
    # the htb root and class went in, then the root was deleted again (the kernel default comes back)
    assert [c[:2] for c in fake.calls] == [("replace", "htb"), ("add-class", "htb"), ("del", None)]
    with pytest.raises(ValidationError) as err:
        _converge(monkeypatch, FakeIpr(missing=("fq_codel",)), kind="fq_codel")
    assert err.value.field == "kind" and "sch_fq_codel" in err.value.reason


def test_pfifo_without_limit_gets_the_kernels_default(monkeypatch):
    """pyroute2 would send limit 0 (a queue that drops everything): a new pfifo gets the device's
    txqueuelen, as the kernel does without options; a change leaves the limit alone."""
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="pfifo")
    assert fake.calls == [("replace", "pfifo", 7, 0x10000, {"limit": 300})]
    assert tc.qdisc_kwargs("pfifo", {}, change=True) == {}


def test_a_change_of_fq_codel_never_sends_flows():
    assert tc.qdisc_kwargs("fq_codel", {"flows": 512, "target": 5000}, change=True) == {"fqc_target": "5000us"}


HUGE = "1" + "0" * 400


@pytest.mark.parametrize("parse,field,unit", [(tc.parse_rate, "rate", "mbit"), (tc.parse_size, "burst", "kb"),
                                              (tc.parse_time, "latency", "ms")], ids=["rate", "size", "time"])
@pytest.mark.parametrize("value", [HUGE, HUGE + ".5", HUGE + "{unit}", int(HUGE), 1e308, float("inf"),
                                   float("nan"), "9" * 5000 + "{unit}", "1." + "9" * 5000 + "{unit}"],
                         ids=["digits", "fraction", "unit", "int", "1e308", "inf", "nan", "5000-digits",
                              "5000-decimals"])
def test_out_of_range_numbers_name_the_field(parse, field, unit, value):
    """No OverflowError or ValueError escapes a parser: the field is named."""
    if isinstance(value, str):
        value = value.format(unit=unit)
    with pytest.raises(ValidationError) as err:
        parse(field, value)
    assert err.value.field == field


@pytest.mark.parametrize("kwargs,field", [
    (dict(kind="htb", rate=HUGE + "mbit"), "rate"),
    (dict(kind="htb", rate="10mbit", ceil=HUGE + "mbit"), "ceil"),
    (dict(kind="htb", rate="10mbit", burst=HUGE + "kb"), "burst"),
    (dict(kind="htb", rate="10mbit", cburst=HUGE), "cburst"),
    (dict(kind="tbf", rate="10mbit", latency=HUGE + "ms"), "latency"),
    (dict(kind="fq_codel", target=HUGE + "us"), "target"),
    (dict(kind="fq_codel", interval=float("inf")), "interval"),
    (dict(kind="tbf", rate_per_cpu="1mbit", cpus=float("nan")), "cpus"),
    (dict(kind="tbf", rate_per_cpu="1mbit", cpus=float("inf")), "cpus"),
    (dict(kind="tbf", rate_per_cpu="1mbit", cpus=1e308), "rate_per_cpu"),
    (dict(kind="tbf", rate_per_cpu="1mbit", cpus=10 ** 400), "rate_per_cpu"),
    (dict(kind="tbf", rate="1mbit", min_rate=HUGE + "gbit"), "min_rate"),
    (dict(kind="tbf", rate="1mbit", max_rate=float("nan")), "max_rate"),
    (dict(kind="pfifo", limit=10 ** 400), "limit"),
    (dict(kind="pfifo", limit=2 ** 31), "limit"),  # pyroute2 cannot send it (struct.error, was a traceback)
], ids=lambda v: v if isinstance(v, str) else None)
def test_hostile_numbers_in_a_spec_are_validation_errors(kwargs, field):
    with pytest.raises(ValidationError) as err:
        tc.QdiscSpec("lo", **kwargs)
    assert err.value.field == field, err.value


def _sent_options(kind, options):
    """TCA_OPTIONS of a qdisc request encoded as pyroute2 sends it, decoded as the kernel reads it."""
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = 7, 0x10000, tc.TC_H_ROOT
    msg["attrs"] = [["TCA_KIND", kind], ["TCA_OPTIONS", tc_plugins[kind].get_parameters(dict(options))]]
    msg.encode()
    sent = tcmsg(msg.data)
    sent.decode()
    assert sent.get_attr("TCA_KIND") == kind
    return dict(sent.get_attr("TCA_OPTIONS")["attrs"])


def test_cake_sends_its_bandwidth_in_bytes_and_its_times_in_microseconds(monkeypatch):
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="cake", rate="10mbit", target="3ms", interval="50ms")
    ((command, kind, index, handle, kwargs),) = fake.calls
    assert (command, kind, index, handle) == ("replace", "cake", 7, 0x10000)
    attrs = _sent_options("cake", kwargs)
    assert (attrs["TCA_CAKE_BASE_RATE64"], attrs["TCA_CAKE_RTT"], attrs["TCA_CAKE_TARGET"]) == (1250000, 50000, 3000)
    # rates that are no whole number of bits per byte, and unlimited, go out exactly too
    for rate, sent in (("7", 7), ("unlimited", 0), (str(tc.MAX_RATE), tc.MAX_RATE)):
        spec = tc.QdiscSpec("lo", kind="cake", rate=rate)
        assert _sent_options("cake", tc.qdisc_kwargs("cake", spec.options))["TCA_CAKE_BASE_RATE64"] == sent


def test_cake_with_kernel_defaults_sends_no_options(monkeypatch):
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="cake")
    assert fake.calls == [("replace", "cake", 7, 0x10000, {})]


def test_fq_sends_its_limit_and_per_flow_rate(monkeypatch):
    fake = FakeIpr()
    _converge(monkeypatch, fake, kind="fq", rate="100mbit", limit=777)
    ((command, kind, _index, handle, kwargs),) = fake.calls
    assert (command, kind, handle) == ("replace", "fq", 0x10000)
    assert _sent_options("fq", kwargs) == {"TCA_FQ_PLIMIT": 777, "TCA_FQ_FLOW_MAX_RATE": 12500000}
    spec = tc.QdiscSpec("lo", kind="fq", rate="unlimited")
    assert _sent_options("fq", tc.qdisc_kwargs("fq", spec.options)) == {"TCA_FQ_FLOW_MAX_RATE": 2 ** 32 - 1}


def test_fq_is_known_to_pyroute2_and_read_back_by_name():
    """pyroute2 has no fq plugin: ours is registered, so a dump's TCA_OPTIONS decode by attribute name."""
    assert tc_plugins["fq"] is sched_fq.register() and tc_plugins["fq"].parent == tc.TC_H_ROOT
    msg = tcmsg()
    msg["attrs"] = [["TCA_KIND", "fq"], ["TCA_OPTIONS", {"attrs": [["TCA_FQ_PLIMIT", 10000],
                                                                   ["TCA_FQ_FLOW_MAX_RATE", 2 ** 32 - 1],
                                                                   ["TCA_FQ_HORIZON_DROP", 1]]}]]
    msg.encode()
    dumped = tcmsg(msg.data)
    dumped.decode()
    assert tc._qdisc_view(dumped) == {"kind": "fq", "handle": 0, "limit": 10000, "rate": 2 ** 32 - 1}
    with pytest.raises(ValueError):
        sched_fq.get_parameters({"fq_flows": 1})


def test_unlimited_is_shown_as_such():
    spec = tc.QdiscSpec("lo", kind="fq", rate="unlimited", limit=100)
    assert spec.desired() == {"kind": "fq", "rate": "unlimited", "limit": 100}
    assert tc._options_text(spec.options, "fq") == "(limit 100, rate unlimited)"
    assert tc.QdiscSpec("lo", kind="cake", rate="Unlimited").desired() == {"kind": "cake", "rate": "unlimited"}
    # 34.3 Gbit/s is a rate for cake, but fq's "no maximum"
    assert tc.QdiscSpec("lo", kind="cake", rate=str(tc.MAX_RATE)).desired()["rate"] == tc.MAX_RATE
    assert tc.QdiscSpec("lo", kind="fq", rate=str(tc.MAX_RATE)).desired()["rate"] == "unlimited"


def test_cake_times_are_compared_as_sent():
    """cake keeps microseconds (no 1024 ns units): what was sent is what the plan expects back."""
    spec = tc.QdiscSpec("lo", kind="cake", target="5ms", interval="100ms")
    assert spec.desired() == {"kind": "cake", "target": 5000, "interval": 100000}
    assert tc._leaf_matches({"kind": "cake", "target": 5000, "interval": 100000, "rate": 0}, "cake", spec.options)
    assert not tc._leaf_matches({"kind": "cake", "target": 4999, "interval": 100000}, "cake", spec.options)
    assert tc.needs_replace({"kind": "cake", "target": 1}, "cake", spec.options) is None


@pytest.mark.parametrize("kwargs,field,reason", [
    ({"kind": "cake", "rate": "unlimited", "max_rate": "1mbit"}, "max_rate", "does not apply to rate=unlimited"),
    ({"kind": "cake", "rate": "unlimited", "rate_per_cpu": "1mbit", "cpus": 1}, "rate_per_cpu", "rate=unlimited"),
    ({"kind": "cake", "cpus": 2}, "rate", "required"),
    ({"kind": "cake", "rate": "10mbit", "cpus": 2}, "cpus", "only applies with rate_per_cpu"),
    ({"kind": "cake", "rate": "0"}, "rate", "below one byte"),
    ({"kind": "cake", "rate_per_cpu": "8bit", "cpus": 0.1}, "rate_per_cpu", "below one byte"),
    ({"kind": "cake", "target": "200ms", "interval": "100ms"}, "target", "longer than interval"),
    ({"kind": "cake", "target": "0us"}, "target", "between 1us"),
    ({"kind": "cake", "limit": 100}, "limit", "does not apply to kind=cake"),
    ({"kind": "cake", "flows": 100}, "flows", "does not apply to kind=cake"),
    ({"kind": "fq", "rate_per_cpu": "1mbit", "cpus": 1}, "cpus", "does not apply to kind=fq"),
    ({"kind": "fq", "target": "5ms"}, "target", "does not apply to kind=fq"),
    ({"kind": "fq", "limit": 0}, "limit", "between 1"),
    ({"kind": "fq", "rate": "fast"}, "rate", "not a rate"),
    ({"kind": "fq", "rate": "50gbit"}, "rate", "above the largest"),
    ({"kind": "htb", "rate": "unlimited"}, "rate", "not a rate"),
])
def test_bad_cake_and_fq_specs_name_the_field(kwargs, field, reason):
    with pytest.raises(ValidationError) as err:
        tc.QdiscSpec("lo", **kwargs)
    assert err.value.field == field and reason in err.value.reason, str(err.value)


def test_missing_cake_or_fq_is_named(monkeypatch):
    for kind in ("cake", "fq"):
        with pytest.raises(ValidationError) as err:
            _converge(monkeypatch, FakeIpr(missing=(kind,)), kind=kind)
        assert err.value.field == "kind" and "sch_%s" % kind in err.value.reason


# -- the parts' contract -------------------------------------------------------------------------

# a valid call in which each option applies (so its bad value is refused for itself, not for its kind)
_BASE = {"htb": {"device": "veth-web", "kind": "htb", "rate": "10mbit", "leaf": "fq_codel"},
         "tbf": {"device": "veth-web", "kind": "tbf", "rate": "10mbit"}}
_BASE_FOR = {"latency": "tbf", "rate_per_cpu": "htb", "cpus": "htb"}


def _base_for(option):
    params = dict(_BASE[_BASE_FOR.get(option, "htb")])
    if option in ("rate_per_cpu", "cpus"):
        params.update(rate=None, rate_per_cpu="5mbit", cpus=2)
    return params


CONTRACT_BAD = [(name, bad) for name, option in sorted(tc.OPTIONS.items()) for bad in option["bad"]]


def test_every_option_has_realistic_bad_values():
    assert all(1 <= len(option["bad"]) <= 3 for option in tc.OPTIONS.values())
    for name, base in (("htb", _BASE["htb"]), ("tbf", _BASE["tbf"]), ("per cpu", _base_for("cpus"))):
        assert tc.spec(base, host=False).kind, name


@pytest.mark.parametrize("option,bad", CONTRACT_BAD, ids=["%s=%r" % c for c in CONTRACT_BAD])
def test_every_bad_value_is_refused_without_the_host_naming_the_option(option, bad):
    params = dict(_base_for(option), **{option: bad})
    with pytest.raises(ValidationError) as err:
        tc.spec(params, host=False)
    assert err.value.field == option, err.value


def test_the_modules_argument_spec_is_the_schema():
    from module_utils import contract
    spec = contract.argument_spec(tc.OPTIONS)
    assert spec["kind"] == {"type": "str", "choices": list(tc.KINDS)}
    assert spec["netns_dir"] == {"type": "path", "default": "/var/run/netns"}
    assert not any("bad" in option for option in spec.values())


def test_the_controller_check_reads_nothing_on_the_host(monkeypatch):
    """host=False: a namespace that does not exist here, by name, path or pid, is not looked up."""
    def no_io(*args, **kwargs):
        raise AssertionError("host I/O with host=False: %r" % (args,))
    monkeypatch.setattr(tc.nsutil, "resolve_netns", no_io)
    monkeypatch.setattr(tc.nsutil, "is_netns_handle", no_io)
    monkeypatch.setattr(tc.os.path, "exists", no_io)
    monkeypatch.setattr("builtins.open", no_io)
    for where in ({"netns": "hn-not-here"}, {"netns": "/run/netns/hn-not-here"}, {"netns_pid": 999999999}):
        made = tc.spec(dict(_BASE["htb"], **where), host=False)
        assert made.netns in ("/var/run/netns/hn-not-here", "/run/netns/hn-not-here", "/proc/999999999/ns/net")
    made = tc.spec(dict(_BASE["tbf"], rate="1kbit"), host=False)  # the burst fitted to ticks without /proc
    assert made.options["burst"] == tc.largest_burst(125, tc.TBF_MAX_BUFFER_TICKS)


def test_a_namespace_the_run_creates_need_not_exist_on_the_host():
    from module_utils import contract
    params = dict(_BASE["htb"], netns="hn-unit-not-here")
    with pytest.raises(ValidationError) as err:
        tc.spec(params)
    assert err.value.field == "netns" and "does not exist" in err.value.reason
    planned = contract.Planned()
    planned.add_netns("/var/run/netns/hn-unit-not-here")
    assert tc.spec(params, planned=planned).netns == "/var/run/netns/hn-unit-not-here"
    # everything else is still checked
    with pytest.raises(ValidationError) as err:
        tc.spec(dict(params, rate="10 lightyears"), planned=planned)
    assert err.value.field == "rate"


@pytest.mark.parametrize("params,field", [
    ({"netns": "web", "netns_pid": 1}, "netns"),
    ({"rate_per_cpu": "1mbit", "cpus": 1}, "rate"),
    ({"rate": None, "rate_per_cpu": "1mbit"}, "cpus"),
    ({"cpus": 2}, "cpus"),
    ({"kind": None}, "kind"),
    ({"netns": "web", "netns_dir": "run/netns"}, "netns_dir"),
])
def test_the_modules_option_rules_are_the_specs(params, field):
    """mutually_exclusive, required_together, required_if: the controller check has no AnsibleModule."""
    with pytest.raises(ValidationError) as err:
        tc.spec(dict(_BASE["htb"], **params), host=False)
    assert err.value.field == field


def test_a_kernel_with_another_scheduler_clock_is_refused(tmp_path):
    psched = tmp_path / "psched"
    psched.write_text("000003e8 00000040 000f4240 3b9aca00\n")
    tc.check_psched(str(psched))  # every current Linux
    psched.write_text("000003e8 00000400 000f4240 3b9aca00\n")
    with pytest.raises(ValidationError) as err:
        tc.check_psched(str(psched))
    assert "0.9765625 scheduler ticks per microsecond" in err.value.reason
    assert tc.psched_tick_in_usec(str(tmp_path / "none")) is None


class ClosedIpr(FakeIpr):
    def tc(self, command, kind, index, handle=0, **kwargs):
        raise AssertionError("a planned device is not touched in check mode")

    def link_lookup(self, ifname):
        raise AssertionError("a planned device is not looked up in check mode")


def test_check_mode_plans_a_new_veth_without_the_host(monkeypatch):
    from module_utils import contract
    monkeypatch.setattr(tc.netlink, "open_iproute", lambda path=None: ClosedIpr())
    planned = contract.Planned()
    planned.add_netns("/var/run/netns/hn-new")
    planned.add_device("/var/run/netns/hn-new", "eth0")
    planned.add_device(None, "veth-new")
    made = tc.spec({"device": "eth0", "netns": "hn-new", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"},
                   planned=planned)
    result = tc.converge(made, check_mode=True, planned=planned)
    assert result["changed"] and result["changes"] == [
        "replace root qdisc the default noqueue on eth0 with htb 1:",
        "add htb class 1:10 rate 10Mbit ceil 10Mbit burst 15140 cburst 15140 on eth0",
        "add pfifo leaf (kernel defaults) under class 1:10 on eth0"]
    assert result["diff"]["before"] == {"kind": "noqueue", "handle": "0:", "default": True}
    assert result["diff"]["after"]["class"]["rate"] == 1250000
    ingress = tc.converge(tc.spec({"device": "veth-new", "kind": "ingress"}, planned=planned), check_mode=True,
                          planned=planned)
    assert ingress["changes"] == ["add ingress qdisc on veth-new"] and ingress["diff"]["before"] == {}
    # a device the run does not create in a namespace it creates: refused as the real run would
    with pytest.raises(ValidationError) as err:
        tc.converge(tc.spec({"device": "eth1", "netns": "hn-new", "kind": "ingress"}, planned=planned),
                    check_mode=True, planned=planned)
    assert err.value.field == "device" and "no device eth1" in err.value.reason


def test_undo_of_a_landed_run_works_after_its_handle_is_closed(monkeypatch):
    """The unit rolls a part back after converge returned: the undo opens the namespace again."""
    from module_utils import transaction
    opened = []

    class Recording(FakeIpr):
        def __init__(self):
            super().__init__()
            self.closed = False
            opened.append(self)

        def tc(self, command, kind, index, handle=0, **kwargs):
            assert not self.closed, "a request on a closed handle"
            super().tc(command, kind, index, handle, **kwargs)

        def close(self):
            self.closed = True

    monkeypatch.setattr(tc.netlink, "open_iproute", lambda path=None: Recording())
    with pytest.raises(tc.ApplyError):
        with transaction.unit("qdiscs"):
            tc.converge(tc.spec({"device": "veth0", "kind": "htb", "rate": "10mbit", "leaf": "pfifo"}))
            raise RuntimeError("a later part failed")
    calls = [c[:2] for ipr in opened for c in ipr.calls]
    assert calls == [("replace", "htb"), ("add-class", "htb"), ("add", "pfifo"), ("del", None), ("del", None)]
    assert len(opened) == 3 and all(ipr.closed for ipr in opened)
