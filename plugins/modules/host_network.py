#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: host_network
short_description: Converge a host to its whole network policy in one call, as one unit
version_added: 0.1.0
description:
  - Takes the host's whole network policy (the C(host_network_policy) variable the P(hostnet.isolation.host_network#role)
    role converges), that is network namespaces, veth pairs, qdiscs, port-range redirects, ephemeral port ranges and
    port mapper networks. It checks all of it (the same check the role's preflight runs on the controller), reads the
    host once, and converges every part with the same code as the single-purpose modules
    (M(hostnet.isolation.netns), M(hostnet.isolation.veth), M(hostnet.isolation.qdisc),
    M(hostnet.isolation.port_redirect), M(hostnet.isolation.ephemeral_ports), M(hostnet.isolation.port_mapper)).
  - 'Declarative: it records what it owns in O(record) and removes what a new policy no longer lists: port mapper
    networks, redirects, ephemeral ranges and qdiscs first (they can be put back), veth pairs and namespaces last.'
  - 'One unit: if any step fails, every change this run made is undone, the host is as it was, and the error names
    the policy field of the item that failed (V(host_network_policy.veths[1].mtu)). Deleting a veth pair or a
    namespace cannot be undone; those run last, after everything that can fail before them.'
  - Before it changes anything, it probes the capabilities the policy needs on the host (see O(require)).
  - Check mode plans every part against the state the run itself produces (a veth in a namespace the run creates,
    a qdisc on a veth it creates), so it reports exactly the changes the real run makes.
  - With O(watcher), the ports watcher is converged in the same run, after the network, for the watched tasks.
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
    description:
      - Whether the ports watcher runs for the watched tasks, recorded so a later run knows to stop it.
      - With O(watcher), this module converges it; without, the caller does (and stops it when RV(watcher)'s
        C(was_managed) is true and no task is watched any more).
    type: bool
    default: true
  require:
    description:
      - Capabilities (the names M(hostnet.isolation.capabilities) takes) this host must have beyond those the policy
        needs.
      - Before it changes anything (in check mode too), the module probes the capabilities the policy needs (a
        qdisc's kind and leaf, a redirect's classifier and action, a port mapper's explicit backend, the watcher's
        socket and cgroup interfaces) and these, only those, the way M(hostnet.isolation.capabilities) does. If one is
        missing the run stops with nothing changed, naming the policy field that needs it (or C(require[i])) and
        what the probe found.
    type: list
    elements: str
    default: []
  watcher:
    description:
      - Converge the ports watcher in the same run, as M(hostnet.isolation.ports_watcher) does with these options
        (the P(hostnet.isolation.host_network#role) role passes the executable it built on the controller, so a
        host needs one module run in all). Its policy is the watched tasks of O(policy).
      - 'Its C(config) takes the paths and settings of the caller; what the policy decides is set from the policy:
        C(mode), C(watch_interval), C(include_udp), C(check_agent_port_range_only), C(isolated_port_range) and
        C(metrics_listen) from its C(watcher) section, C(agent_port_range) from C(agent_ports) (V(31000-32000) when it
        has none).'
      - 'After the network: started when some task is watched (and O(manage_watcher)), stopped and disabled when the
        previous run started it and no task is watched any more, left alone otherwise.'
      - 'Its options are checked, the host read and the new configuration and policy checked by the new executable
        before the network changes; the watcher is asked what it sees (O(watcher.report)) before too. A failure of
        its own later steps (a service that does not start) leaves the network converged: the error says so and
        names C(watcher.<option>).'
    type: dict
# BEGIN GENERATED watcher suboptions (tools/policy_docs.py writes them from the ports_watcher module)
    suboptions:
      service:
        description:
          - The systemd service's name, without C(.service).
        type: str
        default: hostnet-ports-watcher
      config:
        description:
          - The watcher's configuration (its options, as in the README), written as JSON (keys sorted, indent 2).
          - Required with C(state=started). Its C(policy_dir) is where C(policy) goes; the directory of its C(event_log) is
            made when missing.
        type: dict
      config_file:
        description:
          - Where the configuration is written.
        type: path
        default: /etc/hostnet/ports-watcher.json
      unit:
        description:
          - The text of the systemd unit. Required with C(state=started).
        type: str
      unit_dir:
        description:
          - Where the unit is written.
        type: path
        default: /etc/systemd/system
      executable:
        description:
          - Where the watcher executable is, installed from O(watcher.executable_content) or before this module runs; it checks
            the configuration and policy.
        type: path
        default: /usr/local/sbin/hostnet-ports-watcher
      python:
        description:
          - The Python interpreter that runs O(watcher.executable) for the check.
        type: path
        default: /usr/bin/python3
      executable_changed:
        description:
          - The executable was just installed or replaced by other means than O(watcher.executable_content) (which sets it itself),
            so a running service is restarted.
          - Without O(watcher.executable_content), in check mode it also means the executable on the host is not the one that
            will run, so the check of the configuration is skipped (C(checked) says so).
        type: bool
        default: false
      old_lib_dir:
        description:
          - Where earlier versions of the role put the watcher's sources; C(src/hostnet_core) and C(src/__main__.py) there are
            removed when present.
        type: path
      executable_content:
        description:
          - The executable's bytes, base64-encoded; installed at O(watcher.executable) when they differ from what is there,
            which counts as O(watcher.executable_changed). The new configuration and policy are checked by these bytes, not
            by the executable installed before (so in check mode too).
          - Not echoed back (C(no_log)).
        type: str
      packages:
        description:
          - Debian packages the executable needs (on Debian and Ubuntu hosts); those not installed are installed with C(apt-get)
            before anything else. Give V([]) on other hosts and install them another way.
        type: list
        elements: str
        default: []
      report:
        description:
          - Ask the watcher what it sees (O(watcher.python) O(watcher.executable) C(--config) O(watcher.config_file) C(--report
            --json), which only looks) before the run changes anything and after it, and return both as C(report).
        type: bool
        default: false
# END GENERATED
  policy:
    description: The host's network policy.
    type: dict
    required: true
# BEGIN GENERATED policy suboptions (tools/policy_docs.py writes them from the parts' schemas)
    suboptions:
      agent_ports:
        description:
          - 'The ports the agent hands to tasks, as V(31000-32000): task ports, mapped host ports and redirected ports must
            lie inside, ephemeral ranges outside.'
        type: raw
      tasks:
        description:
          - The tasks on this host and the ports each is assigned (no two may overlap).
          - A task with O(policy.tasks[].cgroup) or O(policy.tasks[].systemd_unit) is watched by the ports watcher.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - The task's name.
            type: str
            required: true
          ports:
            description:
              - Its ports, as V(31000-31009,31100).
            type: raw
          cgroup:
            description:
              - Its cgroup (relative to the cgroup v2 root), for the watcher.
            type: str
          systemd_unit:
            description:
              - Or its systemd unit, for the watcher.
            type: str
      watcher:
        description:
          - The ports watcher (role P(hostnet.isolation.ports_watcher#role)), given the watched tasks.
        type: dict
        default: {}
        suboptions:
          enabled:
            description:
              - 'Run the watcher; default: when some task has a cgroup or systemd_unit.'
            type: bool
          mode:
            description:
              - V(audit) logs, V(enforce) kills, V(prevent) refuses the bind.
            type: str
            default: audit
            choices:
              - audit
              - enforce
              - prevent
          watch_interval:
            description:
              - Seconds between scans.
            type: float
            default: 30
          include_udp:
            description:
              - Also check bound UDP sockets.
            type: bool
            default: false
          check_agent_port_range_only:
            description:
              - Ignore listeners outside O(policy.agent_ports).
            type: bool
            default: false
          isolated_port_range:
            description:
              - Check only listeners in this range.
            type: str
          metrics_listen:
            description:
              - Where the watcher serves Prometheus metrics.
            type: str
            default: 127.0.0.1:9613
      namespaces:
        description:
          - Network namespaces (M(hostnet.isolation.netns)); one removed from the list is removed from the host.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - Name of the namespace; the handle is C(netns_dir)/C(name).
            type: str
            required: true
          netns_dir:
            description:
              - Directory that holds the handles. C(ip netns) uses C(/var/run/netns).
            type: path
            default: /var/run/netns
          pid:
            description:
              - Adopt the network namespace of this process instead of creating a new one.
            type: int
          symlinks:
            description:
              - Absolute paths of symlinks that must point at the handle. Missing parent directories are created.
            type: list
            elements: path
            default: []
      veths:
        description:
          - Veth pairs (M(hostnet.isolation.veth)); name and peer are required.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - Name of the host end (at most 15 characters).
            type: str
            required: true
          peer:
            description:
              - Name of the other end, in C(peer_netns) (at most 15 characters). Required with C(state=present).
            type: str
            required: true
          netns:
            description:
              - Namespace of the host end, by name (in C(netns_dir)) or absolute path of a handle. Default is the namespace
                the module runs in.
            type: str
          netns_pid:
            description:
              - Namespace of the host end given as the pid of a process in it.
            type: int
          peer_netns:
            description:
              - Namespace of the peer end, by name (in C(netns_dir)) or absolute path of a handle (for example C(/proc/1234/ns/net)).
                Default is the host end's namespace.
            type: str
          peer_netns_pid:
            description:
              - Namespace of the peer end given as the pid of a process in it (a container's init).
            type: int
          netns_dir:
            description:
              - Directory where namespace names are looked up.
            type: path
            default: /var/run/netns
          mtu:
            description:
              - MTU of both ends (68-65535). Left as it is when omitted.
            type: int
          mac:
            description:
              - MAC address of the host end. Left as it is (kernel-chosen) when omitted.
            type: str
          peer_mac:
            description:
              - MAC address of the peer end. Left as it is (kernel-chosen) when omitted.
            type: str
          addresses:
            description:
              - Exact list of IPv4/IPv6 addresses with prefix length (CIDR) of the host end. Addresses not listed are removed
                (IPv6 link-local addresses are left alone). Omit to leave addresses unmanaged; V([]) removes all.
            type: list
            elements: str
          peer_addresses:
            description:
              - Exact list of addresses of the peer end, as for C(addresses).
            type: list
            elements: str
          peer_gateway:
            description:
              - Default route inside the peer namespace via this IPv4 or IPv6 address, out of the peer end.
            type: str
          master:
            description:
              - Bridge (in the host end's namespace) that the host end is attached to.
            type: str
      qdiscs:
        description:
          - Root or ingress qdiscs (M(hostnet.isolation.qdisc)); one removed from the list goes back to the kernel's default.
        type: list
        elements: dict
        default: []
        suboptions:
          device:
            description:
              - The device (at most 15 characters), in C(netns).
            type: str
            required: true
          kind:
            description:
              - The qdisc. V(htb), V(tbf), V(fq_codel), V(pfifo), V(cake) (shaping and AQM in one) and V(fq) (per-flow pacing)
                are root qdiscs; V(ingress) is the ingress qdisc.
            type: str
            required: true
            choices:
              - htb
              - tbf
              - fq_codel
              - pfifo
              - cake
              - fq
              - ingress
          netns:
            description:
              - Namespace of C(device), by name (in C(netns_dir)) or absolute path of a handle. Default is the namespace the
                module runs in.
            type: str
          netns_pid:
            description:
              - Namespace of C(device) given as the pid of a process in it.
            type: int
          netns_dir:
            description:
              - Directory where namespace names are looked up.
            type: path
            default: /var/run/netns
          rate:
            description:
              - The rate limit (V(htb), V(tbf)), as tc writes it - V(10mbit), V(1.5gbit), V(800kbit), V(125kbps) (bytes) - or
                a bare number of bytes per second (unlike tc, where a bare number is bits).
              - V(cake) - its bandwidth; V(fq) - the most one flow is paced to (tc's C(maxrate)). Both also take V(unlimited);
                when omitted, a new one is unlimited and an existing one keeps its rate.
            type: str
          rate_per_cpu:
            description:
              - The rate for each of the container's C(cpus), like Mesos' C(--egress_rate_per_cpu); the limit is their product,
                bounded by C(min_rate) and C(max_rate). Excludes C(rate).
            type: str
          cpus:
            description:
              - The container's CPU share (for example V(0.5) or V(4)), with C(rate_per_cpu).
            type: float
          min_rate:
            description:
              - Lower bound of the rate computed from C(rate_per_cpu) (or of C(rate)).
            type: str
          max_rate:
            description:
              - Upper bound of the rate computed from C(rate_per_cpu) (or of C(rate)).
            type: str
          ceil:
            description:
              - The most the htb class may borrow up to. Default is C(rate).
            type: str
          burst:
            description:
              - Bytes that may be sent at once above the rate (V(htb), V(tbf)), as V(32kb) (binary units, as tc) or a number
                of bytes. Default is what the rate sends in 10 ms, at least 15140 bytes (ten full frames).
            type: str
          cburst:
            description:
              - Burst at C(ceil) for the htb class. Default is C(burst).
            type: str
          latency:
            description:
              - The longest a packet may wait in the V(tbf) queue, as V(50ms); sets the queue's byte limit to rate x latency
                + burst. Default V(50ms).
            type: str
          leaf:
            description:
              - The qdisc under the htb class - V(fq_codel) for bloat reduction (as Mesos), V(pfifo), or V(none) (the kernel's
                built-in queue).
            type: str
            choices:
              - fq_codel
              - pfifo
              - none
          flows:
            description:
              - fq_codel - number of flow queues (1-65536). Kernel default (1024) when omitted. The kernel cannot change it
                on an existing fq_codel, so a different value replaces the qdisc.
            type: int
          target:
            description:
              - fq_codel, cake - acceptable standing queue delay, as V(5ms). Kernel default (5 ms) when omitted.
            type: str
          interval:
            description:
              - fq_codel, cake (its C(rtt)) - the sliding window for C(target), as V(100ms). Kernel default (100 ms) when omitted.
            type: str
          ecn:
            description:
              - fq_codel - mark packets with ECN instead of dropping them. Kernel default (on) when omitted.
            type: bool
          limit:
            description:
              - Queue length in packets of V(fq_codel), V(pfifo) (alone or as the htb leaf) or V(fq). When omitted, a new qdisc
                gets the kernel's default (for pfifo, the device's txqueuelen) and an existing one keeps its limit.
            type: int
      redirects:
        description:
          - Port-range redirects without NAT (M(hostnet.isolation.port_redirect)).
        type: list
        elements: dict
        default: []
        suboptions:
          veth:
            description:
              - The host end of the container's veth pair, in C(netns) (at most 15 characters).
            type: str
            required: true
          ports:
            description:
              - 'Ports to redirect; default: the ports of O(policy.redirects[].task).'
            type: raw
          devices:
            description:
              - Host devices whose incoming packets are redirected (for example V([eth0])). The first one also carries the container's
                outgoing packets.
            type: list
            elements: str
            default:
              - eth0
          protocols:
            description:
              - Transport protocols redirected.
            type: list
            elements: str
            default:
              - tcp
              - udp
            choices:
              - tcp
              - udp
          address:
            description:
              - Only redirect packets addressed to this IPv4 address (the host's address on C(devices)). By default the destination
                address is not matched.
            type: str
          netns:
            description:
              - Namespace of C(devices) and C(veth), by name (in C(netns_dir)) or absolute path of a handle. Default is the
                namespace the module runs in (the host's).
            type: str
          netns_pid:
            description:
              - Namespace of C(devices) and C(veth) given as the pid of a process in it.
            type: int
          netns_dir:
            description:
              - Directory where namespace names are looked up.
            type: path
            default: /var/run/netns
          task:
            description:
              - The task (in O(policy.tasks)) whose ports these are.
            type: str
      ephemeral_ports:
        description:
          - Ephemeral port ranges of containers (M(hostnet.isolation.ephemeral_ports)); the agent's range is always avoided.
        type: list
        elements: dict
        default: []
        suboptions:
          container:
            description:
              - The container's id; the key of its allocation in C(state_file).
            type: str
            required: true
          netns:
            description:
              - The container's network namespace, by name (in C(netns_dir)) or absolute path of a handle. Required (or C(netns_pid))
                with C(state=present).
            type: str
          netns_pid:
            description:
              - The container's network namespace given as the pid of a process in it.
            type: int
          netns_dir:
            description:
              - Directory where namespace names are looked up.
            type: path
            default: /var/run/netns
          size:
            description:
              - Ports in the range, a power of two from 8 to 32768 (Mesos' C(--ephemeral_ports_per_container)).
            type: int
            default: 1024
          range:
            description:
              - Ask for this exact range instead (for example V(40960-41983)). It must hold a power-of-two number of ports,
                start at a multiple of that number, and be free.
            type: str
          pool:
            description:
              - Where ranges may come from, as V(32768-65535). Ports below 1024 are always excluded.
            type: raw
            default: 1024-65535
          state_file:
            description:
              - Where allocations are kept. The default lives under C(/run), so allocations survive reruns and daemon restarts
                but not a reboot (which also ends every container).
            type: path
            default: /run/hostnet/ephemeral-ports.json
      port_mappers:
        description:
          - 'Port mapper networks (M(hostnet.isolation.port_mapper)); each is exclusive: mappings not listed are removed, and
            a network removed from the list is removed.'
        type: list
        elements: dict
        default: []
        suboptions:
          network:
            description:
              - The group of mappings this task owns, typically one per container network. Names the nftables table (C(hostnet-pm-<network>))
                or iptables chain (C(HN-<network>)) unless C(chain) is given.
            type: str
            required: true
          chain:
            description:
              - Name of the iptables chain (and the nftables table) instead of the default, as C(chain) in mesos-cni-port-mapper.
                At most 23 characters of letters, digits and C(_.-).
            type: str
          mappings:
            description:
              - The mappings. With C(state=present) they are added (or corrected); with C(exclusive=true) they are the network's
                whole set. With C(state=absent) the listed ones are removed; an empty list removes nothing (only leaving C(mappings)
                out, with no C(container_id), removes the whole network).
            type: list
            elements: dict
            default: []
          exclude_devices:
            description:
              - Traffic arriving on these devices is not DNATed (every listed device, not only the last).
            type: list
            elements: str
            default: []
          hairpin:
            description:
              - Let a container reach its own mapped host port (masquerade traffic from a container to itself).
            type: bool
            default: true
          localhost:
            description:
              - Let clients on the host reach mapped ports at C(127.0.0.1) (IPv4 only; C(::1) cannot leave the host).
            type: bool
            default: false
          backend:
            description:
              - V(nftables), V(iptables), or V(auto) to follow what the host already uses without mixing legacy and nft rules;
                iptables-legacy if legacy tables are loaded, the network's existing table, iptables-nft if the host's rules
                are iptables-nft tables, else nftables.
            type: str
            default: auto
            choices:
              - auto
              - nftables
              - iptables
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
capabilities:
  description: The capabilities probed before the run changed anything (what the policy needs and O(require)); all
    were available.
  returned: success
  type: list
  elements: str
  sample: [cgroup_v2, pyroute2, qdisc_htb, qdisc_pfifo, sock_diag, sock_diag_cgroup_id]
watcher:
  description:
    - The watcher settings of the checked policy, its watched tasks, whether the previous run's record said the
      watcher was managed (so a caller without O(watcher) stops a watcher it no longer needs), and whether this
      run converged it (C(converged)).
    - When it did, also what M(hostnet.isolation.ports_watcher) returns (C(changes), C(active_state),
      C(unit_changed), C(checked), C(executable_changed), C(exposure), and C(report) with O(watcher.report)).
    - 'Its changes are in RV(changes) too, as C(ports_watcher (<service>): <sentence>).'
  returned: always
  type: dict
  sample: {"enabled": true, "mode": "audit", "tasks": [{"name": "web", "ports": "31000-31015",
           "cgroup": "/mesos/web"}], "was_managed": true, "converged": true, "active_state": "active",
           "changes": [], "unit_changed": false, "checked": false, "executable_changed": false, "exposure": null,
           "report": {"before": {"violations": {}}, "after": {"violations": {}}}}
problems:
  description: When the policy is refused, every problem as C([field, reason]).
  returned: failure
  type: list
  elements: list
missing:
  description: When the host lacks capabilities the policy or O(require) needs, their names (nothing was changed).
  returned: failure
  type: list
  elements: str
  sample: [qdisc_fq_codel]
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
                                       check_mode=module.check_mode, manage_watcher=params["manage_watcher"],
                                       watcher=params["watcher"], require=params["require"])
    except PolicyError as exc:
        module.fail_json(msg=str(exc), problems=[list(p) for p in exc.problems],
                         invocation=dict(module_args=_invocation(params)))
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason, missing=getattr(exc, "missing", []),
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
