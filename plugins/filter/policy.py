# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host network policy check for playbooks, run on the controller before any host is touched.

    {{ host_network_policy | hostnet.isolation.network_policy(inventory_hostname) }}

fails the task with every problem of the policy, each naming its field, and otherwise returns the
normalised policy the host_network role converges; ``network_policy_requirements`` gives the
capabilities a policy needs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.hostnet.isolation.plugins.module_utils import host_network
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


def coerced(value, host="(this host)"):
    """The policy as the host_network module receives it: Ansible's own checks and conversions of its
    argument spec (built from the parts' schemas), so the controller and the host see the same values."""
    if not isinstance(value, dict):
        return value  # core.check names the problem
    result = ArgumentSpecValidator(host_network.policy_options()).validate(value)
    if result.error_messages:
        # the core's own check names the item and field (Ansible's words name only the section)
        core.check(str(host), value)
        raise AnsibleFilterError("host %s: invalid network policy (%d problem%s):\n  %s" % (
            host, len(result.error_messages), "" if len(result.error_messages) == 1 else "s",
            "\n  ".join(m.replace("found in", "in host_network_policy.") for m in result.error_messages)))
    return result.validated_parameters


def network_policy(value, host="(this host)"):
    """The checked, normalised policy, or a failure naming every bad field (the module's own check)."""
    try:
        return core.check(str(host), coerced(_plain(value), host))
    except ValidationError as exc:
        raise AnsibleFilterError(str(exc)) from None


def network_policy_requirements(value):
    return core.requirements(_plain(value))


class FilterModule:
    def filters(self):
        return {"network_policy": network_policy, "network_policy_requirements": network_policy_requirements}
