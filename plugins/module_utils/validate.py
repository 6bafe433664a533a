# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input checks shared by every front door; each error names its field.

This is also the trust boundary for text that becomes a ruleset: every value that the nftables or
iptables backend writes into ``nft -f`` or ``iptables-restore`` input (device names, addresses,
chain, table and network names, container ids) passes one of these checks first, in the module,
the policy check and the CNI plugin alike. A value that passes holds no character that could end,
quote or escape a token in either language: no whitespace, control character, quote or backslash.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from .errors import ValidationError

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
# The kernel refuses '/', ':' and whitespace in a device name; quotes and backslashes it allows, but
# they would end or escape a token of ruleset text, and control characters (NUL included) cut it.
_IFNAME_BAD_RE = re.compile(r"""[/:"'`\\\s\x00-\x1f\x7f-\x9f]""")
# Names of rulesets' own objects (tables, chains, networks): a strict alphabet.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def ifname(field, value):
    """A Linux interface name: 1-15 bytes, none of '/', ':', whitespace, control characters, quotes or backslashes."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "%r is not an interface name" % (value,))
    if len(value.encode("utf-8")) > 15:
        raise ValidationError(field, "%r is %d characters long; Linux allows at most 15"
                                     % (value, len(value.encode("utf-8"))))
    if value in (".", "..") or _IFNAME_BAD_RE.search(value):
        raise ValidationError(field, "%r is not a valid interface name (no '/', ':', whitespace, control "
                                     "characters, quotes or backslashes)" % (value,))
    return value


def device_match(field, value):
    """An interface name that a ruleset matches exactly: iptables reads a trailing '+' and nftables a '*' as
    wildcards, which would match every device whose name starts the same way."""
    value = ifname(field, value)
    if value.endswith("+") or "*" in value:
        raise ValidationError(field, "%r would be a wildcard in iptables or nftables (a trailing '+' or a '*'); "
                                     "name one device" % (value,))
    return value


def no_zone(field, addr):
    """Refuse an IPv6 zone id (``fe80::1%eth0``): Python accepts any text after '%', newlines included,
    and neither iptables nor nftables takes one in an address."""
    if getattr(addr, "scope_id", None) is not None:
        raise ValidationError(field, "%r has a zone id (%%...); give the address without one" % (str(addr),))
    return addr


def mac(field, value):
    """A unicast Ethernet address, normalised to lower case."""
    if value is None:
        return None
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise ValidationError(field, "%r is not a MAC address (like 02:00:00:00:00:01)" % (value,))
    value = value.lower()
    if int(value[:2], 16) & 1:
        raise ValidationError(field, "%s is a multicast address; a device needs a unicast one" % value)
    if value == "00:00:00:00:00:00":
        raise ValidationError(field, "00:00:00:00:00:00 is not a usable address")
    return value


def mtu(field, value, minimum=68, maximum=65535):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(field, "%r is not an MTU between %d and %d" % (value, minimum, maximum))
    return value


def cidr_list(field, values):
    """A list of 'address/prefix' strings, IPv4 or IPv6; None stays None (not managed)."""
    if values is None:
        return None
    if not isinstance(values, list):
        raise ValidationError(field, "must be a list of addresses with prefix length (CIDR)")
    result = []
    for i, value in enumerate(values):
        item = "%s[%d]" % (field, i)
        if not isinstance(value, str) or "/" not in value:
            raise ValidationError(item, "%r is not an address with prefix length, like 10.0.0.1/24" % (value,))
        try:
            addr = ipaddress.ip_interface(value)
        except ValueError:
            raise ValidationError(item, "%r is not an IPv4 or IPv6 address with prefix length" % (value,))
        no_zone(item, addr.ip)
        if addr.ip.is_multicast or addr.ip.is_unspecified:
            raise ValidationError(item, "%s cannot be assigned to a device" % value)
        if addr.version == 6 and addr.ip.is_link_local:
            raise ValidationError(item, "%s is an IPv6 link-local address; the kernel assigns and keeps those, "
                                        "they are not managed" % value)
        if addr in result:
            raise ValidationError(item, "%s is listed twice" % value)
        result.append(addr)
    return sorted(result, key=lambda a: (a.version, a))


def ip_address(field, value):
    if value is None:
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(field, "%r is not an IPv4 or IPv6 address" % (value,))
    return no_zone(field, addr)


# Ansible's boolean spellings (ansible.module_utils.parsing.convert_bool), so that a policy value the
# controller checks is taken exactly when the module's argument spec would take it.
_TRUE = frozenset(("y", "yes", "on", "1", "true", "t"))
_FALSE = frozenset(("n", "no", "off", "0", "false", "f"))


def _typed(field, value, kind):
    """``value`` converted as Ansible's argument spec converts an option of type ``kind``."""
    if kind in ("str", "path"):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # Ansible converts (a templated number, a YAML name like 123)
        raise ValidationError(field, "%r is not a string" % (value,))
    if kind == "int":
        if isinstance(value, int):
            return value  # a bool too, as Ansible: the part refuses it itself, naming the field
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.match(r"^\s*[-+]?[0-9]+\s*\Z", value):
            return int(value)  # a templated "{{ pid }}" arrives as text on the controller
        raise ValidationError(field, "%r is not an integer" % (value,))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int, float)):
            text = str(value).strip().lower()
            if text in _TRUE or value == 1:
                return True
            if text in _FALSE or value == 0:
                return False
        raise ValidationError(field, "%r is not a boolean (true or false)" % (value,))
    if kind == "dict":
        if isinstance(value, dict):
            return value
        raise ValidationError(field, "%r is not a mapping" % (value,))
    return value


def params(options, given):
    """The options of a part's schema from ``given`` (a module's parameters or a policy item), typed as
    Ansible's argument spec types them, defaults filled in, choices checked; keys outside the schema are
    left out. Each refusal names the field (``mappings[2]``)."""
    out = {}
    for name, option in options.items():
        value = given.get(name)
        if value is None:
            value = option.get("default")
            if isinstance(value, list):
                value = list(value)
        if value is None:
            out[name] = None
            continue
        kind = option.get("type", "str")
        if kind == "list":
            if isinstance(value, str):
                value = value.split(",")  # Ansible's comma-separated list
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [str(value)]
            elif not isinstance(value, list):
                raise ValidationError(name, "must be a list")
            elements = option.get("elements")
            if elements:
                value = [_typed("%s[%d]" % (name, i), item, elements) for i, item in enumerate(value)]
        else:
            value = _typed(name, value, kind)
        choices = option.get("choices")
        for index, item in enumerate(value if kind == "list" else [value]):
            if choices is not None and item not in choices:
                raise ValidationError(name if kind != "list" else "%s[%d]" % (name, index),
                                      "%r is not one of %s" % (item, ", ".join(str(c) for c in choices)))
        out[name] = value
    return out
