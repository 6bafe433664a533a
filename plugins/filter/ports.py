# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port-set filters for playbooks, over the core's port-range code (module_utils/portranges.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.hostnet.isolation.plugins.module_utils import portranges
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import ValidationError


def _parse(name, value):
    try:
        return portranges.parse(name, value)
    except ValidationError as exc:
        raise AnsibleFilterError("%s: %s" % (exc.field, exc.reason)) from None


def port_ranges(value):
    """The power-of-two aligned blocks of a port set, as "first-last" strings."""
    return ["%d-%d" % (first, first + (~mask & 0xFFFF)) for first, mask in portranges.blocks(_parse("port_ranges",
                                                                                                    value))]


def port_union(value, other):
    return portranges.format_set(portranges.union(_parse("port_union", value), _parse("port_union", other)))


def port_difference(value, other):
    return portranges.format_set(portranges.difference(_parse("port_difference", value),
                                                       _parse("port_difference", other)))


def port_intersection(value, other):
    return portranges.format_set(portranges.intersection(_parse("port_intersection", value),
                                                         _parse("port_intersection", other)))


def port_contains(value, other):
    return portranges.contains(_parse("port_contains", value), _parse("port_contains", other))


class FilterModule:
    def filters(self):
        return {"port_ranges": port_ranges, "port_union": port_union, "port_difference": port_difference,
                "port_intersection": port_intersection, "port_contains": port_contains}
