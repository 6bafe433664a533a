#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: host_network
short_description: Converge a host to its whole network policy in one call, as one unit
version_added: 0.3.0
description:
  - Takes the host's whole network policy (the C(host_network_policy) variable the P(hostnet.isolation.host_network#role)
    role converges): network namespaces, veth pairs, qdiscs, port-range redirects, ephemeral port ranges and port
    mapper networks. It checks all of it (the same check the role's preflight runs on the controller), reads the
    host once, and converges every part with the same code as the single-purpose modules
    (M(hostnet.isolation.netns), M(hostnet.isolation.veth), M(hostnet.isolation.qdisc),
    M(hostnet.isolation.port_redirect), M(hostnet.isolation.ephemeral_ports), M(hostnet.isolation.port_mapper)).
  - 'Declarative: it records what it owns in O(record) and removes what a new policy no longer lists: port mapper
    networks, redirects, ephemeral ranges and qdiscs first (they can be put back), veth pairs and namespaces last.'
  - 'One unit: if any step fails, every change this run made is undone, the host is as it was, and the error names
    the policy field of the item that failed (V(host_network_policy.veths[1].mtu)). Deleting a veth pair or a
    namespace cannot be undone; those run last, after everything that can fail before them.'
  - Check mode plans every part against the state the run itself produces (a veth in a namespace the run creates,
    a qdisc on a veth it creates), so it reports exactly the changes the real run makes.
  - The ports watcher is not run by this module; the role hands the watched tasks to
    P(hostnet.isolation.ports_watcher#role).
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - pyroute2 >= 0.7 on the managed host (Debian 12 python3-pyroute2 works)
  - nftables (python3-nftables) or iptables, for port mapper networks
options:
  record:
    description:
      - Where the module records what it owns. It lives under /run because everything it records (namespaces, links,
        qdiscs, rules) is gone after a reboot too.
      - Before it changes anything, a run records what it is about to own (what the record listed and the policy
        lists); after success, exactly what the policy lists. The record is replaced atomically (mode 0600, in a
        directory created with mode 0700).
      - A record that cannot be read stops the run before anything changes, naming the file.
    type: path
    default: /run/hostnet/host_network.json
  host:
    description: The host's name, for the messages of the policy check.
    type: str
    default: this host
  manage_watcher:
    description: Whether the caller runs the ports watcher for the watched tasks (recorded, so a later run knows to stop it).
    type: bool
    default: true
  policy:
    description: The host's network policy.
    type: dict
    required: true
# BEGIN GENERATED policy suboptions (tools/policy_docs.py writes them from the parts' schemas)
# END GENERATED
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: hostnet.isolation.veth
  - module: hostnet.isolation.port_mapper
"""

EXAMPLES = r"""
- name: Converge this host to its network policy
  hostnet.isolation.host_network:
    host: "{{ inventory_hostname }}"
    policy:
      agent_ports: 31000-32000
      tasks:
        - {name: web, ports: 31000-31015}
      namespaces:
        - {name: web}
      veths:
        - {name: veth-web, peer: eth0, peer_netns: web, addresses: [10.77.0.1/30], peer_addresses: [10.77.0.2/30],
           peer_gateway: 10.77.0.1}
      qdiscs:
        - {device: veth-web, kind: tbf, rate: 10mbit}
      port_mappers:
        - network: web
          backend: nftables
          mappings:
            - {task: web, container_id: web, container_ip: 10.77.0.2, host_port: 31000, container_port: 80}
  register: host_network
"""

RETURN = r"""
changes:
  description: What was changed (or, in check mode, would be), in order, each naming its module and item.
  returned: always
  type: list
  elements: str
  sample: ["netns (web): create namespace web", "veth (veth-web): create veth veth-web with peer eth0"]
parts:
  description: Each policy section's results, one per item in the policy's order, as the single-purpose module returns
    it (without C(diff)), plus C(field), the item's policy field.
  returned: always
  type: dict
  sample: {"namespaces": [{"changed": false, "changes": [], "field": "host_network_policy.namespaces[0]"}]}
removed:
  description: The results of removing what the record listed and the policy no longer does, by section.
  returned: always
  type: dict
  sample: {"veths": [{"changed": true, "changes": ["delete veth veth-old (and its peer)"]}]}
record:
  description: The record's path and whether this run changed it.
  returned: always
  type: dict
  sample: {"path": /run/hostnet/host_network.json, "changed": false}
watcher:
  description: The watcher settings of the checked policy, its watched tasks, and whether the previous run's record
    said the watcher was managed (so the caller stops a watcher it no longer needs).
  returned: always
  type: dict
  sample: {"enabled": true, "mode": "audit", "tasks": [{"name": "web", "ports": "31000-31015",
           "cgroup": "/mesos/web"}], "was_managed": true}
problems:
  description: When the policy is refused, every problem as C([field, reason]).
  returned: failure
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hostnet.isolation.plugins.module_utils import host_network, netlink
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError
from ansible_collections.hostnet.isolation.plugins.module_utils.policy import PolicyError

SUMMARISE_OVER = 100


def _invocation(params):
    """The arguments echoed back, with long mapping lists summarised (thousands would double the reply)."""
    args = dict(params)
    policy = dict(args["policy"] or {})
    mappers = []
    for mapper in policy.get("port_mappers") or []:
        mapper = dict(mapper)
        if len(mapper.get("mappings") or []) > SUMMARISE_OVER:
            mapper["mappings"] = "%d mappings (not echoed)" % len(mapper["mappings"])
        mappers.append(mapper)
    policy["port_mappers"] = mappers
    args["policy"] = policy
    return args


def main():
    module = AnsibleModule(argument_spec=host_network.argument_spec(), supports_check_mode=True)
    if netlink.PYROUTE2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(netlink.PYROUTE2_IMPORT_ERROR))
    params = module.params
    try:
        result = host_network.converge(params["host"], params["policy"], params["record"],
                                       check_mode=module.check_mode, manage_watcher=params["manage_watcher"])
    except PolicyError as exc:
        module.fail_json(msg=str(exc), problems=[list(p) for p in exc.problems],
                         invocation=dict(module_args=_invocation(params)))
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason,
                         invocation=dict(module_args=_invocation(params)))
    except (OSError, netlink.NetlinkError) as exc:
        module.fail_json(msg="host_network: %s" % exc, invocation=dict(module_args=_invocation(params)))
    result.pop("plan")
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(invocation=dict(module_args=_invocation(params)), **result)


if __name__ == "__main__":
    main()
