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
    it removes symlinks whose handle is gone and handles no symlink points to, and reports what it removed
    and what it left alone.
  - A handle exists when the path is a live network namespace bind mount; the name is compared exactly (no
    substring match). Check mode reports a change only when a real run would make one.
  - It destroys only what it owns. A path in O(netns_dir) is replaced or removed only when it is a network
    namespace mount or an empty regular file that is no mount point (what a crashed C(ip netns add) leaves);
    a symlink only when it points at a namespace handle or at a dead handle in O(netns_dir). Anything else
    fails the task naming the option and the path, and nothing is changed.
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
      - An absolute path without C(..); not C(/) nor inside C(/proc), C(/sys) or C(/dev).
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
      - Absolute paths (without C(..)) of symlinks that must point at the handle. Missing parent directories
        are created.
      - An existing symlink pointing at another namespace handle, or at a missing or empty handle in
        O(netns_dir), is replaced atomically; any other existing symlink or file is an error.
      - With O(state=absent), those of them that point at the handle are removed.
      - Not C(/), nor inside C(/proc), C(/sys) or C(/dev), nor O(netns_dir) or a directory above it.
    type: list
    elements: path
    default: []
  symlink_dir:
    description:
      - With O(state=reconciled), the directory of managed symlinks (Mesos uses C(/var/run/mesos/netns)).
      - Symlinks in it that point into O(netns_dir) at a handle that is missing or an empty file are removed.
        Everything else in it (live links, links elsewhere, files, directories) is left alone and reported in
        RV(left_alone).
      - An absolute path without C(..); not C(/) nor inside C(/proc), C(/sys) or C(/dev); not O(netns_dir).
    type: path
  handle_pattern:
    description:
      - With O(state=reconciled), handles in O(netns_dir) whose name matches this regular expression and that
        no symlink in O(symlink_dir) points to are removed as orphans, if their namespace has no process in it
        (an empty file left by a crashed C(ip netns add) is removed as well).
      - Matching entries that are no namespace handle (files, symlinks, directories, other mounts) or whose
        namespace is in use are left alone and reported in RV(left_alone); other mounts are never unmounted.
      - The default matches the pid-named handles Mesos creates; handles of other tools are left alone.
      - Checked to be a regular expression whatever O(state) is.
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
  - Removing a namespace (O(state=absent), O(state=reconciled)) or re-pointing its handle to another process
    (O(pid)) cannot be undone once it has landed; the old namespace is released. When the task runs inside a
    larger unit (the C(hostnet.isolation.host_network) module) and a later part fails, what this task
    created (a new namespace, its handle, symlinks, directories) is removed again, and a removed symlink or
    empty placeholder file is put back; a removed namespace is reported as not restored.
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

- name: Show what recovery removed, and what it found but left alone
  ansible.builtin.debug:
    msg: "removed {{ recovery.removed }}, left alone {{ recovery.left_alone }}"

- name: Remove the namespace and its symlink
  hostnet.isolation.netns:
    name: web
    state: absent
    symlinks:
      - /var/run/mesos/netns/web-container-1
"""

RETURN = r"""
changes:
  description: What the task did (or, in check mode, would do), one sentence per action, in order.
  returned: always
  type: list
  elements: str
  sample: ["create a network namespace with its handle at /var/run/netns/web",
           "link /var/run/mesos/netns/web-container-1 -> /var/run/netns/web"]
path:
  description: Path of the handle, also in check mode and when nothing changes.
  returned: when O(state) is V(present) or V(absent)
  type: str
  sample: /var/run/netns/web
created:
  description: Whether the task creates (in check mode, would create) a new, empty namespace at RV(path);
    false when the namespace exists already or is adopted from O(pid).
  returned: when O(state) is V(present) or V(absent)
  type: bool
  sample: true
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
left_alone:
  description: What O(state=reconciled) found in O(symlink_dir) or, matching O(handle_pattern), in O(netns_dir)
    but did not remove because it is not ours or still in use, each with the reason.
  returned: when O(state=reconciled)
  type: list
  elements: dict
  sample: [{"path": "/var/run/netns/4242", "reason": "its namespace is in use by pid 4242"},
           {"path": "/var/run/mesos/netns/notes", "reason": "not a symlink (a non-empty regular file)"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, netns
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(
        argument_spec=contract.argument_spec(netns.OPTIONS),
        required_if=[("state", "present", ["name"]), ("state", "absent", ["name"]),
                     ("state", "reconciled", ["symlink_dir"])],
        supports_check_mode=True,
    )
    try:
        spec = netns.spec(contract.module_params(module.params, netns.OPTIONS))
        result = netns.converge(spec, check_mode=module.check_mode)
    except HostnetError as exc:
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason)
    except OSError as exc:
        module.fail_json(msg="netns: %s" % exc)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
