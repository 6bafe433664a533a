#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: port_redirect
short_description: Give a container its port ranges on the host's own IP, with tc u32 redirects (no NAT)
version_added: 0.1.0
description:
  - Mesos C(network/port_mapping) style port mapping - containers share the host's IP address and each
    receives the packets addressed to its own port ranges. No NAT and no conntrack are involved.
  - On the ingress of each of O(devices), IPv4 TCP and UDP packets whose destination port lies in O(ports)
    are redirected (tc C(mirred)) to the container's O(veth). The ranges are split into power-of-two aligned
    blocks, one C(u32) filter per block and protocol, like Mesos' C(getPortRanges).
  - Everything the container sends arrives on the ingress of O(veth) and is redirected out of the first of
    O(devices) (the return path).
  - ARP and ICMP arriving on O(devices) are mirrored to every container veth that has redirects (the host
    still receives them), so containers resolve their neighbours and see ICMP on the shared address.
  - Each container's filters sit at a priority of their own (0x100 and up) and are found again by their
    redirect target, O(veth); their port blocks are read back from the kernel, which is the only state.
    A change of O(ports) installs the new filters before removing the old ones.
  - Ports already redirected to another container on the same device are refused, naming that container.
    Filters whose veth has disappeared (a container that died) are removed by the next run.
  - The container's end of O(veth) must carry the host's IP address and the MAC address of the first of
    O(devices), since redirected frames keep their addresses. Use M(hostnet.isolation.veth) with C(peer_mac).
  - Include the container's ephemeral port range (M(hostnet.isolation.ephemeral_ports)) in O(ports) so the
    replies to its outgoing connections reach it.
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - pyroute2 >= 0.7 on the managed host (Debian 12 python3-pyroute2 works)
  - kernel with the ingress qdisc, the u32 classifier and the mirred action
options:
  veth:
    description: The host end of the container's veth pair, in O(netns) (at most 15 characters).
    type: str
    required: true
  ports:
    description:
      - The container's port ranges, as V(31000-31099,31200) or a list of ranges and ports. Required with
        O(state=present). Any range is accepted; it is split into aligned power-of-two blocks.
    type: raw
  devices:
    description:
      - Host devices whose incoming packets are redirected (for example V([eth0])). The first one also
        carries the container's outgoing packets.
    type: list
    elements: str
    default: [eth0]
  protocols:
    description: Transport protocols redirected.
    type: list
    elements: str
    choices: [tcp, udp]
    default: [tcp, udp]
  address:
    description:
      - Only redirect packets addressed to this IPv4 address (the host's address on O(devices)). By default the
        destination address is not matched.
    type: str
  state:
    description: V(present) installs or corrects the container's filters; V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - Namespace of O(devices) and O(veth), by name (in O(netns_dir)) or absolute path of a handle. Default is
        the namespace the module runs in (the host's).
    type: str
  netns_pid:
    description: Namespace of O(devices) and O(veth) given as the pid of a process in it.
    type: int
  netns_dir:
    description: Directory where namespace names are looked up.
    type: path
    default: /var/run/netns
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: hostnet.isolation.veth
  - module: hostnet.isolation.ephemeral_ports
  - module: hostnet.isolation.qdisc
"""

EXAMPLES = r"""
- name: The host's uplink (in a real host this is eth0 already)
  ansible.builtin.command: ip link add eth0 type veth peer name uplink-peer
  changed_when: true

- name: A container that shares the host's address and MAC
  hostnet.isolation.veth:
    name: veth-web
    peer: eth0
    peer_netns_pid: "{{ app_pid }}"
    peer_mac: "02:42:ac:11:00:01"
    mac: "02:42:ac:11:00:02"
    peer_addresses: [192.0.2.10/24]

- name: Give it ports 31000-31099 of the host's address (and its ephemeral range)
  hostnet.isolation.port_redirect:
    veth: veth-web
    ports: "31000-31099,40960-41983"
    devices: [eth0]
  register: web_ports

- name: Show the filters, per device and protocol
  ansible.builtin.debug:
    msg: "{{ web_ports.redirects }}"

- name: TCP only, and only to the host's address
  hostnet.isolation.port_redirect:
    veth: veth-web
    ports: [31000-31099, 40960-41983]
    protocols: [tcp]
    address: 192.0.2.10

- name: The container is gone - remove its filters
  hostnet.isolation.port_redirect:
    veth: veth-web
    state: absent
"""

RETURN = r"""
redirects:
  description:
    - The container's redirects after the task (in check mode, as they would be), per host device - the
      priority of its filters and the port ranges per protocol, read back from the kernel.
  returned: always
  type: dict
  sample: {"eth0": {"prio": 256, "ports": {"tcp": "31000-31099,40960-41983", "udp": "31000-31099,40960-41983"}}}
ports:
  description: O(ports) normalized (sorted, merged); empty with O(state=absent).
  returned: always
  type: str
  sample: "31000-31099,40960-41983"
changes:
  description: What was changed (or, in check mode, would be), in order.
  returned: always
  type: list
  elements: str
  sample: ["add ingress qdisc on eth0", "redirect tcp port 31000-31007 on eth0 to veth-web (prio 256)",
           "mirror ARP arriving on eth0 to veth-web"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, netlink, port_redirect as portredirect
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=contract.argument_spec(portredirect.OPTIONS),
        mutually_exclusive=[("netns", "netns_pid")],
        required_if=[("state", "present", ["ports"])],
        supports_check_mode=True,
    )
    if netlink.PYROUTE2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(netlink.PYROUTE2_IMPORT_ERROR))
    try:
        result = portredirect.converge(portredirect.spec(module.params), check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except (OSError, netlink.NetlinkError) as exc:
        module.fail_json(msg="port_redirect %s: %s" % (module.params["veth"], exc))
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
