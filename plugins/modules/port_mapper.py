#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: port_mapper
short_description: Declarative DNAT port mappings from host ports to containers, applied atomically
version_added: 0.1.0
description:
  - What C(mesos-cni-port-mapper) does per container, as one declarative task per network. Traffic addressed to
    the host's local addresses (arriving, and generated on the host itself) on a mapped port is DNATed to the
    container's address and port. IPv4 and IPv6; a mapping's family follows O(mappings[].container_ip).
  - Each network's rules live in a table (nftables) or chain (iptables) of their own, applied in one transaction
    (one C(nft -f) batch, through libnftables in process, or one C(iptables-restore --noflush) per address
    family); rules, chains and tables the module does not own are never modified. If applying fails, nothing is
    left half-applied. On nftables, when only mappings change, only the changed map elements are sent;
    otherwise the table is rendered whole.
  - The nftables backend looks mappings up in maps, so the per-packet cost does not grow with their number.
  - Every rule or map element carries C(container_id) as a comment, so a container's mappings are found and
    removed exactly.
  - Two containers claiming the same host address, port and protocol is an error naming both, also across
    networks (the CNI C(portmap) plugin silently lets the last one win).
  - When a UDP mapping changes or is removed, conntrack entries for that host port are deleted, so clients are
    not black-holed by a stale NAT binding.
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - nftables (libnftables, else the C(nft) command) or iptables (C(iptables-nft-restore) or
    C(iptables-legacy-restore)) on the managed host
  - pyroute2 for O(localhost) (conntrack cleanup talks to the kernel's ctnetlink directly, and uses the
    C(conntrack) command only where that fails)
  - python-iptables (Debian C(python3-iptables)) on iptables-legacy hosts to apply through libiptc in process;
    without it C(iptables-legacy-restore) is used
options:
  network:
    description:
      - The group of mappings this task owns, typically one per container network. Names the nftables table
        (C(hostnet-pm-<network>)) or iptables chain (C(HN-<network>)) unless O(chain) is given.
      - Letters, digits and C(_.-), up to 48 characters. With O(backend=iptables) and no O(chain), C(HN-<network>)
        must fit in 23 characters.
    type: str
    required: true
  chain:
    description:
      - Name of the iptables chain (and the nftables table) instead of the default, as C(chain) in
        mesos-cni-port-mapper. At most 23 characters of letters, digits and C(_.-).
      - Unless O(backend=iptables), it also names the nftables table, so it starts with a letter and is no nft
        keyword (such as C(map) or C(counter)), which nft refuses as table names.
      - Renaming moves the network's mappings to the new name and removes the old chain or table in the same
        transaction (no leaked chains).
      - A chain or table of that name that this module did not create (one without its C(hostnet port_mapper)
        marker, such as the host's C(inet filter) table or Docker's C(DOCKER) chain), or one that belongs to
        another network, is never flushed, replaced or removed; the task fails naming it and changes nothing.
    type: str
  mappings:
    description:
      - The mappings. With O(state=present) they are added (or corrected); with O(exclusive=true) they are the
        network's whole set. With O(state=absent) the listed ones are removed; an empty list removes nothing
        (only leaving O(mappings) out, with no O(container_id), removes the whole network).
    type: list
    elements: dict
    suboptions:
      container_id:
        description: The container that owns the mapping (stored as a rule comment).
        type: str
        required: true
      container_ip:
        description:
          - The container's IPv4 or IPv6 address; the mapping's family follows it.
          - IPv6 zone ids (C(fe80::1%eth0)) are refused, here and in O(mappings[].host_ip).
        type: str
        required: true
      host_port:
        description: Host port, or an inclusive range like C(8080-8089).
        type: str
        required: true
      container_port:
        description: Container port, or a range of the same length as O(mappings[].host_port).
        type: str
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp, sctp]
        default: tcp
      host_ip:
        description:
          - Only DNAT traffic to this local address of the host (by default, any local address).
          - Not C(0.0.0.0), C(::) or a multicast address (no packet arrives addressed to one); leave it out for
            any address.
        type: str
  exclude_devices:
    description:
      - Traffic arriving on these devices is not DNATed (every listed device, not only the last).
      - Each is one device name as Linux allows it, without quotes, backslashes, whitespace or control characters,
        and without the wildcards iptables (a trailing C(+)) and nftables (C(*)) would read into it.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) ensures the mappings; V(absent) removes the listed O(mappings), the mappings of
        O(container_id), or, when neither is given, the whole network (table or chains and jumps).
      - An empty O(mappings) list with V(absent) removes nothing, so a templated list of stopped containers that
        happens to be empty never takes the network down.
    type: str
    choices: [present, absent]
    default: present
  container_id:
    description: With O(state=absent), remove every mapping of this container in the network.
    type: str
  exclusive:
    description: With O(state=present), remove the network's mappings that are not listed.
    type: bool
    default: false
  hairpin:
    description:
      - Let a container reach its own mapped host port (masquerade DNATed traffic from a container to itself).
      - The CNI plugin chained with C(snat) (its default, as CNI C(portmap)) widens the source to the container's
        subnet, so that a neighbour on the same bridge reaches it through the host port without C(br_netfilter);
        a run of this module on such a network narrows it to the container itself again.
      - When the container sits on a Linux bridge and C(br_netfilter) is loaded, its bridge port also needs
        hairpin mode (C(ip link set dev <port> type bridge_slave hairpin on), what the CNI bridge plugin's
        C(hairpinMode) sets), since the DNATed packet is bridged back out of the port it came in on.
    type: bool
    default: true
  localhost:
    description:
      - Let clients on the host reach mapped ports at C(127.0.0.1) (IPv4 only; C(::1) cannot leave the host).
      - Sets C(route_localnet=1) on the devices toward the containers and masquerades those flows.
        C(route_localnet) stays set when this is turned off again.
    type: bool
    default: false
  backend:
    description:
      - V(nftables), V(iptables), or V(auto) to follow what the host already uses without mixing legacy and nft
        rules; iptables-legacy if legacy tables are loaded, the network's existing table, iptables-nft if the
        host's rules are iptables-nft tables, else nftables.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The rules apply in the network namespace the module runs in (the host's).
  - When the task runs inside a larger unit (the C(hostnet.isolation.host_network) module) and a later part
    fails, the network's tables or chains are put back as they were before this task, and the
    C(route_localnet) values it set are restored. Deleted conntrack entries are not brought back.
  - On iptables, IPv4 and IPv6 are two transactions (iptables has none across families). A failure of the
    second puts the first back; a run killed between them leaves the IPv6 rules one version behind until the
    next run, which converges both. The nftables backend holds both families in one table and one transaction.
seealso:
  - module: hostnet.isolation.veth
"""

EXAMPLES = r"""
- name: Map host ports to two containers of network "bridge0"
  hostnet.isolation.port_mapper:
    network: bridge0
    mappings:
      - {container_id: web-1, container_ip: 10.88.0.2, host_port: 8080, container_port: 80}
      - {container_id: web-1, container_ip: 10.88.0.2, host_port: 8443, container_port: 443}
      - {container_id: dns-1, container_ip: 10.88.0.3, host_port: 5353, container_port: 53, protocol: udp}
      - {container_id: game-1, container_ip: 10.88.0.4, host_port: "27000-27009", container_port: "7000-7009",
         protocol: udp}
    exclude_devices: [docker0]

- name: IPv6 mapping on one host address only, with the nftables backend
  hostnet.isolation.port_mapper:
    network: bridge0-v6
    backend: nftables
    mappings:
      - {container_id: web-1, container_ip: "fd00:88::2", host_port: 8080, container_port: 80,
         host_ip: "2001:db8::10"}

- name: Let host-local clients use 127.0.0.1:8080 too
  hostnet.isolation.port_mapper:
    network: bridge0
    localhost: true
    mappings:
      - {container_id: web-1, container_ip: 10.88.0.2, host_port: 8080, container_port: 80}

- name: The container web-1 stopped; remove its mappings only
  hostnet.isolation.port_mapper:
    network: bridge0
    state: absent
    container_id: web-1

- name: Make the listed mappings the network's whole set, with the iptables backend
  hostnet.isolation.port_mapper:
    network: legacy-net
    backend: iptables
    exclusive: true
    mappings:
      - {container_id: db-1, container_ip: 10.89.0.5, host_port: 15432, container_port: 5432}

- name: Remove a whole network
  hostnet.isolation.port_mapper:
    network: legacy-net
    backend: iptables
    state: absent
"""

RETURN = r"""
changes:
  description:
    - What the task changed (or, in check mode, would change), one sentence each, in order; empty when nothing
      changes. More than 100 added or removed mappings are summarised by their number (RV(added) and
      RV(removed) list them all).
    - In check mode with O(localhost), a sentence also says when devices the run creates first may carry the
      routes to the containers (check mode cannot name them before they exist).
  returned: always
  type: list
  elements: str
  sample: ["create the nftables table inet hostnet-pm-bridge0 for network bridge0",
           "add mapping tcp *:8080 -> 10.88.0.2:80  container_id=web-1"]
backend:
  description: The backend used.
  returned: always
  type: str
  sample: nftables
engine:
  description: >-
    How the backend applies changes: C(libnftables) (an C(nft -f) batch applied in process), C(nft -f) (when
    libnftables cannot be loaded), C(iptables-nft-restore), C(iptables-legacy-restore), or C(python-iptables)
    (libiptc in process, used on iptables-legacy hosts when python-iptables is installed).
  returned: always
  type: str
  sample: libnftables
network:
  description: >-
    The network the task converged, as given in O(network): the name C(port_mapper) records as the owner of
    RV(chain) (a later task with another O(network) cannot take that table or chain over).
  returned: always
  type: str
  sample: bridge0
chain:
  description: The nftables table or iptables chain that holds the network.
  returned: always
  type: str
  sample: hostnet-pm-bridge0
added:
  description: Mappings added or changed (ranges regrouped), as they are after the task.
  returned: always
  type: list
  elements: dict
  sample: [{"container_id": "web-1", "container_ip": "10.88.0.2", "host_port": "8080", "container_port": "80",
            "protocol": "tcp"}]
removed:
  description: Mappings removed or replaced, as they were before the task.
  returned: always
  type: list
  elements: dict
  sample: []
counts:
  description: Number of single-port entries added, removed and left unchanged.
  returned: always
  type: dict
  sample: {"added": 12, "removed": 0, "unchanged": 0}
conntrack_flushed:
  description: UDP conntrack entries deleted because their mapping changed or went (0 in check mode).
  returned: always
  type: int
  sample: 0
route_localnet:
  description: C(route_localnet) sysctls set (or, in check mode, to set) for O(localhost).
  returned: always
  type: list
  elements: str
  sample: ["/proc/sys/net/ipv4/conf/br0/route_localnet"]
timings:
  description: Seconds spent reading the host's rules, planning, and applying (apply is 0 when nothing was applied).
  returned: always
  type: dict
  sample: {"read": 0.012, "plan": 0.004, "apply": 0.031}
stale_chains_removed:
  description: Tables or chains of this network under an earlier O(chain) name, removed in the same transaction.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, port_mapper, portmap
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    # ``mappings`` has no Ansible sub-options: the core checks each item, field by field with the item's
    # index in the message; not repeating that in Ansible's generic validation saves ~45 us per mapping.
    module = AnsibleModule(argument_spec=contract.argument_spec(portmap.OPTIONS), supports_check_mode=True)
    try:
        spec = portmap.spec(contract.module_params(module.params, portmap.OPTIONS))
        result = port_mapper.converge(spec, check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg="port_mapper: %s" % exc, field=exc.field, reason=exc.reason)
    except OSError as exc:
        module.fail_json(msg="port_mapper: %s" % exc)
    for warning in result.pop("warnings"):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(invocation=dict(module_args=_invocation(module.params)), **result)


def _invocation(params):
    """The arguments echoed back, with a long mappings list summarised.

    Echoing thousands of mappings would double what travels back to the controller; the
    ``added``/``removed`` lists and the diff already say what matters.
    """
    args = dict(params)
    if len(args["mappings"] or []) > SUMMARISE_OVER:
        args["mappings"] = "%d mappings (not echoed)" % len(args["mappings"])
    return args


SUMMARISE_OVER = 100


if __name__ == "__main__":
    main()
