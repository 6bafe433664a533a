# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

import ipaddress

import pytest

from module_utils import validate
from module_utils.errors import ValidationError


@pytest.mark.parametrize("name", ["eth0", "veth-web", "a" * 15, "mesos12345", "v.1_x"])
def test_ifname_accepts_linux_names(name):
    assert validate.ifname("name", name) == name


@pytest.mark.parametrize("name,reason", [
    ("a" * 16, "at most 15"), ("", "not an interface name"), ("a/b", "no '/'"), ("a b", "whitespace"),
    ("a:1", "':'"), (".", "not a valid"), (None, "not an interface name"), ("ééééééééé", "at most 15"),
])
def test_ifname_rejects_with_field_and_reason(name, reason):
    with pytest.raises(ValidationError) as err:
        validate.ifname("peer", name)
    assert err.value.field == "peer" and reason in str(err.value)


def test_mac_normalises_and_rejects_multicast_and_zero():
    assert validate.mac("mac", "02:AB:cd:00:00:01") == "02:ab:cd:00:00:01"
    for bad, reason in (("01:00:5e:00:00:01", "multicast"), ("00:00:00:00:00:00", "not a usable"),
                        ("02:00:00:00:00", "not a MAC"), ("02-00-00-00-00-01", "not a MAC")):
        with pytest.raises(ValidationError, match=reason):
            validate.mac("mac", bad)


@pytest.mark.parametrize("value", [67, 65536, -1, True, "1500"])
def test_mtu_bounds(value):
    with pytest.raises(ValidationError, match="not an MTU"):
        validate.mtu("mtu", value)


def test_cidr_list_sorts_v4_before_v6_and_names_the_bad_item():
    got = validate.cidr_list("addresses", ["fd00::1/64", "10.0.0.1/24"])
    assert got == [ipaddress.ip_interface("10.0.0.1/24"), ipaddress.ip_interface("fd00::1/64")]
    assert validate.cidr_list("addresses", None) is None
    for values, field, reason in ((["10.0.0.1/24", "10.0.0.1"], "addresses[1]", "prefix length"),
                                  (["10.0.0.1/33"], "addresses[0]", "not an IPv4 or IPv6"),
                                  (["224.0.0.1/4"], "addresses[0]", "cannot be assigned"),
                                  (["10.0.0.1/24", "10.0.0.1/24"], "addresses[1]", "listed twice"),
                                  ("10.0.0.1/24", "addresses", "must be a list")):
        with pytest.raises(ValidationError) as err:
            validate.cidr_list("addresses", values)
        assert err.value.field == field and reason in err.value.reason


def test_link_local_and_newline_inputs_are_rejected():
    with pytest.raises(ValidationError, match="link-local"):
        validate.cidr_list("addresses", ["fe80::1/64"])
    with pytest.raises(ValidationError, match="not a MAC"):
        validate.mac("mac", "02:00:00:00:00:01\n")


def test_params_types_values_as_ansibles_argument_spec_does():
    from module_utils.validate import params
    options = {"n": {"type": "int"}, "b": {"type": "bool", "default": True}, "l": {"type": "list", "elements": "str",
               "default": []}, "s": {"type": "str", "choices": ["a", "b"], "default": "a"}}
    assert params(options, {"n": " 42 ", "b": "off", "l": "x,y", "extra": 1}) == {"n": 42, "b": False,
                                                                                  "l": ["x", "y"], "s": "a"}
    assert params(options, {"n": 7.0, "l": [1, "z"]}) == {"n": 7, "b": True, "l": ["1", "z"], "s": "a"}
    for given, field in (({"n": "4.5"}, "n"), ({"b": "maybe"}, "b"), ({"b": 2}, "b"), ({"l": {"a": 1}}, "l"),
                         ({"l": [["x"]]}, "l[0]"), ({"s": "c"}, "s")):
        with pytest.raises(ValidationError) as err:
            params(options, given)
        assert err.value.field == field
