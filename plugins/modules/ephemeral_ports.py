#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ephemeral_ports
short_description: Give a container its own ephemeral (source) port range, written to its ip_local_port_range
version_added: 0.1.0
description:
  - For containers that share the host's IP address (M(hostnet.isolation.port_redirect)), the replies to a
    container's outgoing connections must be told apart by port. Like Mesos' port_mapping isolator, each
    container gets one power-of-two sized, aligned range of source ports.
  - The range overlaps neither O(agent_ports), nor ports below 1024, nor the host's own
    C(net.ipv4.ip_local_port_range) (read in the namespace the module runs in), nor another container's range,
    and lies inside O(pool). The lowest free aligned block is chosen.
  - The range is written to C(net.ipv4.ip_local_port_range) inside the container's namespace.
  - Allocations are kept in O(state_file), so a rerun returns the same range. A kept range that no longer fits
    (for example O(agent_ports) grew over it) is replaced, and the task reports it.
  - Exhaustion is an error that says what took the space, and changes nothing.
  - The range is written to the namespace first and recorded in O(state_file) last; if recording it fails, the
    namespace's range is put back as it was.
author:
  - hostnet.isolation contributors (@hostnet)
options:
  container:
    description: The container's id; the key of its allocation in O(state_file).
    type: str
    required: true
  state:
    description:
      - V(present) allocates (or keeps) the range and writes it to the container's namespace.
      - V(absent) releases the allocation; the namespace (often gone by then) is not touched.
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - The container's network namespace, by name (in O(netns_dir)) or absolute path of a handle. Required
        (or O(netns_pid)) with O(state=present).
    type: str
  netns_pid:
    description: The container's network namespace given as the pid of a process in it.
    type: int
  netns_dir:
    description: Directory where namespace names are looked up.
    type: path
    default: /var/run/netns
  size:
    description: Ports in the range, a power of two from 8 to 32768 (Mesos' C(--ephemeral_ports_per_container)).
    type: int
    default: 1024
  range:
    description:
      - Ask for this exact range instead (for example V(40960-41983)). It must hold a power-of-two number of
        ports, start at a multiple of that number, and be free.
    type: str
  agent_ports:
    description:
      - The ports the agent hands to tasks (its port resources), never used for ephemeral ranges, as
        V(31000-32000).
    type: raw
  pool:
    description: Where ranges may come from, as V(32768-65535). Ports below 1024 are always excluded.
    type: raw
    default: 1024-65535
  state_file:
    description:
      - Where allocations are kept. The default lives under C(/run), so allocations survive reruns and daemon
        restarts but not a reboot (which also ends every container).
      - Its directory must be one only root can change (owned by root, not a symlink, no group or other write,
        and so its parents, unless sticky); a missing one is created with mode 0700. Anything else is refused,
        naming the directory, as is a file with an entry the module could not have written (a range outside
        1-65535, not an aligned power-of-two block, or overlapping another).
      - Runs take turns through the lock C(/run/hostnet/ephemeral-ports.lock).
    type: path
    default: /run/hostnet/ephemeral-ports.json
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: hostnet.isolation.port_redirect
"""

EXAMPLES = r"""
- name: An ephemeral range for a container, away from the agent's ports and the host's own range
  hostnet.isolation.ephemeral_ports:
    container: web-1
    netns_pid: "{{ app_pid }}"
    agent_ports: 31000-32000
  register: web_ephemeral

- name: Show it (for example to add it to the container's port_redirect ports)
  ansible.builtin.debug:
    msg: "web-1 connects out from ports {{ web_ephemeral.range.ports }}"

- name: A smaller range for a second container, from a pool of its own
  hostnet.isolation.ephemeral_ports:
    container: batch-7
    netns_pid: "{{ app_pid }}"
    size: 256
    pool: 20000-29999

- name: Release both when the containers are gone
  hostnet.isolation.ephemeral_ports:
    container: "{{ item }}"
    state: absent
  loop: [web-1, batch-7]
"""

RETURN = r"""
range:
  description: The container's range after the task (in check mode, the one it would get); null when released.
  returned: always
  type: dict
  contains:
    first:
      description: First port.
      type: int
      sample: 1024
    last:
      description: Last port.
      type: int
      sample: 2047
    size:
      description: Number of ports.
      type: int
      sample: 1024
    ports:
      description: The range as a string, ready for O(hostnet.isolation.port_redirect#module:ports).
      type: str
      sample: "1024-2047"
changes:
  description: What was changed (or, in check mode, would be), in order.
  returned: always
  type: list
  elements: str
  sample: ["set ip_local_port_range in pid 4242 to 1024-2047 (was 32768-60999)", "allocate 1024-2047 to web-1"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, ephemeral_ports as ephemeral
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=contract.argument_spec(ephemeral.OPTIONS),
        mutually_exclusive=[("netns", "netns_pid")],
        required_if=[("state", "present", ["netns", "netns_pid"], True)],
        supports_check_mode=True,
    )
    try:
        result = ephemeral.converge(ephemeral.spec(module.params), check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except (OSError, IOError) as exc:
        module.fail_json(msg="ephemeral_ports %s: %s" % (module.params["container"], exc))
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
