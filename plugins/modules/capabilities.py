#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: capabilities
short_description: Preflight facts about what the host's kernel and userland offer for network isolation
version_added: 0.1.0
description:
  - Probes the managed host and sets C(ansible_facts.hostnet_capabilities) with the kernel release, libnl
    version (Mesos agents with the ports isolators need libnl-3 and libnl-route-3 >= 3.2.26), iptables
    version, backend (nft or legacy) and C(-w) support (>= 1.4.20), nftables, the iptables comment match,
    which qdiscs (htb, tbf, fq_codel, pfifo, cake, fq, ingress), classifiers (u32) and actions (mirred) the
    kernel accepts, the cgroup mode (v2, hybrid, v1 or none) and the v2 mount, sock_diag with socket cgroup ids,
    and cgroup BPF bind hooks.
  - Probes that have to try something (add a qdisc, a filter, an nftables table, an iptables rule, list a
    socket) run in a child process inside a new, empty network namespace that vanishes with it, so the host's
    devices and rulesets are never touched.
  - With O(require), fails naming every missing prerequisite and how it was probed.
  - Never changes the host, so it always reports C(changed=false).
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - root on the managed host (namespace creation, BPF program load)
  - pyroute2 on the managed host for the netlink probes (without it they are reported unavailable)
options:
  require:
    description:
      - Capabilities that must be available, by the names used in the facts
        (V(pyroute2), V(libnl), V(iptables), V(iptables_wait), V(nftables), V(xt_comment), V(qdisc_htb),
        V(qdisc_tbf), V(qdisc_fq_codel), V(qdisc_ingress), V(qdisc_pfifo), V(qdisc_cake), V(qdisc_fq),
        V(cls_u32), V(act_mirred), V(cgroup_v2), V(sock_diag), V(sock_diag_cgroup_id), V(bpf_cgroup_bind)).
      - The task fails listing each missing one with the probe's finding.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
"""

EXAMPLES = r"""
- name: Gather what this host can do
  hostnet.isolation.capabilities:

- name: Show the qdisc findings
  ansible.builtin.debug:
    msg: "fq_codel: {{ ansible_facts.hostnet_capabilities.qdisc_fq_codel.detail }}"

- name: Refuse to go on without what the port mapper and the watcher need
  hostnet.isolation.capabilities:
    require: [nftables, xt_comment, sock_diag, cgroup_v2]

- name: Check a requirement without failing, to decide what to configure
  hostnet.isolation.capabilities:
    require: [qdisc_fq_codel]
  register: fq_codel_check
  ignore_errors: true

- name: Use fq_codel for bloat reduction only where the kernel has it
  ansible.builtin.set_fact:
    leaf_qdisc: "{{ 'pfifo' if fq_codel_check is failed else 'fq_codel' }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the host's capabilities.
  returned: always
  type: dict
  contains:
    hostnet_capabilities:
      description:
        - One entry per capability name (the names O(require) accepts), each with C(available) (bool),
          C(probe) (how it was checked) and C(detail) (what was found), plus C(kernel), C(python),
          C(cgroup) and C(missing) (names that are unavailable).
        - C(cgroup) has C(mode) (V(v2) unified, V(hybrid) v1 controllers beside cgroup2, V(v1) without cgroup2,
          V(none)), C(v2_mount) (where cgroup2 is mounted, V(/sys/fs/cgroup) or V(/sys/fs/cgroup/unified); null
          without it) and C(v1_controllers); mounts hidden under a later mount do not count.
        - C(libnl) also has C(version); C(iptables) has C(version) and C(backend) (V(nft) or V(legacy));
          C(nftables) has C(version); C(pyroute2) has C(version).
      type: dict
      sample:
        kernel: 6.18.44
        python: 3.11.2
        iptables: {available: true, backend: nft, version: 1.8.9, probe: iptables -V, detail: "iptables v1.8.9 (nf_tables)"}
        qdisc_fq_codel: {available: false, probe: "RTM_NEWQDISC root fq_codel on a veth in a throwaway network namespace",
                         detail: "refused: ENOENT (kernel has no sch_fq_codel)"}
        cgroup: {mode: hybrid, v2_mount: /sys/fs/cgroup/unified, v1_controllers: [cpu, memory]}
        missing: [qdisc_fq_codel]
missing:
  description: Names of the required capabilities that are missing (the task fails when this is not empty).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils import capabilities
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=dict(require=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    try:
        capabilities.validate_required(module.params["require"])
        facts = capabilities.gather()
        missing = capabilities.check_required(facts, module.params["require"])
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except (OSError, RuntimeError) as exc:
        module.fail_json(msg="capabilities: probing failed: %s" % exc)
    result = dict(changed=False, ansible_facts=dict(hostnet_capabilities=facts),
                  missing=[name for name in module.params["require"] if not facts[name]["available"]])
    if missing:
        module.fail_json(msg="missing prerequisites: " + "; ".join(missing), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
