# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole host's network policy, converged as one unit.

``converge(policy, record, ...)`` checks the whole policy (policy.check, the same check the
controller ran), reads the record of what the previous run owned, and goes through every part in
order: what the policy dropped and can be put back is removed first (port mappers, redirects,
ephemeral ranges, qdiscs), then namespaces, veth pairs, qdiscs, redirects, ephemeral ranges and
port mapper networks are converged, then dropped veths and namespaces (which cannot be put back)
are removed. All of it runs in one ``transaction.unit``: when any step fails, every change this run
made is undone and the error names the policy field of the item that failed.

Check mode plans every part against the state the run itself produces: a veth in a namespace the
run creates, a qdisc on a device it creates, are planned against what such a new object holds, so
check mode reports exactly what the real run does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os

from . import contract, ephemeral_ports, netns, policy, port_mapper, port_redirect, ports_watcher, qdisc, transaction, veth
from . import watcher_policy
from .errors import ApplyError, HostnetError, ValidationError

# (policy section, core part, module name) in the order the parts are created.
PARTS = (
    ("namespaces", netns, "netns"),
    ("veths", veth, "veth"),
    ("qdiscs", qdisc, "qdisc"),
    ("redirects", port_redirect, "port_redirect"),
    ("ephemeral_ports", ephemeral_ports, "ephemeral_ports"),
    ("port_mappers", port_mapper, "port_mapper"),
)
PART = dict((section, (part, name)) for section, part, name in PARTS)
# Removals that can be put back run before everything else (a dropped mapping frees its host port
# for a new network); deleting a veth or a namespace cannot be undone, so those go last.
REMOVE_FIRST = ("port_mappers", "redirects", "ephemeral_ports", "qdiscs")
REMOVE_LAST = ("veths", "namespaces")
# What each section's items take beyond their part's options, and the part's options they do not
# take (the policy says them once for all items, or they make no sense in a declarative list).
SECTION_EXTRA = {
    "redirects": {"task": {"type": "str"}},
    "port_mappers": {"mappings": {"type": "list", "elements": "dict", "default": []}},
}
SECTION_DROP = {
    "namespaces": ("state", "symlink_dir", "handle_pattern", "keep"),  # the module's reconcile mode
    "veths": ("state",),
    "qdiscs": ("state",),
    "redirects": ("state",),
    "ephemeral_ports": ("state", "agent_ports"),
    "port_mappers": ("state", "container_id", "exclusive"),
}
# What names an item of each section (required there; the rest is checked by the part).
IDENTITY = {"namespaces": ("name",), "veths": ("name", "peer"), "qdiscs": ("device", "kind"),
            "redirects": ("veth",), "ephemeral_ports": ("container",), "port_mappers": ("network",)}
POLICY_OPTIONS = {
    "agent_ports": {"type": "raw"},
    "tasks": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "ports": {"type": "raw"},
        "cgroup": {"type": "str"},
        "systemd_unit": {"type": "str"},
    }},
    "watcher": {"type": "dict", "default": {}, "options": {
        "enabled": {"type": "bool"},
        "mode": {"type": "str", "choices": ["audit", "enforce", "prevent"], "default": "audit"},
        "watch_interval": {"type": "float", "default": 30},
        "include_udp": {"type": "bool", "default": False},
        "check_agent_port_range_only": {"type": "bool", "default": False},
        "isolated_port_range": {"type": "str"},
        "metrics_listen": {"type": "str", "default": "127.0.0.1:9613"},
    }},
}


def policy_options():
    """The argument spec of the whole policy, built from every part's schema (contract.py)."""
    out = dict(POLICY_OPTIONS)
    for section, part, _name in PARTS:
        options = contract.argument_spec(part.OPTIONS, drop=SECTION_DROP.get(section, ()))
        for name, option in options.items():
            option.pop("required", None)
            if name in IDENTITY.get(section, ()):
                option["required"] = True
        options.update(SECTION_EXTRA.get(section, {}))
        out[section] = {"type": "list", "elements": "dict", "default": [], "options": options}
    return out


# The ports_watcher module's options the ``watcher`` option takes: its state and policy follow from the
# host's policy (started with the watched tasks, stopped when no task is watched any more).
WATCHER_DROP = ("state", "policy")


def argument_spec():
    """The host_network module's argument spec (the role's spec for host_network_policy is the same tree)."""
    return {
        "policy": {"type": "dict", "required": True, "options": policy_options()},
        "record": {"type": "path", "default": "/run/hostnet/host_network.json"},
        "host": {"type": "str", "default": "this host"},
        "manage_watcher": {"type": "bool", "default": True},
        "require": {"type": "list", "elements": "str", "default": []},
        "watcher": {"type": "dict", "options": contract.argument_spec(ports_watcher.OPTIONS, drop=WATCHER_DROP)},
    }


def removal_params(section, item):
    """The part's options that remove one entry of the record."""
    params = dict((k, v) for k, v in item.items() if v not in (None, ""))
    if section == "qdiscs":
        if params.pop("kind", "root") == "ingress":
            params["kind"] = "ingress"
    params["state"] = "absent"
    return params


_UNREADABLE = ("%s is not a record this module can read (%s). Nothing was changed. Check what it lists against the "
               "policy, then move the file away to run again; what it listed and the policy no longer lists then "
               "stays on the host")


def read_record(path):
    """What the previous run owned ({} when there is no record); ValidationError when it cannot be read."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:
            return {}
        raise ValidationError("record", "%s cannot be read: %s" % (path, exc))
    except ValueError as exc:
        raise ValidationError("record", _UNREADABLE % (path, exc))
    if not isinstance(record, dict):
        raise ValidationError("record", _UNREADABLE % (path, "not a JSON object"))
    return record


def write_record(path, record):
    """Write the record whole: a temporary file beside it, renamed over it."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def _restore_record(path, old_text):
    def undo():
        if old_text is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as handle:
            handle.write(old_text)
        os.rename(tmp, path)
    return undo


def _label(section, item):
    for key in ("name", "device", "veth", "container", "network"):
        if item.get(key):
            where = item.get("netns") or item.get("peer_netns")
            return "%s%s" % (item[key], " in %s" % where if where and key in ("device",) else "")
    return section


class _Step:
    """One policy item (or record entry) to converge: its field, its part and its options."""

    def __init__(self, section, field, params, removal=False):
        self.section = section
        self.field = field
        self.params = params
        self.removal = removal
        self.part, self.module = PART[section]


def steps(plan, removed):
    """Every step of the run, in order."""
    out = []
    for section in REMOVE_FIRST:
        for index, item in enumerate(removed.get(section) or []):
            out.append(_Step(section, "%s.removed.%s[%d]" % (policy.ROOT, section, index),
                             removal_params(section, item), removal=True))
    for section, _part, _name in PARTS:
        for index, item in enumerate(plan.get(section) or []):
            out.append(_Step(section, "%s.%s[%d]" % (policy.ROOT, section, index),
                             policy.part_params(section, item, plan.get("agent_ports"))))
    for section in REMOVE_LAST:
        for index, item in enumerate(removed.get(section) or []):
            out.append(_Step(section, "%s.removed.%s[%d]" % (policy.ROOT, section, index),
                             removal_params(section, item), removal=True))
    return out


def _note_created(step, spec, result, planned):
    """Check mode: what this step would create, for the steps after it."""
    if step.section == "namespaces" and result.get("changed") and result.get("created"):
        planned.add_netns(result.get("path"))
    elif step.section == "veths" and spec.state == "present":
        if result.get("created"):
            planned.add_device(spec.netns, spec.name)
            planned.add_device(spec.peer_netns, spec.peer)
        for address in spec.addresses or []:
            planned.add_route(spec.netns, address.network, spec.name)


class MissingCapabilities(ValidationError):
    """The host lacks a capability the policy (or ``require``) needs; ``missing`` lists the names."""

    def __init__(self, field, reason, missing):
        self.missing = missing
        super(MissingCapabilities, self).__init__(field, reason)


def check_capabilities(plan, require=()):
    """Probe what the policy needs and ``require`` adds (only those); returns the names probed.

    Raises MissingCapabilities naming the first field that needs a missing one, and every missing one
    with what the probe found. The probes change nothing on the host (throwaway network namespace).
    """
    from . import capabilities  # not for the controller's policy check (the filters import this module)

    capabilities.validate_required(require)
    fields = policy.requirement_fields(plan)
    for i, name in enumerate(require):
        fields.setdefault(name, "require[%d]" % i)
    names = sorted(fields)
    if not names:
        return []
    facts = capabilities.gather(names)
    missing = [name for name in names if not facts[name]["available"]]
    if missing:
        def where(name):
            field = fields[name]
            return field if field.startswith("require[") else "%s.%s" % (policy.ROOT, field)
        lines = ["%s needs %s" % (where(name), line)
                 for name, line in zip(missing, capabilities.check_required(facts, missing))]
        first = missing[0]
        raise MissingCapabilities(where(first), "this host lacks what the policy needs, so nothing was changed: %s"
                                  % "; ".join(lines), missing)
    return names


# The watcher's configuration keys the policy decides (its ``watcher`` section, but ``enabled``, and
# ``agent_ports``), with the defaults the policy's schema gives them.
WATCHER_FROM_POLICY = dict((key, option.get("default")) for key, option in POLICY_OPTIONS["watcher"]["options"].items()
                           if key != "enabled")


def watcher_config(plan, config=None):
    """The watcher's configuration: ``config`` (paths and such, from the caller) with what the policy says."""
    out = dict(config or {})
    for key, default in WATCHER_FROM_POLICY.items():
        value = plan["watcher"].get(key)
        value = default if value in (None, "") else value
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    out["agent_port_range"] = plan.get("agent_ports") or watcher_policy.DEFAULTS["agent_port_range"]
    return out


def _watcher_params(watcher, plan, previous, manage_watcher):
    """The ports_watcher options this run converges the watcher with, or None when it leaves it alone."""
    if watcher is None or not manage_watcher:
        return None
    if plan["watcher"]["enabled"]:
        params = dict((k, v) for k, v in watcher.items() if k not in WATCHER_DROP)
        params.update(state="started", policy=plan["watched_tasks"], config=watcher_config(plan, watcher.get("config")))
        return params
    if previous.get("watcher"):  # no task is watched any more: stop the watcher this module started
        return {"state": "stopped", "service": watcher.get("service") or ports_watcher.OPTIONS["service"]["default"]}
    return None


def _watcher_error(exc, changes):
    field = "watcher.%s" % exc.field if exc.field else "watcher"
    if not changes:
        return ValidationError(field, exc.reason)
    return ApplyError(field, "%s; the network policy was applied (%d change%s), the watcher was not converged" % (
        exc.reason, len(changes), "" if len(changes) == 1 else "s"))


def converge(host, raw_policy, record_path, check_mode=False, manage_watcher=True, watcher=None, require=()):
    """Converge the host; returns the module's result (``changed``, ``changes``, ``parts``, ``diff``...).

    With ``watcher`` (the ports_watcher module's options but state and policy), the ports watcher is
    converged too, after the network: started with the watched tasks, or stopped when the previous run
    started it and no task is watched any more. Its input is checked before anything changes; what it
    saw (``report``) is asked before the network changes. A failure of the watcher's own steps leaves the
    network converged and says so.

    Before anything changes (in check mode too), the capabilities the policy needs, and ``require``, are
    probed on the host; a missing one stops the run (MissingCapabilities).
    """
    plan = policy.check(host, raw_policy)  # raises PolicyError naming every bad field
    probed = check_capabilities(plan, require)
    previous = read_record(record_path)
    watcher_params = _watcher_params(watcher, plan, previous, manage_watcher)
    watcher_run = None
    if watcher_params is not None:
        try:
            watcher_run = ports_watcher.Run(watcher_params, check_mode=check_mode)  # checks, reads, plans, reports
        except HostnetError as exc:
            raise _watcher_error(exc, [])
    owned = policy.owned(plan)
    try:
        removed = policy.removed(previous, owned)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError("record", _UNREADABLE % (record_path, "%s: %s" % (type(exc).__name__, exc)))
    watched = bool(manage_watcher and plan["watcher"]["enabled"])
    record = dict(owned, watcher=watched)
    planned = contract.Planned()
    parts = dict((section, []) for section, _p, _n in PARTS)
    removals = dict((section, []) for section, _p, _n in PARTS)
    changes = []
    diff = {"before": {}, "after": {}}
    old_text = None
    if os.path.exists(record_path):
        with open(record_path) as handle:
            old_text = handle.read()

    def run_step(step):
        try:
            spec = step.part.spec(step.params, planned=planned if check_mode else None)
            result = step.part.converge(spec, check_mode=check_mode, planned=planned if check_mode else None)
        except HostnetError as exc:
            raise ValidationError("%s.%s" % (step.field, exc.field) if exc.field else step.field, exc.reason)
        if check_mode:
            _note_created(step, spec, result, planned)
        result = dict(result)
        part_diff = result.pop("diff", None) or {}
        result["field"] = step.field
        (removals if step.removal else parts)[step.section].append(result)
        for sentence in result.get("changes") or []:
            changes.append("%s (%s): %s" % (step.module, _label(step.section, step.params), sentence))
        if result.get("changed") and part_diff:
            key = "%s[%s]" % (step.module, _label(step.section, step.params))
            diff["before"][key] = part_diff.get("before")
            diff["after"][key] = part_diff.get("after")

    all_steps = steps(plan, removed)
    record_changed = previous != record
    if check_mode:
        for step in all_steps:
            run_step(step)
    else:
        union = _union(previous, record)
        with transaction.unit(policy.ROOT):
            if union != previous:
                # a run that fails halfway must still know, next time, what it may have created
                write_record(record_path, union)
                transaction.keep("write the record", _restore_record(record_path, old_text))
            for step in all_steps:
                run_step(step)
            if record != union or old_text is None:
                write_record(record_path, record)
                transaction.keep("write the record", _restore_record(record_path, old_text))
    watcher_result = {"enabled": plan["watcher"]["enabled"], "mode": plan["watcher"]["mode"],
                      "tasks": plan["watched_tasks"], "was_managed": bool(previous.get("watcher")),
                      "converged": watcher_run is not None}
    if watcher_run is not None:
        try:
            result = watcher_run.finish(others_changed=bool(changes) or record_changed)
        except HostnetError as exc:
            raise _watcher_error(exc, changes)
        except OSError as exc:
            raise _watcher_error(ApplyError(None, str(exc)), changes)
        watcher_diff = result.pop("diff", None) or []
        for sentence in result.get("changes") or []:
            changes.append("ports_watcher (%s): %s" % (watcher_run.sp.service, sentence))
        if watcher_diff:
            diff["before"]["ports_watcher"] = dict((d["before_header"], d["before"]) for d in watcher_diff)
            diff["after"]["ports_watcher"] = dict((d["after_header"], d["after"]) for d in watcher_diff)
        result.pop("changed", None)
        watcher_result.update(result)
    return {
        "changed": bool(changes) or record_changed,
        "changes": changes,
        "parts": parts,
        "removed": removals,
        "record": {"path": record_path, "changed": record_changed},
        "capabilities": probed,
        "watcher": watcher_result,
        "plan": plan,
        "diff": diff,
    }


def _union(previous, record):
    """What the previous record owned and the new one owns (a record that is never too short)."""
    out = dict(record)
    for section, _part, _name in PARTS:
        items = list(record.get(section) or [])
        for item in previous.get(section) or []:
            if item not in items:
                items.append(item)
        out[section] = items
    out["watcher"] = bool(record.get("watcher") or previous.get("watcher"))
    return out
