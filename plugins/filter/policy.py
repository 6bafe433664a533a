# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host network policy check for playbooks, run on the controller before any host is touched.

    {{ host_network_policy | hostnet.isolation.network_policy(inventory_hostname) }}

fails the task with every problem of the policy, each naming its field, and otherwise returns the
normalised policy the host_network role converges. The other filters give the capabilities a
policy needs, what the role owns under it, and what a new policy drops from an old record.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.hostnet.isolation.plugins.module_utils import policy as core
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import ValidationError


def _plain(value):
    """Ansible's lazy containers and tagged strings as plain Python values."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def network_policy(value, host="(this host)"):
    try:
        return core.check(str(host), _plain(value))
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def network_policy_requirements(value):
    return core.requirements(_plain(value))


def network_policy_owned(value):
    return core.owned(_plain(value))


def network_policy_removed(previous, current):
    return core.removed(_plain(previous), _plain(current))


def network_policy_waiting(plan, namespace_results=None, veth_results=None):
    return core.waiting(_plain(plan), _plain(namespace_results), _plain(veth_results))


class FilterModule:
    def filters(self):
        return {"network_policy": network_policy, "network_policy_requirements": network_policy_requirements,
                "network_policy_owned": network_policy_owned, "network_policy_removed": network_policy_removed,
                "network_policy_waiting": network_policy_waiting}
