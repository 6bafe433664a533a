#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdisc
short_description: The root or ingress qdisc of a device - htb or tbf rate limits, fq_codel, cake, fq, pfifo, ingress
version_added: 0.1.0
description:
  - Ensures the root queueing discipline of O(device) in a network namespace is what the task says, the way
    Mesos' port_mapping isolator limits a container's egress - an C(htb) rate limit whose default class has a
    leaf qdisc (C(fq_codel) for bloat reduction, C(pfifo), or none), a C(tbf) token bucket, C(fq_codel) or
    C(pfifo) alone, C(cake) (a shaper and AQM in one qdisc) or C(fq) (per-flow fair queueing with pacing) - or
    that the O(device) has an C(ingress) qdisc (which M(hostnet.isolation.port_redirect) filters hang on).
  - Only what differs is changed - a new rate is a change of the htb class, not a new tree. A different root
    kind is grafted in one request that replaces the old root, so the device is never without a qdisc.
    If a later step fails, the old root is put back from what was read before the run.
  - Idempotence compares what the kernel reports with what it would store for the task, in the kernel's own
    units. Rates are bytes per second, exact. Bursts are kept as scheduler ticks and codel times
    (O(target), O(interval)) in 1024 ns units, so O(target=5ms) reads back as 4999 microseconds; the
    module shows and compares those values, and a second run reports no change. cake keeps its times in
    microseconds and its bandwidth in bytes per second, fq its limit and maximum rate as given - they read
    back exactly.
  - Options the task does not give (for example fq_codel's O(flows), or a pfifo's O(limit)) are left as
    they are - the kernel's defaults on a new qdisc - and not compared.
  - The kernel cannot change fq_codel's O(flows) in place; a different O(flows) replaces that qdisc (the root,
    or the htb leaf) in one request, and check mode and diff say so. Everything this module sets on C(cake)
    and C(fq) changes in place.
  - A qdisc kind the kernel lacks (many kernels are built without C(sch_fq_codel), C(sch_cake) or C(sch_fq)) is
    an error naming the option, in check mode too (check mode asks a throwaway network namespace), and changes
    nothing.
  - The htb layout is fixed - root C(1:) (or C(2:) after a change of kind), default class C(<root>:10)
    carrying O(rate), O(ceil), O(burst) and O(cburst), leaf qdisc C(10:).
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - pyroute2 >= 0.7 on the managed host (Debian 12 python3-pyroute2 works)
options:
  device:
    description: The device (at most 15 characters), in O(netns).
    type: str
    required: true
  kind:
    description:
      - The qdisc. V(htb), V(tbf), V(fq_codel), V(pfifo), V(cake) and V(fq) are root qdiscs; V(ingress) is the
        ingress qdisc.
      - V(cake) shapes to O(rate) and manages its queue (O(target), O(interval)) in one qdisc; V(fq) queues each
        flow apart and paces it, at most O(rate) per flow.
      - Required with O(state=present). With O(state=absent), V(ingress) removes the ingress qdisc and any
        other value (or none) removes the root qdisc.
    type: str
    choices: [htb, tbf, fq_codel, pfifo, cake, fq, ingress]
  state:
    description:
      - V(present) creates or corrects the qdisc.
      - V(absent) deletes it - for the root, the kernel's default qdisc (C(noqueue) on a veth) comes back;
        deleting the ingress qdisc deletes the filters on it.
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - Namespace of O(device), by name (in O(netns_dir)) or absolute path of a handle. Default is the
        namespace the module runs in.
    type: str
  netns_pid:
    description: Namespace of O(device) given as the pid of a process in it.
    type: int
  netns_dir:
    description: Directory where namespace names are looked up.
    type: path
    default: /var/run/netns
  rate:
    description:
      - The rate limit (V(htb), V(tbf)), as tc writes it - V(10mbit), V(1.5gbit), V(800kbit), V(125kbps) (bytes) -
        or a bare number of bytes per second (unlike tc, where a bare number is bits).
      - From 64 bit/s (the lowest rate whose rate table fits the kernel's 32-bit fields) to 34.3 Gbit/s.
      - V(cake) - its bandwidth (O(rate_per_cpu), O(cpus), O(min_rate), O(max_rate) apply too), from 8 bit/s.
        V(fq) - the most each flow is paced to (tc's C(maxrate)), from 8 bit/s.
      - V(cake) and V(fq) also take V(unlimited). When omitted, a new one is unlimited (the kernel's default) and
        an existing one keeps its rate.
    type: str
  rate_per_cpu:
    description:
      - The rate for each of the container's O(cpus), like Mesos' C(--egress_rate_per_cpu); the limit is their
        product, bounded by O(min_rate) and O(max_rate). Excludes O(rate).
    type: str
  cpus:
    description: The container's CPU share (for example V(0.5) or V(4)), with O(rate_per_cpu).
    type: float
  min_rate:
    description: Lower bound of the rate computed from O(rate_per_cpu) (or of O(rate)).
    type: str
  max_rate:
    description: Upper bound of the rate computed from O(rate_per_cpu) (or of O(rate)).
    type: str
  ceil:
    description: The most the htb class may borrow up to. Default is O(rate).
    type: str
  burst:
    description:
      - Bytes that may be sent at once above the rate (V(htb), V(tbf)), as V(32kb) (binary units, as tc) or a
        number of bytes. Default is what the rate sends in 10 ms, at least 15140 bytes (ten full frames).
      - The kernel keeps a burst as the time it takes at the rate - at most about 274 s for htb and 4.29 s for
        tbf - so at very low rates the default is smaller and a larger burst is refused, naming the largest.
        A tbf burst below the device's MTU passes no full-size packet.
    type: str
  cburst:
    description: Burst at O(ceil) for the htb class. Default is O(burst).
    type: str
  latency:
    description:
      - The longest a packet may wait in the V(tbf) queue, as V(50ms); sets the queue's byte limit to
        rate x latency + burst. Default V(50ms).
    type: str
  leaf:
    description:
      - The qdisc under the htb class - V(fq_codel) for bloat reduction (as Mesos), V(pfifo), or V(none)
        (the kernel's built-in queue).
      - Default V(fq_codel). Use the M(hostnet.isolation.capabilities) fact C(qdisc_fq_codel) to choose on
        kernels without it.
    type: str
    choices: [fq_codel, pfifo, none]
  flows:
    description:
      - fq_codel - number of flow queues (1-65536). Kernel default (1024) when omitted.
      - The kernel cannot change it on an existing fq_codel, so a different value replaces the qdisc.
    type: int
  target:
    description: fq_codel, cake - acceptable standing queue delay, as V(5ms). Kernel default (5 ms) when omitted.
    type: str
  interval:
    description:
      - fq_codel, cake - the sliding window for O(target), as V(100ms) (cake's C(rtt)). Kernel default (100 ms)
        when omitted.
    type: str
  ecn:
    description: fq_codel - mark packets with ECN instead of dropping them. Kernel default (on) when omitted.
    type: bool
  limit:
    description:
      - Queue length in packets of V(fq_codel), V(pfifo) (alone or as the htb leaf) or V(fq).
      - When omitted, a new qdisc gets the kernel's default (for pfifo, the device's C(txqueuelen)) and an
        existing one keeps its limit.
      - A pfifo's limit is at most 2147483647 (pyroute2 sends it as a signed 32-bit number).
    type: int
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: hostnet.isolation.veth
  - module: hostnet.isolation.port_redirect
  - module: hostnet.isolation.capabilities
"""

EXAMPLES = r"""
- name: A container namespace wired to the host
  hostnet.isolation.veth:
    name: veth-web
    peer: eth0
    peer_netns_pid: "{{ app_pid }}"

- name: Does this kernel have fq_codel?
  hostnet.isolation.capabilities:

- name: Limit the container's egress to 10 Mbit/s (the host end's egress is the container's ingress)
  hostnet.isolation.qdisc:
    device: eth0
    netns_pid: "{{ app_pid }}"
    kind: htb
    rate: 10mbit
    ceil: 12mbit
    leaf: "{{ 'fq_codel' if ansible_facts.hostnet_capabilities.qdisc_fq_codel.available else 'pfifo' }}"
  register: limit

- name: Show the rate limiter's counters (like Mesos' bw_limit statistics)
  ansible.builtin.debug:
    msg: "{{ limit.statistics.bw_limit }}"

- name: Scale the limit with the container's CPUs, like Mesos' --egress_rate_per_cpu
  hostnet.isolation.qdisc:
    device: eth0
    netns_pid: "{{ app_pid }}"
    kind: htb
    rate_per_cpu: 5mbit
    cpus: 2.5
    max_rate: 1gbit
    leaf: pfifo
    limit: 500

- name: A token bucket instead, on the host end
  hostnet.isolation.qdisc:
    device: veth-web
    kind: tbf
    rate: 50mbit
    burst: 64kb
    latency: 20ms

- name: The ingress qdisc that port_redirect filters hang on
  hostnet.isolation.qdisc:
    device: veth-web
    kind: ingress

- name: Bloat reduction alone where the kernel has fq_codel
  hostnet.isolation.qdisc:
    device: veth-web
    kind: fq_codel
    target: 5ms
    interval: 100ms
    flows: 1024
    ecn: true
  when: ansible_facts.hostnet_capabilities.qdisc_fq_codel.available

- name: Shaping and bloat reduction in one qdisc, where the kernel has cake
  hostnet.isolation.qdisc:
    device: veth-web
    kind: cake
    rate: 50mbit
    interval: 20ms
  when: ansible_facts.hostnet_capabilities.qdisc_cake.available

- name: Fair queueing with each flow paced to at most 100 Mbit/s, where the kernel has fq
  hostnet.isolation.qdisc:
    device: veth-web
    kind: fq
    rate: 100mbit
    limit: 10000
  when: ansible_facts.hostnet_capabilities.qdisc_fq.available

- name: Back to the kernel's default root qdisc
  hostnet.isolation.qdisc:
    device: veth-web
    state: absent
"""

RETURN = r"""
qdisc:
  description:
    - The qdisc as read back from the kernel after the task (in check mode, as it is now); null when absent.
    - Rates are in bytes per second (V(unlimited) for a cake or fq without one), bursts in bytes, times in
      microseconds.
  returned: always
  type: dict
  sample: {"kind": "htb", "handle": "1:", "class": {"rate": 1250000, "ceil": 1500000, "burst": 15140,
           "cburst": 15140}, "leaf": {"kind": "pfifo", "limit": 1000}}
statistics:
  description:
    - Counters of the qdiscs involved, each with C(bytes), C(packets), C(drops), C(overlimits), C(requeues),
      C(qlen) and C(backlog).
    - C(qdisc) is the root; C(bw_limit) the rate limiter (the htb class, the tbf, or a cake with a rate);
      C(bloat_reduction) the fq_codel or cake queue, as in Mesos' per-container statistics. Empty for the
      ingress qdisc.
  returned: always
  type: dict
  sample: {"qdisc": {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0, "requeues": 0, "qlen": 0,
                     "backlog": 0},
           "bw_limit": {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0, "requeues": 0, "qlen": 0,
                        "backlog": 0}}
changes:
  description: What was changed (or, in check mode, would be), in order.
  returned: always
  type: list
  elements: str
  sample: ["replace root qdisc the default noqueue on eth0 with htb 1:",
           "add htb class 1:10 rate 10Mbit ceil 12Mbit burst 15140 cburst 15140 on eth0",
           "add pfifo leaf (kernel defaults) under class 1:10 on eth0"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, netlink, qdisc as tc
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=contract.argument_spec(tc.OPTIONS),
        mutually_exclusive=[("netns", "netns_pid"), ("rate", "rate_per_cpu")],
        required_together=[("rate_per_cpu", "cpus")],
        required_if=[("state", "present", ["kind"])],
        supports_check_mode=True,
    )
    if netlink.PYROUTE2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pyroute2"), exception=str(netlink.PYROUTE2_IMPORT_ERROR))
    try:
        result = tc.converge(tc.spec(module.params), check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except (OSError, netlink.NetlinkError) as exc:
        module.fail_json(msg="qdisc on %s: %s" % (module.params["device"], exc))

    out = dict((k, result[k]) for k in ("changed", "changes", "qdisc", "statistics"))
    if module._diff:
        out["diff"] = result["diff"]
    module.exit_json(**out)


if __name__ == "__main__":
    main()
