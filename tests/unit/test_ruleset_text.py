# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile text never reaches a ruleset (issue #17): property tests over validation and both renderers.

Every string a user, a playbook or a container runtime can put into a port-mapper network (its name, chain,
excluded devices, container ids and addresses, through the module or the CNI plugin alike) is either refused
with a ValidationError naming the field, or rendered into nft and iptables-restore text that keeps its
structure: the same number of lines and statements as plain values give, quotes that pair, one table and one
COMMIT, and values that parse back as exactly what was given.
"""

import functools
import json
import re
from ipaddress import ip_address

from hypothesis import given, settings, strategies as st

from module_utils import cni
from module_utils.errors import ValidationError
from module_utils.portmap import NetworkState, PortMapperSpec
from module_utils.portmap_ipt import IptablesBackend, _parse_rule, _split, check_restore_text
from module_utils.portmap_nft import NftablesBackend
from module_utils import validate

# what ends, quotes, escapes or cuts a token in nft or iptables-restore input, and wildcards
DANGEROUS = list("\"'`\\ \t\n\r\x00\x0b\x0c;#{}[]%:/+*@$") + ["\u2028", "\x85", "\u00a0", "é"]
hostile = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(DANGEROUS + list("aZ09_.-")), max_size=16),
    st.builds(lambda a, b: a + b, st.sampled_from(["eth0", "web-1", "fe80::1%", "10.0.0.2", "fd00::2%", "HN-x"]),
              st.text(alphabet=st.sampled_from(DANGEROUS + list("aZ09")), max_size=12)),
)
ANY_SPECIAL = set("\"'`\\") | set(chr(c) for c in range(0x20)) | {"\x7f"}


def _spec(network="web", chain=None, device="eth1", cid="c1", cip="10.0.0.2", host_ip=None, cip6="fd00::2"):
    mappings = [{"container_id": cid, "container_ip": cip, "host_port": 8080, "container_port": 80},
                {"container_id": cid, "container_ip": cip6, "host_port": 8443, "container_port": 443,
                 "protocol": "udp"}]
    if host_ip is not None:
        mappings.append({"container_id": cid, "container_ip": cip, "host_port": 9000, "container_port": 90,
                         "host_ip": host_ip})
    return PortMapperSpec(network, chain=chain, exclude_devices=[device], mappings=mappings)


def _state(spec):
    return NetworkState(exists=True, entries=spec.entries, exclude_devices=spec.exclude_devices, hairpin=True)


def _ipt_text(spec):
    backend = IptablesBackend.__new__(IptablesBackend)  # rendering needs no tool on the machine
    return [backend.render(spec, _state(spec), family, jumps={}) for family in (4, 6)]


def _nft_text(spec):
    return NftablesBackend("/bin/true").render(spec, _state(spec))


def _check_rendering(spec, baseline):
    # iptables-restore: one table and one COMMIT, and every rule parses back to what was given
    back = NetworkState(exists=True)
    texts = _ipt_text(spec)  # a container address may change family, so the lines are counted over both
    assert sum(len(t.splitlines()) for t in texts) == sum(len(t.splitlines()) for t in _ipt_text(baseline))
    for family, text in zip((4, 6), texts):
        check_restore_text(text)
        for line in text.splitlines():
            if line.startswith("-A %s " % spec.chain):
                _parse_rule(family, _split(line), back)
    assert back.entries == spec.entries
    assert sorted(set(back.exclude_devices)) == spec.exclude_devices
    # nft: the same lines and statements as plain values give, every quote pairs, nothing that escapes
    text, plain = _nft_text(spec), _nft_text(baseline)
    assert len(text.splitlines()) == len(plain.splitlines())
    assert not ANY_SPECIAL & (set(text) - {"\n", '"'})
    for line in text.splitlines():
        assert line.count('"') % 2 == 0, line
    # outside its quoted strings (device names, comments), the text has the plain one's statements and blocks
    bare, plain_bare = (re.sub(r'"[^"\n]*"', '""', t) for t in (text, plain))
    for token in (";", "{", "}"):
        assert bare.count(token) == plain_bare.count(token), token


def _accepts(build):
    try:
        return build()
    except ValidationError as exc:
        assert exc.field and exc.reason  # refused by name, never a crash
        return None


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["network", "chain", "device", "cid", "cip", "host_ip", "cip6"]), value=hostile)
def test_any_text_is_refused_by_name_or_rendered_without_changing_the_ruleset_structure(field, value):
    spec = _accepts(functools.partial(_spec, **{field: value}))  # pylint 3.0 (2.16's) calls the lambda unnecessary
    if spec is not None:
        # the baseline: plain names, or the same address in its plain form (its family decides which maps fill)
        plain = {} if field in ("network", "chain", "device", "cid") else {field: value and str(ip_address(value))}
        _check_rendering(spec, _spec(**plain))


@settings(max_examples=300, deadline=None)
@given(value=hostile)
def test_interface_names_that_pass_hold_nothing_a_ruleset_reads_specially(value):
    try:
        name = validate.device_match("devices[0]", value)
    except ValidationError as exc:
        assert exc.field == "devices[0]"
        return
    assert not ANY_SPECIAL & set(name) and not any(c.isspace() for c in name)
    assert "/" not in name and ":" not in name and not name.endswith("+") and "*" not in name
    assert 0 < len(name.encode("utf-8")) <= 15


@settings(max_examples=300, deadline=None)
@given(value=hostile)
def test_addresses_that_pass_have_no_zone_and_print_as_plain_addresses(value):
    try:
        addr = validate.ip_address("host_ip", value)
    except ValidationError as exc:
        assert exc.field == "host_ip"
        return
    assert set(str(addr)) <= set("0123456789abcdef.:")


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["name", "chain", "excludeDevices", "delegate.type", "hostIP", "protocol", "hostPort"]),
       value=hostile)
def test_any_text_in_a_cni_configuration_is_a_cni_error_or_a_safe_ruleset(key, value):
    """What the plugin's ADD validates before its delegate creates anything (cni.cmd_add's first step)."""
    item = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    conf = {"cniVersion": "1.0.0", "name": "web", "type": "hostnet-cni-port-mapper",
            "delegate": {"type": "bridge"}, "runtimeConfig": {"portMappings": [item]}}
    if key == "delegate.type":
        conf["delegate"]["type"] = value
    elif key == "excludeDevices":
        conf[key] = [value]
    elif key in item or key == "hostIP":
        item[key] = value
    else:
        conf[key] = value
    try:
        conf = cni.parse_config(json.dumps(conf))
        spec = cni._spec(conf, cni.mappings_for(conf, "c1", {4: "10.0.0.2", 6: "fd00::2"}))
    except cni.CniError as exc:
        assert exc.code in (cni.E_INVALID_CONFIG, cni.E_DECODE) and exc.msg, exc
        return
    assert not ANY_SPECIAL & (set(_nft_text(spec)) - {"\n", '"'})
    for text in _ipt_text(spec):
        check_restore_text(text)
    if key == "delegate.type":
        assert "/" not in value and value not in (".", "..")
