#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: veth
short_description: A veth pair between two network namespaces, with addresses, MTU, MACs, bridge and gateway
version_added: 0.1.0
description:
  - Ensures a veth pair exists with one end (O(name)) in O(netns) and the other (O(peer)) in O(peer_netns),
    and that both ends are up with the requested MTU, MAC addresses and IP addresses; optionally enslaves the
    host end to a bridge and sets a default route inside the peer namespace.
  - Only what differs is changed. The pair is created by a single netlink request that already carries the
    peer's name and namespace, so a peer called C(eth0) never shows up in the host namespace.
  - All changes of one task land together; if one fails, the ones already made are undone.
  - Every input is checked before anything is changed; names longer than 15 characters and unknown namespaces
    are errors that name the option.
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - pyroute2 >= 0.7 on the managed host (Debian 12 python3-pyroute2 works)
options:
  name:
    description: Name of the host end (at most 15 characters).
    type: str
    required: true
  peer:
    description:
      - Name of the other end, in O(peer_netns) (at most 15 characters). Required with O(state=present).
    type: str
  state:
    description:
      - V(present) creates or corrects the pair; V(absent) deletes it (deleting one end deletes both).
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - Namespace of the host end, by name (in O(netns_dir)) or absolute path of a handle. Default is the
        namespace the module runs in.
    type: str
  netns_pid:
    description: Namespace of the host end given as the pid of a process in it.
    type: int
  peer_netns:
    description:
      - Namespace of the peer end, by name (in O(netns_dir)) or absolute path of a handle (for example
        C(/proc/1234/ns/net)). Default is the host end's namespace.
    type: str
  peer_netns_pid:
    description: Namespace of the peer end given as the pid of a process in it (a container's init).
    type: int
  netns_dir:
    description: Directory where namespace names are looked up.
    type: path
    default: /var/run/netns
  mtu:
    description: MTU of both ends (68-65535). Left as it is when omitted.
    type: int
  mac:
    description: MAC address of the host end. Left as it is (kernel-chosen) when omitted.
    type: str
  peer_mac:
    description: MAC address of the peer end. Left as it is (kernel-chosen) when omitted.
    type: str
  addresses:
    description:
      - Exact list of IPv4/IPv6 addresses with prefix length (CIDR) of the host end. Addresses not listed are
        removed (IPv6 link-local addresses are left alone). Omit to leave addresses unmanaged; V([]) removes all.
    type: list
    elements: str
  peer_addresses:
    description: Exact list of addresses of the peer end, as for O(addresses).
    type: list
    elements: str
  peer_gateway:
    description:
      - Default route inside the peer namespace via this IPv4 or IPv6 address, out of the peer end.
      - Must lie inside one of O(peer_addresses) when those are given.
    type: str
  master:
    description: Bridge (in the host end's namespace) that the host end is attached to.
    type: str
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: hostnet.isolation.netns
"""

EXAMPLES = r"""
- name: A namespace for the container
  hostnet.isolation.netns:
    name: web

- name: Wire it to the host with a veth pair, addresses and a default route
  hostnet.isolation.veth:
    name: veth-web
    peer: eth0
    peer_netns: web
    mtu: 1450
    peer_mac: "02:42:0a:00:00:02"
    addresses: [10.200.0.1/24, "fd00:200::1/64"]
    peer_addresses: [10.200.0.2/24, "fd00:200::2/64"]
    peer_gateway: 10.200.0.1

- name: Put the host end of another pair on a bridge
  hostnet.isolation.veth:
    name: veth-api
    peer: eth0
    peer_netns_pid: "{{ app_pid }}"
    master: "{{ bridge_name }}"

- name: Remove the first pair (both ends go)
  hostnet.isolation.veth:
    name: veth-web
    state: absent
"""

RETURN = r"""
interface:
  description: Both ends as they are after the task; null when the pair is absent (or not yet created, in check mode).
  returned: always
  type: dict
  contains:
    host:
      description: The host end (O(name)).
      type: dict
      sample: {"name": "veth-web", "index": 7, "mtu": 1450, "mac": "aa:c1:ab:6e:30:f1", "up": true,
               "addresses": ["10.200.0.1/24", "fd00:200::1/64"], "master": null}
    peer:
      description: The peer end (O(peer)), with its default route's gateway.
      type: dict
      sample: {"name": "eth0", "index": 2, "mtu": 1450, "mac": "02:42:0a:00:00:02", "up": true,
               "addresses": ["10.200.0.2/24", "fd00:200::2/64"], "gateway": "10.200.0.1"}
changes:
  description: What was changed (or, in check mode, would be), in order.
  returned: always
  type: list
  elements: str
  sample: ["create veth veth-web with peer eth0", "add address 10.200.0.1/24 to veth-web"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, netlink, veth
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=contract.argument_spec(veth.OPTIONS),
        mutually_exclusive=[("netns", "netns_pid"), ("peer_netns", "peer_netns_pid")],
        required_if=[("state", "present", ["peer"])],
        supports_check_mode=True,
    )
    if netlink.PYROUTE2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(netlink.PYROUTE2_IMPORT_ERROR))
    try:
        result = veth.converge(veth.spec(contract.module_params(module.params, veth.OPTIONS)),
                               check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except (OSError, netlink.NetlinkError) as exc:
        module.fail_json(msg="veth %s: %s" % (module.params["name"], exc))
    result.pop("created")
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
