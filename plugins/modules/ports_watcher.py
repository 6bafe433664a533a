#!/usr/bin/python
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ports_watcher
short_description: Converge the ports watcher's executable, configuration, policy, unit and service in one call
version_added: 0.1.0
description:
  - Everything the P(hostnet.isolation.ports_watcher#role) role installs, in one module run; a run that finds
    everything in place only reads.
  - With O(executable_content) (the role passes the executable it built on the controller), installs it at
    O(executable), mode C(0755), when the bytes there differ (a temporary file beside it, renamed over it); the
    directory is made when missing. Without it, O(executable) must already be installed.
  - O(packages) that dpkg does not list as installed are installed with C(apt-get install --no-install-recommends)
    first, before the executable (which imports them) checks anything.
  - Writes O(config) as JSON to O(config_file), O(policy) (the watched tasks) to C(ansible.json) in the
    configuration's C(policy_dir), and O(unit) to O(unit_dir)/O(service)C(.service), each to a temporary file
    beside it whose name starts with C(.) (the watcher and systemd ignore those), then renamed over it, mode
    C(0644); missing directories (theirs and the event log's) are made, mode C(0755).
  - Before anything is written, the executable checks the new configuration and policy, with the policy files
    others put in C(policy_dir), as it will read them (O(python) O(executable) C(--config FILE --check) on a copy
    in a temporary directory); a refusal fails the task naming the field and changes nothing.
  - Removes the policy files of the earlier one-file-per-task layout (C(ansible-*.json) in C(policy_dir); other
    drop-ins are left alone) and, with O(old_lib_dir), the sources earlier versions built the executable from.
  - 'The service: C(systemctl daemon-reload) when the unit changed, enabled, started. Restarted when its
    configuration, unit or executable (O(executable_changed)) changed - or changed after its main process started,
    so a run that failed after the executable was replaced does not leave the old one running; reloaded
    (SIGHUP) when only the policy changed.'
  - O(state=stopped) stops and disables the service and leaves the files alone.
author:
  - hostnet.isolation contributors (@hostnet)
requirements:
  - systemd on the managed host
options:
  state:
    description:
      - V(started) converges the files and runs the service; V(stopped) stops and disables it.
    type: str
    default: started
    choices: [started, stopped]
  service:
    description: The systemd service's name, without C(.service).
    type: str
    default: hostnet-ports-watcher
  config:
    description:
      - The watcher's configuration (its options, as in the README), written as JSON (keys sorted, indent 2).
      - Required with O(state=started). Its C(policy_dir) is where O(policy) goes; the directory of its
        C(event_log) is made when missing.
    type: dict
  config_file:
    description: Where the configuration is written.
    type: path
    default: /etc/hostnet/ports-watcher.json
  policy:
    description:
      - The watched tasks (each C(name), C(cgroup) or C(systemd_unit), C(ports)), all in C(ansible.json) in the
        configuration's C(policy_dir). Needs C(policy_dir) unless empty.
    type: list
    elements: dict
    default: []
  unit:
    description: The text of the systemd unit. Required with O(state=started).
    type: str
  unit_dir:
    description: Where the unit is written.
    type: path
    default: /etc/systemd/system
  executable:
    description:
      - Where the watcher executable is, installed from O(executable_content) or before this module runs; it checks
        the configuration and policy.
    type: path
    default: /usr/local/sbin/hostnet-ports-watcher
  python:
    description: The Python interpreter that runs O(executable) for the check.
    type: path
    default: /usr/bin/python3
  executable_changed:
    description:
      - The executable was just installed or replaced by other means than O(executable_content) (which sets it
        itself), so a running service is restarted.
      - Without O(executable_content), in check mode it also means the executable on the host is not the one that
        will run, so the check of the configuration is skipped (RV(checked) says so).
    type: bool
    default: false
  executable_content:
    description:
      - The executable's bytes, base64-encoded; installed at O(executable) when they differ from what is there,
        which counts as O(executable_changed). The new configuration and policy are checked by these bytes, not
        by the executable installed before (so in check mode too).
      - Not echoed back (C(no_log)).
    type: str
  packages:
    description:
      - Debian packages the executable needs (on Debian and Ubuntu hosts); those not installed are installed with
        C(apt-get) before anything else. Give V([]) on other hosts and install them another way.
    type: list
    elements: str
    default: []
  report:
    description:
      - Ask the watcher what it sees (O(python) O(executable) C(--config) O(config_file) C(--report --json), which
        only looks) before the run changes anything and after it, and return both as RV(report).
    type: bool
    default: false
  old_lib_dir:
    description:
      - Where earlier versions of the role put the watcher's sources; C(src/hostnet_core) and C(src/__main__.py)
        there are removed when present.
    type: path
extends_documentation_fragment:
  - hostnet.isolation.attributes
attributes:
  check_mode:
    support: full
    details: Reports exactly the actions it would take. The executable checks the configuration and policy
      (the new one with O(executable_content); the installed one unless O(executable_changed)), unless packages it
      needs are still to be installed.
  diff_mode:
    support: full
    details: Before and after of each file written or removed.
seealso:
  - module: hostnet.isolation.capabilities
"""

EXAMPLES = r"""
- name: Converge the watcher's configuration, policy, unit and service
  hostnet.isolation.ports_watcher:
    config:
      mode: enforce
      agent_port_range: 31000-32000
      policy_dir: /etc/hostnet/ports-watcher.d
      event_log: /var/log/hostnet/ports-watcher.jsonl
      metrics_listen: 127.0.0.1:9613
    policy:
      - {name: web, cgroup: mesos/web-1, ports: "31000-31009"}
    unit: "{{ lookup('ansible.builtin.template', 'hostnet-ports-watcher.service.j2') }}"
    report: true
  register: watcher

- name: Fail on a violation the run did not find before it
  ansible.builtin.assert:
    that: watcher.report.after.violations | dict2items | difference((watcher.report.before or {}).violations
          | default({}) | dict2items) | length == 0

- name: Stop and disable it
  hostnet.isolation.ports_watcher:
    state: stopped
"""

RETURN = r"""
changes:
  description: What the run did (in check mode, would do), one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["write /etc/hostnet/ports-watcher.d/ansible.json (policy)",
           "reload hostnet-ports-watcher.service (its policy changed)"]
diff:
  description: Before and after of each file written or removed (with C(--diff)).
  returned: when diff mode is on
  type: list
  elements: dict
active_state:
  description: The service's C(ActiveState) after the run (in check mode, what it would be).
  returned: always
  type: str
  sample: active
unit_changed:
  description: Whether the unit was (would be) written.
  returned: always
  type: bool
checked:
  description: Whether the executable checked the new configuration and policy (nothing new to check is V(false)).
  returned: always
  type: bool
executable_changed:
  description: Whether the executable was (would be) installed or replaced, or O(executable_changed) said so.
  returned: always
  type: bool
exposure:
  description: systemd-analyze security's overall exposure line for the service, when the unit was written (not in
    check mode); V(null) otherwise or where systemd-analyze cannot tell.
  returned: always
  type: str
  sample: "Overall exposure level for hostnet-ports-watcher.service: 2.1 OK"
report:
  description:
    - What the watcher saw, with O(report). C(before) is V(null) when no executable or configuration was installed
      yet (C({error}) when the installed one failed), C(after) is V(null) in check mode, and what it saw before
      when the run changed nothing (it is not asked twice).
    - Each is the watcher's C(--report --json) output, e.g. C(violations) (task name to the ports it listens on
      outside its own), C(tasks), C(mode).
  returned: when O(report) and O(state=started)
  type: dict
  contains:
    before:
      description: Before the run changed anything.
      type: dict
      returned: always
    after:
      description: After the run.
      type: dict
      returned: always
field:
  description: The option a failure is about (V(config), V(policy), V(config.policy_dir), V(service), ...).
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hostnet.isolation.plugins.module_utils import contract, ports_watcher
from ansible_collections.hostnet.isolation.plugins.module_utils.errors import HostnetError


def main():
    module = AnsibleModule(argument_spec=contract.argument_spec(ports_watcher.OPTIONS), supports_check_mode=True,
                           required_if=[("state", "started", ("config", "unit"))])
    try:
        result = ports_watcher.converge(module.params, check_mode=module.check_mode)
    except HostnetError as exc:
        done = getattr(exc, "done", [])
        module.fail_json(msg=str(exc), field=exc.field, reason=exc.reason, changed=bool(done), changes=done)
    except OSError as exc:
        done = getattr(exc, "done", [])
        module.fail_json(msg="ports_watcher: %s" % exc, changed=bool(done), changes=done)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
