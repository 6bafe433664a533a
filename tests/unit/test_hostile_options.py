# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every option of every module's spec, fed hostile values: a ValidationError naming the field, never a crash.

A traceback instead of a named refusal (a 400-digit rate, ``cpus: nan``, a regex that does not compile) tells
the user nothing and, on the host, can leave a run half-way. Device and namespace options that a spec resolves
on the host (``netns``, ``netns_pid``, ``netns_dir``, ``state_file``) keep their defaults here (the ephemeral
spec resolves this process's own namespace, read only): these tests change nothing on the machine.
"""

import inspect
import math
import os
import re

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from module_utils.errors import HostnetError
from module_utils import ephemeral_ports as ephemeral, netns, port_redirect as portredirect, qdisc as tc, veth

hostile_text = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from(list("\"'`\\ \t\n\r\x00;#{}[]%:/+*@$.-_09aZ") + ["\u2028", "é"]), max_size=16),
    st.sampled_from(["1" + "0" * 400 + "mbit", "9" * 5000 + "kb", "nan", "inf", "-1", "0", "1e309", "10 lightyears", "(", "[a-",
                     "10.246.0.300", "fe80::1%eth0", "10.0.0.1/33", "..", "/", "65536", "1-65535"]),
)
huge_int = st.integers(min_value=-2 ** 70, max_value=2 ** 70)
# what Ansible's argument spec lets through for each documented type, with hostile content
BY_TYPE = {
    "str": hostile_text, "path": hostile_text, "bool": st.booleans(), "int": huge_int,
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "raw": st.one_of(hostile_text, huge_int, st.lists(st.one_of(hostile_text, huge_int), max_size=3)),
    "list": st.lists(hostile_text, max_size=3),
}
# module -> (spec, a valid call, module option -> spec argument where the module renames it)
MODULES = {
    "veth": (veth.VethSpec, {"name": "veth-a", "peer": "eth0"}, {}),
    "port_redirect": (portredirect.RedirectSpec, {"veth": "veth-a", "ports": "31000-31009", "devices": ["eth0"]}, {}),
    "netns": (netns.NetnsSpec, {"name": "web"}, {}),
    "qdisc": (tc.QdiscSpec, {"device": "eth0", "kind": "htb", "rate": "10mbit"}, {}),
    # present needs a namespace: this process's own (only read, to resolve it)
    "ephemeral_ports": (ephemeral.EphemeralSpec, {"container": "web", "agent_ports": "31000-32000",
                                                  "netns_pid": os.getpid()}, {"range": "requested"}),
}
# options the spec resolves on the host (a namespace, a state file): left at their defaults here
ON_THE_HOST = {"netns", "netns_pid", "peer_netns", "peer_netns_pid", "netns_dir", "pid", "state_file"}


def _documented_options(module):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "modules", module + ".py")
    with open(path) as f:
        doc = yaml.safe_load(re.search(r'DOCUMENTATION = r?"""(.*?)"""', f.read(), re.S).group(1))
    return dict((name, opt.get("type", "str")) for name, opt in doc["options"].items())


CASES = [(module, option, kind) for module in sorted(MODULES)
         for option, kind in sorted(_documented_options(module).items()) if option not in ON_THE_HOST]


@pytest.mark.parametrize("module,option,kind", CASES, ids=["%s.%s" % c[:2] for c in CASES])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_value_of_any_option_is_accepted_or_refused_by_name(module, option, kind, data):
    spec, base, renames = MODULES[module]
    args = dict(base)
    if option == "rate_per_cpu":
        args.pop("rate")
    if option in ("flows", "target", "interval", "ecn", "limit"):
        args["leaf"] = "fq_codel"
    value = data.draw(BY_TYPE[kind], label=option)
    args[renames.get(option, option)] = value
    try:
        spec(**args)
    except HostnetError as exc:
        assert exc.field and exc.reason, exc
    except Exception as exc:  # pylint: disable=broad-except
        pytest.fail("%s: %s=%r raised %s instead of a ValidationError: %s"
                    % (module, option, value, type(exc).__name__, exc))


def test_every_documented_option_reaches_the_spec():
    for module, (spec, base, renames) in MODULES.items():
        accepted = inspect.signature(spec.__init__).parameters
        for option in _documented_options(module):
            assert renames.get(option, option) in accepted, "%s.%s" % (module, option)
        spec(**base)


def test_non_finite_numbers_are_not_accepted_as_counts():
    for value in (math.nan, math.inf):
        with pytest.raises(HostnetError):
            tc.QdiscSpec(device="eth0", kind="htb", rate_per_cpu="1mbit", cpus=value)
