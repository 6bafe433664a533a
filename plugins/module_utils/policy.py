# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's network policy (the ``host_network_policy`` variable tree), checked as a whole.

Each module validates its own options; this check looks across them, before any host is touched,
for what no single module can see:

* two tasks assigned overlapping ports, or a port outside the agent's range (``agent_ports``);
* a port mapping whose host port lies in another task's range, outside the agent's range, or is
  mapped twice;
* a redirect of ports that are not its task's, or that another redirect already takes;
* an ephemeral range inside the agent's range or shared by two containers;
* a name given twice, or a reference to a namespace, veth or task the policy does not declare.

Every problem is reported, each naming its field (``host_network_policy.tasks[1].ports``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import ephemeral_ports, netns, port_mapper, port_redirect, portranges, qdisc, veth, watcher_policy
from .errors import ValidationError

ROOT = "host_network_policy"
SECTIONS = ("agent_ports", "tasks", "namespaces", "veths", "qdiscs", "redirects", "ephemeral_ports",
            "port_mappers", "watcher")
WATCHER_MODES = ("audit", "enforce", "prevent")
WATCHER_KEYS = ("enabled", "mode", "watch_interval", "include_udp", "check_agent_port_range_only",
                "isolated_port_range", "metrics_listen")
TASK_KEYS = ("name", "ports", "cgroup", "systemd_unit")
MAX_IFNAME = 15


class PolicyError(ValidationError):
    """Every problem found in one host's policy: ``problems`` is a list of (field, reason)."""

    def __init__(self, host, problems):
        self.host = host
        self.problems = problems
        lines = ["%s: %s" % (field, reason) for field, reason in problems]
        ValidationError.__init__(self, problems[0][0], "; ".join(lines[:1]))
        self.args = ("host %s: invalid network policy (%d problem%s):\n  %s"
                     % (host, len(lines), "" if len(lines) == 1 else "s", "\n  ".join(lines)),)

    def __str__(self):
        return self.args[0]


class _Checker:
    def __init__(self):
        self.problems = []

    def bad(self, field, reason):
        problem = ("%s.%s" % (ROOT, field) if field else ROOT, reason)
        if problem not in self.problems:  # two checks that find the same fault name it once
            self.problems.append(problem)

    def ports(self, field, value):
        try:
            return portranges.parse(field, value)
        except ValidationError as exc:
            self.bad(field, exc.reason)
            return None

    def items(self, section, policy, required):
        """The list at ``section`` as (field, dict) pairs; each item must be a dict with ``required``."""
        value = policy.get(section)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(section, "must be a list, not %s" % type(value).__name__)
            return []
        out = []
        for index, item in enumerate(value):
            field = "%s[%d]" % (section, index)
            if not isinstance(item, dict):
                self.bad(field, "must be a mapping, not %s" % type(item).__name__)
                continue
            missing = [key for key in required if item.get(key) in (None, "")]
            if missing:
                self.bad("%s.%s" % (field, missing[0]), "is required")
                continue
            out.append((field, item))
        return out

    def unique(self, pairs, key, what, field_key=None):
        seen = {}
        for field, item in pairs:
            name = item[key] if not callable(key) else key(item)
            if name in seen:
                self.bad("%s.%s" % (field, field_key or key),
                         "%s %r is already declared at %s" % (what, name, _full(seen[name])))
            else:
                seen[name] = field
        return seen


# Each policy section is a list of one part's items; the part's own checks run on each (contract.py).
PART_OF = {"namespaces": netns, "veths": veth, "qdiscs": qdisc, "redirects": port_redirect,
           "ephemeral_ports": ephemeral_ports, "port_mappers": port_mapper}
# Keys of a section's items that are the policy's, not the part's options.
POLICY_KEYS = {"redirects": ("task",)}


def part_params(section, item, agent_ports=None):
    """The part's options for one policy item (what the host_network module converges)."""
    part = PART_OF[section]
    params = dict((k, v) for k, v in item.items()
                  if k in part.OPTIONS and v is not None and k not in POLICY_KEYS.get(section, ()))
    if section == "ephemeral_ports" and agent_ports:
        params["agent_ports"] = agent_ports
    if section == "port_mappers":
        params["mappings"] = [dict((k, v) for k, v in m.items() if k != "task" and v is not None)
                              if isinstance(m, dict) else m for m in item.get("mappings") or []]
        params["exclusive"] = True
    return params


def _part_checks(c, section, pairs, agent_ports):
    """The part's own validation of each item, without the host: what the host would refuse, refused here."""
    part = PART_OF[section]
    if not hasattr(part, "spec"):
        return
    allowed = (set(part.OPTIONS) | set(POLICY_KEYS.get(section, ()))) - set(("state",))
    for field, item in pairs:
        unknown = sorted(k for k in item if k not in allowed)
        for key in unknown:
            c.bad("%s.%s" % (field, key), "is not an option of %s items (%s)" % (section, ", ".join(sorted(allowed))))
        if unknown:
            continue
        try:
            part.spec(part_params(section, item, agent_ports), host=False)
        except ValidationError as exc:
            c.bad("%s.%s" % (field, exc.field) if exc.field else field, exc.reason)


def _full(field):
    return "%s.%s" % (ROOT, field)


def _text(pairs):
    return portranges.format_set(pairs)


def check(host, policy):
    """The normalised policy of ``host``, or PolicyError naming every bad field.

    The result keeps the user's values and adds what the role needs: each task's ``ports`` as a
    normalised range string, each redirect's ``ports`` (from its task when it names one), and the
    ``watcher`` section with its defaults.
    """
    c = _Checker()
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        reason = "must be a mapping of %s, not %s" % (", ".join(SECTIONS), type(policy).__name__)
        raise PolicyError(host, [(ROOT, reason)])
    for key in sorted(set(policy) - set(SECTIONS)):
        c.bad(key, "is not a policy section (sections: %s)" % ", ".join(SECTIONS))

    agent = None
    if policy.get("agent_ports") not in (None, ""):
        agent = c.ports("agent_ports", policy["agent_ports"])

    def outside_agent(field, ports, what="ports"):
        if agent is not None and ports:
            extra = portranges.difference(ports, agent)
            if extra:
                c.bad(field, "%s %s lie outside the agent's range agent_ports=%s"
                      % (what, _text(extra), _text(agent)))

    # tasks: the port assignments everything else is checked against
    tasks = c.items("tasks", policy, ("name",))
    c.unique(tasks, "name", "task")
    task_ports = {}
    out_tasks = []
    for field, item in tasks:
        for key in sorted(set(item) - set(TASK_KEYS)):
            c.bad("%s.%s" % (field, key), "is not a task option (%s)" % ", ".join(TASK_KEYS))
        if item.get("cgroup") and item.get("systemd_unit"):
            c.bad("%s.systemd_unit" % field, "give either cgroup or systemd_unit, not both")
        # the watcher's own checks, so a policy the watcher would refuse never reaches a host
        for key, valid in (("cgroup", watcher_policy.task_cgroup), ("systemd_unit", watcher_policy.systemd_unit)):
            if item.get(key) is not None:
                try:
                    valid("%s.%s" % (field, key), item[key])
                except ValidationError as exc:
                    c.bad(exc.field, exc.reason)
        ports = c.ports("%s.ports" % field, item.get("ports", ""))
        if ports is None:
            continue
        outside_agent("%s.ports" % field, ports)
        for other, (other_field, other_ports) in task_ports.items():
            shared = portranges.intersection(ports, other_ports)
            if shared:
                c.bad("%s.ports" % field, "%s overlap task %r (%s.ports = %s)"
                      % (_text(shared), other, _full(other_field), _text(other_ports)))
        task_ports.setdefault(item["name"], (field, ports))
        out_tasks.append(dict(item, ports=_text(ports)))

    cgroups = []
    for field, item in tasks:
        try:
            cgroups.append((field, item["name"], watcher_policy.task_cgroup(field, item.get("cgroup"))))
        except ValidationError:
            continue  # no cgroup, or a bad one (reported above)
    for i, j in watcher_policy.nested([path for _field, _name, path in cgroups]):
        if cgroups[i][2] == cgroups[j][2]:
            i, j = j, i  # the same cgroup twice: the later task is the one refused
        (outer_field, _name, outer), (inner_field, inner_name, inner) = cgroups[i], cgroups[j]
        c.bad("%s.cgroup" % outer_field, "%r %s the cgroup of task %r (%s); a task's cgroup may not contain another's"
              % (outer, "is also" if outer == inner else "contains", inner_name, _full(inner_field)))

    # namespaces and veths: names, and references to them
    namespaces = c.items("namespaces", policy, ("name",))
    ns_names = c.unique(namespaces, "name", "namespace")
    agent_text = _text(agent) if agent is not None else None
    _part_checks(c, "namespaces", namespaces, agent_text)

    def netns_ref(field, value):
        if value in (None, "") or not isinstance(value, str) or value.startswith("/"):
            return
        if value not in ns_names:
            c.bad(field, "namespace %r is not declared in %s.namespaces" % (value, ROOT))

    veths = c.items("veths", policy, ("name", "peer"))
    veth_names = c.unique(veths, "name", "veth")
    _part_checks(c, "veths", veths, agent_text)
    for field, item in veths:
        netns_ref("%s.peer_netns" % field, item.get("peer_netns"))
        netns_ref("%s.netns" % field, item.get("netns"))

    qdiscs = c.items("qdiscs", policy, ("device", "kind"))
    c.unique(qdiscs, lambda q: (q.get("netns") or "", q["device"], q["kind"] == "ingress"),
             "a qdisc at this device and parent", "device")
    _part_checks(c, "qdiscs", qdiscs, agent_text)
    for field, item in qdiscs:
        netns_ref("%s.netns" % field, item.get("netns"))

    # redirects: a task's ports (or ports given outright) from the host devices to a veth
    redirects = c.items("redirects", policy, ("veth",))
    c.unique(redirects, "veth", "a redirect to veth")
    taken = []
    out_redirects = []
    checked = []
    for field, item in redirects:
        if item["veth"] not in veth_names:
            c.bad("%s.veth" % field, "veth %r is not declared in %s.veths" % (item["veth"], ROOT))
        netns_ref("%s.netns" % field, item.get("netns"))
        task = item.get("task")
        if task is not None and task not in task_ports:
            c.bad("%s.task" % field, "task %r is not declared in %s.tasks" % (task, ROOT))
            continue
        if item.get("ports") in (None, ""):
            if task is None:
                c.bad("%s.ports" % field, "give ports, or the task whose ports are redirected")
                continue
            ports = task_ports[task][1]
        else:
            ports = c.ports("%s.ports" % field, item["ports"])
            if ports is None:
                continue
            if task is not None and portranges.difference(ports, task_ports[task][1]):
                c.bad("%s.ports" % field, "%s are not ports of task %r (%s)" % (
                    _text(portranges.difference(ports, task_ports[task][1])), task, _text(task_ports[task][1])))
            outside_agent("%s.ports" % field, ports)
        for other_field, other_ports in taken:
            shared = portranges.intersection(ports, other_ports)
            if shared:
                c.bad("%s.ports" % field, "%s are already redirected by %s" % (_text(shared), _full(other_field)))
        taken.append((field, ports))
        out_redirects.append(dict(item, ports=_text(ports)))
        checked.append((field, out_redirects[-1]))
    _part_checks(c, "redirects", checked, agent_text)

    # ephemeral ports: never inside the agent's range, never shared
    ephemeral = c.items("ephemeral_ports", policy, ("container",))
    c.unique(ephemeral, "container", "ephemeral ports for container")
    _part_checks(c, "ephemeral_ports", ephemeral, agent_text)
    explicit = []
    for field, item in ephemeral:
        netns_ref("%s.netns" % field, item.get("netns"))
        if item.get("range") in (None, ""):
            continue
        ports = c.ports("%s.range" % field, item["range"])
        if ports is None:
            continue
        if agent is not None and portranges.intersection(ports, agent):
            c.bad("%s.range" % field, "%s are in the agent's range agent_ports=%s: ephemeral ports must stay "
                  "out of it" % (_text(portranges.intersection(ports, agent)), _text(agent)))
        for other_field, other_ports in explicit:
            if portranges.intersection(ports, other_ports):
                c.bad("%s.range" % field, "overlaps %s.range" % _full(other_field))
        explicit.append((field, ports))

    # port mappings: the host port belongs to the mapping's task, and to no one else
    mappers = c.items("port_mappers", policy, ("network",))
    c.unique(mappers, "network", "port mapper network")
    _part_checks(c, "port_mappers", mappers, agent_text)
    mapped = {}
    for field, mapper in mappers:
        mappings = mapper.get("mappings") or []
        if not isinstance(mappings, list):
            c.bad("%s.mappings" % field, "must be a list")
            continue
        # what the host's port_mapper would refuse (names, devices, addresses: the ruleset's tokens) was
        # refused by _part_checks above, with the same spec the host builds
        for index, mapping in enumerate(mappings):
            mfield = "%s.mappings[%d]" % (field, index)
            if not isinstance(mapping, dict):
                c.bad(mfield, "must be a mapping with host_port, container_port, container_ip, container_id")
                continue
            host_ports = c.ports("%s.host_port" % mfield, mapping.get("host_port", ""))
            if host_ports is None:
                continue
            if not host_ports:
                c.bad("%s.host_port" % mfield, "is required")
                continue
            owner = mapping.get("task")
            if owner is not None and owner not in task_ports:
                c.bad("%s.task" % mfield, "task %r is not declared in %s.tasks" % (owner, ROOT))
            for name, (task_field, ports) in task_ports.items():
                shared = portranges.intersection(host_ports, ports)
                if shared and name != owner:
                    c.bad("%s.host_port" % mfield, "%s %s in the range of task %r (%s.ports = %s)%s"
                          % (_text(shared), "lies" if _text(shared).isdigit() else "lie", name,
                             _full(task_field), _text(ports),
                             "" if owner else "; name the owner with task: %s if the mapping is its" % name))
            outside_agent("%s.host_port" % mfield, host_ports, "host ports")
            family = "IPv6" if ":" in str(mapping.get("container_ip") or "") else "IPv4"
            key_base = (str(mapping.get("protocol") or "tcp"), str(mapping.get("host_ip") or family))
            for port_first, port_last in host_ports:
                for port in range(port_first, port_last + 1):
                    key = key_base + (port,)
                    if key in mapped:
                        c.bad("%s.host_port" % mfield, "%s port %d (%s) is already mapped by %s"
                              % (key[0], port, key[1], _full(mapped[key])))
                        break
                    mapped[key] = mfield
                else:
                    continue
                break

    # the watcher
    watcher = policy.get("watcher") or {}
    if not isinstance(watcher, dict):
        c.bad("watcher", "must be a mapping (mode, watch_interval, ...)")
        watcher = {}
    for key in sorted(set(watcher) - set(WATCHER_KEYS)):
        c.bad("watcher.%s" % key, "is not a watcher option (%s)" % ", ".join(WATCHER_KEYS))
    mode = watcher.get("mode", "audit")
    if mode not in WATCHER_MODES:
        c.bad("watcher.mode", "%r is not one of %s" % (mode, ", ".join(WATCHER_MODES)))
    if watcher.get("isolated_port_range") not in (None, ""):
        c.ports("watcher.isolated_port_range", watcher["isolated_port_range"])
    if watcher.get("check_agent_port_range_only") and agent is None:
        c.bad("watcher.check_agent_port_range_only", "needs %s.agent_ports" % ROOT)
    watched = [t for t in out_tasks if t.get("cgroup") or t.get("systemd_unit")]
    if watcher.get("enabled") and not watched:
        c.bad("watcher.enabled", "no task has a cgroup or systemd_unit for the watcher to watch")

    if c.problems:
        raise PolicyError(host, c.problems)
    out = dict(policy)
    out["tasks"] = out_tasks
    out["redirects"] = out_redirects
    for section in ("namespaces", "veths", "qdiscs", "ephemeral_ports", "port_mappers"):
        out[section] = list(policy.get(section) or [])
    out["agent_ports"] = _text(agent) if agent is not None else None
    out["watcher"] = dict({"enabled": bool(watched), "mode": "audit"},
                          **dict((k, v) for k, v in watcher.items() if v is not None))
    out["watched_tasks"] = [dict((k, t[k]) for k in TASK_KEYS if t.get(k) not in (None, ""))
                            for t in watched] if out["watcher"]["enabled"] else []
    out["requirements"] = requirements(out)
    return out


def requirements(policy):
    """Capability names (see capabilities.CAPABILITIES) the host needs for this policy."""
    return sorted(requirement_fields(policy))


def requirement_fields(policy):
    """Capability name -> the first policy field that needs it (``qdiscs[0].leaf``), for messages."""
    policy = policy or {}
    need = {}

    def add(field, *names):
        for name in names:
            need.setdefault(name, field)

    for section in ("namespaces", "veths", "qdiscs", "redirects", "ephemeral_ports"):
        if policy.get(section):
            add("%s[0]" % section, "pyroute2")
            break
    for i, qdisc in enumerate(policy.get("qdiscs") or []):
        kind = qdisc.get("kind")
        if kind in ("htb", "tbf", "fq_codel", "pfifo", "cake", "fq", "ingress"):
            add("qdiscs[%d].kind" % i, "qdisc_%s" % kind)
        if kind == "htb":
            leaf = qdisc.get("leaf", "fq_codel")
            if leaf in ("fq_codel", "pfifo"):
                add("qdiscs[%d].leaf" % i, "qdisc_%s" % leaf)
    if policy.get("redirects"):
        add("redirects[0]", "qdisc_ingress", "cls_u32", "act_mirred")
    for i, mapper in enumerate(policy.get("port_mappers") or []):
        backend = mapper.get("backend", "auto")
        if backend == "iptables":
            add("port_mappers[%d].backend" % i, "iptables", "iptables_wait", "xt_comment")
        elif backend == "nftables":
            add("port_mappers[%d].backend" % i, "nftables")
    watcher = policy.get("watcher") or {}
    if watcher.get("enabled", any(t.get("cgroup") or t.get("systemd_unit") for t in policy.get("tasks") or [])):
        add("watcher", "sock_diag", "sock_diag_cgroup_id", "cgroup_v2")
        if watcher.get("mode") == "prevent":
            add("watcher.mode", "bpf_cgroup_bind")
    return need


def owned(policy):
    """What the host_network role owns on a host under this (checked) policy, by part.

    The role records this after a run; the next run removes what the record has and the new
    policy has not. Each entry holds just what a module needs to remove the object.
    """
    policy = policy or {}

    def pick(item, keys):
        return dict((k, item[k]) for k in keys if item.get(k) not in (None, ""))

    return {
        "namespaces": sorted([pick(n, ("name", "netns_dir", "symlinks")) for n in policy.get("namespaces") or []],
                             key=lambda n: n["name"]),
        "veths": sorted([pick(v, ("name", "peer", "netns", "peer_netns", "netns_dir"))
                         for v in policy.get("veths") or []], key=lambda v: v["name"]),
        "qdiscs": sorted([dict(pick(q, ("device", "netns", "netns_dir")),
                               kind="ingress" if q["kind"] == "ingress" else "root")
                          for q in policy.get("qdiscs") or []],
                         key=lambda q: (q.get("netns", ""), q["device"], q["kind"])),
        "redirects": sorted([pick(r, ("veth", "netns", "netns_dir", "devices")) for r in policy.get("redirects") or []],
                            key=lambda r: r["veth"]),
        "ephemeral_ports": sorted([pick(e, ("container", "netns", "netns_dir", "state_file"))
                                   for e in policy.get("ephemeral_ports") or []], key=lambda e: e["container"]),
        "port_mappers": sorted([pick(m, ("network", "backend", "chain")) for m in policy.get("port_mappers") or []],
                               key=lambda m: m["network"]),
    }


_IDENTITY = {
    "namespaces": ("name",),
    "veths": ("name", "netns"),
    "qdiscs": ("device", "netns", "kind"),
    "redirects": ("veth", "netns"),
    "ephemeral_ports": ("container",),
    "port_mappers": ("network",),
}


def removed(previous, current):
    """Parts in the ``previous`` record (from ``owned``) that ``current`` no longer has, by part.

    What goes with something else is left out: a qdisc on a veth being removed (or in a namespace
    being removed) goes with its device, a veth whose host end lives in a removed namespace goes
    with the namespace. The role removes the rest in reverse order of creation.
    """
    previous = previous or {}
    current = current or {}
    out = {}
    for part, keys in _IDENTITY.items():
        have = set(tuple(item.get(k) or "" for k in keys) for item in current.get(part) or [])
        out[part] = [item for item in previous.get(part) or []
                     if tuple(item.get(k) or "" for k in keys) not in have]
    gone_ns = set(n["name"] for n in out["namespaces"])
    gone_dev = set()
    for veth in out["veths"]:
        gone_dev.add((veth.get("netns") or "", veth["name"]))
        gone_dev.add((veth.get("peer_netns") or veth.get("netns") or "", veth.get("peer")))
    out["veths"] = [v for v in out["veths"] if (v.get("netns") or "") not in gone_ns]
    out["qdiscs"] = [q for q in out["qdiscs"] if (q.get("netns") or "") not in gone_ns
                     and ((q.get("netns") or ""), q["device"]) not in gone_dev]
    return out
