# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CNI plugin's protocol layer (issue #14): every version a runtime may send, any JSON it may hold.

Nothing here touches the host: the paths that reach a backend are covered by tests/integration/test_cni.py.
"""

import json

import pytest
from hypothesis import given, settings, strategies as st

from module_utils import cni
from module_utils.errors import ValidationError

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)
KEYS = ["cniVersion", "name", "type", "delegate", "args", "runtimeConfig", "prevResult", "chain", "excludeDevices"]


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), value=json_values)
def test_any_json_in_a_configuration_is_parsed_or_refused_with_a_cni_error(key, value):
    conf = {"name": "web", "type": "hostnet-cni-port-mapper", key: value}
    try:
        parsed = cni.parse_config(json.dumps(conf))
    except cni.CniError as exc:
        assert exc.code in (cni.E_INCOMPATIBLE_VERSION, cni.E_DECODE, cni.E_INVALID_CONFIG) and exc.msg
        return
    assert cni.config_version(parsed) in cni.SUPPORTED_VERSIONS


@settings(max_examples=300, deadline=None)
@given(result=json_values)
def test_a_result_of_any_shape_gives_addresses_or_none_never_an_exception(result):
    assert set(cni.container_ips(result)) <= {4, 6}


@pytest.mark.parametrize("result,ips", [
    ({"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}, "ip6": {"ip": "fd00::2/64"}},
     {4: "10.0.0.2", 6: "fd00::2"}),  # 0.1.0 / 0.2.0, what Mesos reads
    ({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.3/24", "interface": 0}]}, {4: "10.0.0.3"}),
    ({"cniVersion": "1.0.0", "ips": [{"address": "fd00::3/64"}, {"address": "fd00::4/64"}]}, {6: "fd00::3"}),
    ({"cniVersion": "1.0.0"}, {}),
])
def test_container_addresses_from_every_result_version(result, ips):
    assert cni.container_ips(result) == ips


@pytest.mark.parametrize("version", [None] + cni.SUPPORTED_VERSIONS)
def test_every_supported_version_parses_and_absent_is_0_1_0(version):
    conf = {"name": "web", "type": "hostnet-cni-port-mapper"}
    if version:
        conf["cniVersion"] = version
    assert cni.config_version(cni.parse_config(json.dumps(conf))) == (version or "0.1.0")


@pytest.mark.parametrize("command,version", [("CHECK", "0.3.1"), ("CHECK", None), ("GC", "1.0.0"),
                                             ("STATUS", "0.4.0")])
def test_a_command_newer_than_the_configuration_is_error_1_in_its_version(command, version):
    conf = {"name": "web", "type": "hostnet-cni-port-mapper", "prevResult": {}}
    if version:
        conf["cniVersion"] = version
    code, out = cni.run({"CNI_COMMAND": command, "CNI_CONTAINERID": "c1"}, json.dumps(conf))
    err = json.loads(out)
    assert code == 1 and err["code"] == 1 and err["cniVersion"] == (version or "0.1.0"), err


@settings(max_examples=200, deadline=None)
@given(stdin=st.text(max_size=40) | json_values.map(json.dumps))
def test_version_and_unknown_commands_always_answer_json(stdin):
    code, out = cni.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert code == 0 and "0.1.0" in json.loads(out)["supportedVersions"]
    code, out = cni.run({"CNI_COMMAND": "NOPE"}, stdin)
    err = json.loads(out)
    assert code == 1 and err["code"] == cni.E_INVALID_ENV and isinstance(err["cniVersion"], str)


def test_core_errors_are_reworded_into_configuration_keys():
    conflict = ValidationError("mappings", "tcp 8080 is already mapped to container a; container b cannot take it "
                                           "(remove it first, or use exclusive: true)")
    assert "exclusive" not in cni._cni_words(conflict) and "DEL" in cni._cni_words(conflict)
    assert cni._cni_words(ValidationError("exclude_devices[2]", "bad")) == "excludeDevices[2]: bad"
    assert cni._cni_words(ValidationError("network", "bad")) == "name: bad"


@pytest.mark.parametrize("item,words", [
    ({"hostPort": 70000, "containerPort": 80}, "runtimeConfig.portMappings[0].hostPort: 70000"),
    ({"hostPort": 80, "containerPort": 0}, "runtimeConfig.portMappings[0].containerPort: 0"),
])
def test_a_bad_port_mapping_is_named_by_the_capability_key_the_runtime_sent(item, words):
    conf = cni.parse_config(json.dumps({"cniVersion": "1.0.0", "name": "web", "type": "hostnet-cni-port-mapper",
                                        "prevResult": {}, "runtimeConfig": {"portMappings": [item]}}))
    with pytest.raises(cni.CniError) as info:
        cni._spec(conf, cni.mappings_for(conf, "c1", {4: "10.0.0.2"}))
    assert info.value.code == cni.E_INVALID_CONFIG and info.value.msg.startswith(words), info.value.msg
    assert "_port" not in info.value.msg
