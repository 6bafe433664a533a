#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: netns
short_description: Named network namespaces as bind-mounted handles, their symlinks, and recovery
version_added: 0.1.0
description:
  - Creates and removes named network namespaces the way C(ip netns add) does, as a bind mount of the
    namespace onto a file in O(netns_dir), so the namespace lives on without any process in it.
  - Adopts the namespace of a running process (O(pid)), as the Mesos C(network/port_mapping) isolator does
    for a container, and keeps symlinks to the handle (Mesos keeps C(/var/run/mesos/netns/<container-id>)).
  - With O(state=reconciled), recovers a symlink directory after a crash, as Mesos does on agent restart
    it removes symlinks whose handle is gone and handles no symlink points to, and reports what it removed.
  - A handle exists when the path is a live namespace bind mount; the name is compared exactly (no substring
    match). Check mode reports a change only when a real run would make one.
  - Needs root (CAP_SYS_ADMIN) on the managed host; uses only the Python standard library.
author:
  - hostnet.isolation contributors (@hostnet)
options:
  name:
    description:
      - Name of the namespace; the handle is O(netns_dir)/O(name).
      - Required with O(state=present) and O(state=absent).
      - 1-255 characters of letters, digits and C(_.@:+-).
    type: str
  state:
    description:
      - V(present) creates the handle (a new empty namespace, or the one of O(pid)) and the O(symlinks).
      - V(absent) removes the O(symlinks) that point at the handle, then the handle.
      - V(reconciled) cleans O(symlink_dir) and O(netns_dir); see O(handle_pattern) and O(keep).
    type: str
    choices: [present, absent, reconciled]
    default: present
  netns_dir:
    description:
      - Directory that holds the handles. C(ip netns) uses C(/var/run/netns).
      - Made a shared mount point on first use, as C(ip netns add) does, so handles propagate to mount
        namespaces created later.
    type: path
    default: /var/run/netns
  pid:
    description:
      - Adopt the network namespace of this process instead of creating a new one.
      - When the handle already pins another namespace, it is re-pointed to this one.
      - Only with O(state=present).
    type: int
  symlinks:
    description:
      - Absolute paths of symlinks that must point at the handle. Missing parent directories are created.
      - An existing symlink pointing elsewhere is replaced atomically; an existing file that is not a symlink
        is an error.
      - With O(state=absent), those of them that point at the handle are removed.
    type: list
    elements: path
    default: []
  symlink_dir:
    description:
      - With O(state=reconciled), the directory of managed symlinks (Mesos uses C(/var/run/mesos/netns)).
      - Symlinks in it whose target is not a live namespace handle are removed.
    type: path
  handle_pattern:
    description:
      - With O(state=reconciled), handles in O(netns_dir) whose name matches this regular expression and that
        no symlink in O(symlink_dir) points to are removed as orphans.
      - The default matches the pid-named handles Mesos creates; handles of other tools are left alone.
    type: str
    default: '^[0-9]+$'
  keep:
    description:
      - With O(state=reconciled), handle names never removed even when they match O(handle_pattern).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Removing a handle does not kill processes inside the namespace; the namespace itself disappears when
    its last process and its last handle are gone.
seealso:
  - module: hostnet.isolation.veth
"""

EXAMPLES = r"""
- name: Create a named network namespace (what `ip netns add web` does)
  hostnet.isolation.netns:
    name: web

- name: Keep Mesos-style symlinks to it
  hostnet.isolation.netns:
    name: web
    symlinks:
      - /var/run/mesos/netns/web-container-1

- name: Adopt the network namespace of a running container process
  hostnet.isolation.netns:
    name: "{{ app_pid }}"
    pid: "{{ app_pid }}"
    symlinks:
      - /var/run/mesos/netns/app-container-7

- name: After a crash, drop dangling symlinks and orphaned pid-named handles
  hostnet.isolation.netns:
    state: reconciled
    symlink_dir: /var/run/mesos/netns
  register: recovery

- name: Show what recovery removed
  ansible.builtin.debug:
    var: recovery.removed

- name: Remove the namespace and its symlink
  hostnet.isolation.netns:
    name: web
    state: absent
    symlinks:
      - /var/run/mesos/netns/web-container-1
"""

RETURN = r"""
netns:
  description: The namespace as it is after the task (predicted in check mode); absent for O(state=reconciled).
  returned: when O(state) is V(present) or V(absent)
  type: dict
  contains:
    name:
      description: The namespace name.
      type: str
      sample: web
    path:
      description: Path of the handle.
      type: str
      sample: /var/run/netns/web
    exists:
      description: Whether the handle is a live namespace after the task.
      type: bool
      sample: true
    namespace_inode:
      description: Inode number of the namespace (same as C(readlink /proc/<pid>/ns/net) shows); null when
        absent or not yet created (check mode).
      type: int
      sample: 4026532285
    symlinks:
      description: Each requested symlink and its target after the task (null when missing).
      type: dict
      sample: {"/var/run/mesos/netns/web-container-1": "/var/run/netns/web"}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create_handle", "path": "/var/run/netns/web", "pid": null}]
removed:
  description: Paths removed (or, in check mode, that would be) by O(state=reconciled).
  returned: when O(state=reconciled)
  type: list
  elements: str
  sample: ["/var/run/mesos/netns/old-container", "/var/run/netns/31337"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError
from ansible_collections.hostnet.isolation.plugins.module_utils.netns import (
    NetnsSpec, apply_netns, describe_netns, plan_netns)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent", "reconciled"]),
            netns_dir=dict(type="path", default="/var/run/netns"),
            pid=dict(type="int"),
            symlinks=dict(type="list", elements="path", default=[]),
            symlink_dir=dict(type="path"),
            handle_pattern=dict(type="str", default="^[0-9]+$"),
            keep=dict(type="list", elements="str", default=[]),
        ),
        required_if=[("state", "present", ["name"]), ("state", "absent", ["name"]),
                     ("state", "reconciled", ["symlink_dir"])],
        supports_check_mode=True,
    )
    try:
        spec = NetnsSpec(**module.params)
        plan = plan_netns(spec)
        after = plan["after"]
        if plan["actions"] and not module.check_mode:
            apply_netns(plan)
            if spec.state != "reconciled":
                after = describe_netns(spec)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except OSError as exc:
        module.fail_json(msg="netns: %s" % exc)

    result = dict(changed=bool(plan["actions"]), actions=plan["actions"])
    if module._diff:
        result["diff"] = dict(before=plan["before"], after=after)
    if spec.state == "reconciled":
        result["removed"] = [a["path"] for a in plan["actions"]]
    else:
        result["netns"] = dict(name=spec.name, path=spec.handle, exists=after["live"],
                               namespace_inode=after["namespace_inode"], symlinks=after["symlinks"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
