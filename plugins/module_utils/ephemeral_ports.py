# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ephemeral port ranges for containers that share the host's IP (Mesos' EphemeralPortsAllocator).

Each container gets one power-of-two sized, aligned range: outgoing connections from the container
take their source ports from it (written to the container namespace's ``ip_local_port_range``), so
the replies can be redirected to it by port. Ranges never overlap the agent's port resources, ports
below 1024, the host's own ``ip_local_port_range`` or another container's range.

Allocations live in a JSON state file (under /run by default: they outlive restarts of whatever
calls us, not a reboot, which also ends every container), written atomically under a lock. Both
live where only root can write (see rundir): whoever can write them decides our allocations.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import json
import os
import tempfile

from . import contract, nsutil, portranges, rundir, validate
from .transaction import Transaction
from .errors import ValidationError

DEFAULT_STATE_FILE = os.path.join(rundir.RUN_DIR, "ephemeral-ports.json")
SYSCTL = "/proc/sys/net/ipv4/ip_local_port_range"
LOCK_NAME = "ephemeral-ports.lock"


# What a new network namespace's ip_local_port_range holds: the kernel's default (inet_init_net in
# net/ipv4/af_inet.c), not the creating namespace's value. Check mode plans a namespace the run creates with it.
KERNEL_DEFAULT_PORT_RANGE = (32768, 60999)

# The module's options, once (contract.py): its argument_spec, and the values the part refuses.
OPTIONS = {
    "container": {"type": "str", "required": True, "bad": ["", " ", "x" * 256]},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present", "bad": ["released"]},
    "netns": {"type": "str", "bad": ["web/1", "../web"]},
    "netns_pid": {"type": "int", "bad": [0, -1, "x"]},
    "netns_dir": {"type": "path", "default": nsutil.DEFAULT_NETNS_DIR, "bad": ["var/run/netns"]},
    "size": {"type": "int", "default": 1024, "bad": [1000, 4, 65536, "x"]},
    "range": {"type": "str", "bad": ["40000-41023", "40960-41000", "4096-5119,8192-9215"]},
    "agent_ports": {"type": "raw", "bad": ["not-ports", "32000-31000"]},
    "pool": {"type": "raw", "default": "1024-65535", "bad": ["100-200", "1024-4095,x"]},
    "state_file": {"type": "path", "default": DEFAULT_STATE_FILE,
                   "bad": ["ephemeral-ports.json", "run/hostnet/ephemeral-ports.json"]},
}


def _power_of_two(field, value, low=8, high=32768):
    if isinstance(value, str) and value.strip().isdigit():  # as Ansible's ``type: int`` takes it
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value > high or value & (value - 1):
        raise ValidationError(field, "%r is not a power of two between %d and %d" % (value, low, high))
    return value


def _first_block(free, size):
    """The lowest ``size``-aligned block of ``size`` ports inside ``free``, or None."""
    for first, last in free:
        start = (first + size - 1) // size * size
        if start + size - 1 <= last:
            return (start, start + size - 1)
    return None


class EphemeralSpec:
    """The validated options. ``host=False``: no host I/O (the controller's check), every other check made.

    ``planned``: what the run creates before this part (contract.Planned); a planned namespace need not exist.
    Everything that does not depend on the host is refused here: a range the pool, the agent's ports or the
    privileged ports rule out, a size no aligned block of the pool can hold.
    """

    def __init__(self, container, state="present", netns=None, netns_pid=None, netns_dir=nsutil.DEFAULT_NETNS_DIR,
                 size=1024, agent_ports=None, pool=None, requested=None, state_file=DEFAULT_STATE_FILE,
                 host=True, planned=None):
        state = "present" if state is None else state
        if state not in ("present", "absent"):
            raise ValidationError("state", "%r is not one of present, absent" % (state,))
        self.state = state
        if not isinstance(container, str) or not container.strip() or len(container) > 255:
            raise ValidationError("container", "%r is not a container id (1-255 characters)" % (container,))
        self.container = container
        state_file = DEFAULT_STATE_FILE if state_file is None else state_file
        if not isinstance(state_file, str) or not state_file.startswith("/") or "\x00" in state_file \
                or state_file.endswith("/"):
            raise ValidationError("state_file", "%r is not the absolute path of a file" % (state_file,))
        self.state_file = state_file
        self.netns, self.netns_label = nsutil.netns_option(netns, netns_pid, netns_dir, own=None)
        self.size = _power_of_two("size", 1024 if size is None else size)
        self.agent_ports = portranges.parse("agent_ports", agent_ports) if agent_ports is not None else []
        self.pool = portranges.parse("pool", pool if pool is not None else "1024-65535", low=1024)
        if not self.pool:
            raise ValidationError("pool", "is empty")
        self.requested = None
        if requested is not None:
            self.requested = self._requested(requested, size)
            self.size = self.requested[1] - self.requested[0] + 1
        # what no host state can change: the pool minus the agent's ports and the privileged ones
        free = portranges.difference(self.pool, portranges.normalize(list(self.agent_ports) + [(0, 1023)]))
        if self.requested is not None:
            if not portranges.contains(free, [self.requested]):
                why = _why(self, self.requested, {}, None)
                raise ValidationError("range", "%s overlaps %s" % (_fmt(self.requested), why))
        elif _first_block(free, self.size) is None:
            raise ValidationError("size", "no free aligned block of %d ports is left: the pool %s minus the agent's "
                                          "ports (%s) and the privileged ones leaves %s"
                                  % (self.size, portranges.format_set(self.pool),
                                     portranges.format_set(self.agent_ports) or "none",
                                     portranges.format_set(free) or "nothing"))
        if state == "absent":
            return  # the namespace (often gone by then) is not touched
        if self.netns is None:
            raise ValidationError("netns", "required (or netns_pid): the container's namespace gets the range")
        planned = planned or contract.NOTHING_PLANNED
        if host and not planned.netns(self.netns):
            self.netns = nsutil.resolve_netns("netns_pid" if netns_pid is not None else "netns", name=netns,
                                              pid=netns_pid, netns_dir=netns_dir)

    def _requested(self, requested, size):
        pairs = portranges.parse("range", requested, low=1024)
        if len(pairs) != 1:
            raise ValidationError("range", "%r is not one range (ip_local_port_range holds a single interval)"
                                  % (requested,))
        first, last = pairs[0]
        count = last - first + 1
        if count & (count - 1):
            raise ValidationError("range", "%d-%d holds %d ports, not a power of two" % (first, last, count))
        if first % count:
            raise ValidationError("range", "%d-%d is not aligned: it must start at a multiple of %d"
                                  % (first, last, count))
        if size not in (None, 1024) and count != self.size:
            raise ValidationError("range", "%d-%d holds %d ports but size is %d" % (first, last, count, size))
        return (first, last)


def host_port_range():
    """The calling namespace's own ip_local_port_range as one (first, last) pair."""
    with open(SYSCTL) as f:
        first, last = [int(x) for x in f.read().split()]
    return first, last


def read_sysctl(netns):
    with nsutil.entered(netns):
        with open(SYSCTL) as f:
            return tuple(int(x) for x in f.read().split())


def write_sysctl(netns, pair):
    with nsutil.entered(netns):
        with open(SYSCTL, "w") as f:
            f.write("%d %d\n" % pair)


class StateFile:
    """The allocations, {container: [first, last]}, read and written under an exclusive lock.

    Check mode only reads, without the lock (writes are atomic renames), so it creates nothing.
    """

    def __init__(self, path, lock=True):
        self.path = path
        self.lock = rundir.locked(LOCK_NAME) if lock else contextlib.nullcontext()

    def __enter__(self):
        self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)

    def read(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            return {}
        rundir.private_dir(directory, "state_file")
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, IOError) as exc:
            if exc.errno == errno.ENOENT:
                return {}
            raise
        try:
            with os.fdopen(fd) as f:
                data = json.load(f)
        except ValueError as exc:
            raise ValidationError("state_file", "%s is not valid JSON (%s); move it away to start afresh"
                                  % (self.path, exc))
        allocations = data.get("allocations", {}) if isinstance(data, dict) else None
        if not isinstance(allocations, dict):
            raise ValidationError("state_file", "%s has no allocations map" % self.path)
        return _checked(self.path, allocations)

    def write(self, allocations):
        directory = rundir.private_dir(os.path.dirname(self.path), "state_file")
        fd, tmp = tempfile.mkstemp(prefix=".ephemeral-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "allocations": dict((k, list(v)) for k, v in sorted(allocations.items()))},
                          f, indent=1, sort_keys=True)
                f.write("\n")
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def _checked(path, allocations):
    """The allocations as the allocator makes them, or an error naming the file and the entry.

    A range the allocator could not have made (out of 1-65535, not aligned, overlapping another)
    would silently block or steal ports, so it is refused before anything changes.
    """
    def bad(name, why):
        raise ValidationError("state_file", "%s: allocations[%s] %s; fix or remove that entry (or move the file "
                                            "away to start afresh)" % (path, json.dumps(name)[:300], why))

    out = {}
    for name, pair in allocations.items():
        if not name.strip() or len(name) > 255:
            bad(name, "is not a container id (1-255 characters)")
        if (not isinstance(pair, list) or len(pair) != 2
                or any(isinstance(p, bool) or not isinstance(p, int) for p in pair)):
            bad(name, "= %s is not a [first, last] pair of ports" % json.dumps(pair)[:100])
        first, last = pair
        count = last - first + 1
        if not 1 <= first <= last <= 65535:
            bad(name, "= %s is not a range inside 1-65535" % json.dumps(pair))
        if count & (count - 1) or first % count:
            bad(name, "= %s is not an aligned power-of-two block" % json.dumps(pair))
        out[name] = (first, last)
    taken = sorted((pair, name) for name, pair in out.items())
    for (pair, name), (other, other_name) in zip(taken, taken[1:]):
        if other[0] <= pair[1]:
            bad(other_name, "= [%d, %d] overlaps container %s's range" % (other + (name,)))
    return out


def _fmt(pair):
    return "%d-%d" % pair if pair else None


def allocate(spec, allocations, host_range):
    """The container's range: kept when still valid, else the lowest free aligned block."""
    others = [v for k, v in allocations.items() if k != spec.container]
    forbidden = portranges.normalize(list(spec.agent_ports) + [host_range] + others + [(0, 1023)])
    free = portranges.difference(spec.pool, forbidden)
    if spec.requested is not None:
        if not portranges.contains(free, [spec.requested]):
            why = _why(spec, spec.requested, allocations, host_range)
            raise ValidationError("range", "%s overlaps %s" % (_fmt(spec.requested), why))
        return spec.requested
    current = allocations.get(spec.container)
    if current is not None and current[1] - current[0] + 1 == spec.size and portranges.contains(free, [current]):
        return current
    block = _first_block(free, spec.size)
    if block is not None:
        return block
    raise ValidationError("size", "no free aligned block of %d ports is left: the pool %s minus the agent's ports "
                          "(%s), the host's ip_local_port_range (%s) and %d other containers' ranges leaves %s"
                          % (spec.size, portranges.format_set(spec.pool), portranges.format_set(spec.agent_ports)
                             or "none", _fmt(host_range), len(others), portranges.format_set(free) or "nothing"))


def _why(spec, pair, allocations, host_range):
    block = [pair]
    if portranges.intersection(block, [(0, 1023)]):
        return "the privileged ports below 1024"
    if portranges.intersection(block, spec.agent_ports):
        return "the agent's ports %s" % portranges.format_set(spec.agent_ports)
    if host_range is not None and portranges.intersection(block, [host_range]):
        return "the host's ip_local_port_range %s" % _fmt(host_range)
    for name, other in sorted(allocations.items()):
        if name != spec.container and portranges.intersection(block, [other]):
            return "container %s's range %s" % (name, _fmt(other))
    return "ports outside the pool %s" % portranges.format_set(spec.pool)


def _restore(path, container, pair, existed):
    """Undo: put ``container``'s allocation back to ``pair`` (None: none), under the lock."""
    with StateFile(path) as state:
        allocations = state.read()
        if pair is None:
            allocations.pop(container, None)
        else:
            allocations[container] = pair
        if allocations or existed:
            state.write(allocations)
        elif os.path.lexists(path):
            os.unlink(path)  # the file this run created goes again


def converge(spec, check_mode=False, planned=None):
    """Allocate (or release) and write the range; the part's result (contract.py).

    Check mode plans a namespace ``planned`` says this run creates with the kernel's default range. The
    sysctl is written first, the allocation last, as one transaction whose undo steps go to the enclosing
    ``transaction.unit`` (the allocation's undo takes the lock again, so it only runs once this call has
    returned it).
    """
    planned = planned or contract.NOTHING_PLANNED
    with StateFile(spec.state_file, lock=not check_mode) as state:
        existed = os.path.lexists(spec.state_file)
        allocations = state.read()
        current = allocations.get(spec.container)
        txn = Transaction()
        steps = []

        def allocation(pair, text):
            def do():
                if pair is None:
                    del allocations[spec.container]
                else:
                    allocations[spec.container] = pair
                state.write(allocations)
            steps.append(lambda t: t.step(text, do, lambda: _restore(spec.state_file, spec.container, current,
                                                                     existed)))
            return text

        changes = []
        if spec.state == "absent":
            before = {"container": spec.container, "range": _fmt(current)}
            if current is not None:
                changes.append(allocation(None, "release %s from %s" % (_fmt(current), spec.container)))
            after = {"container": spec.container, "range": None}
            wanted = None
        else:
            host_range = host_port_range()
            wanted = allocate(spec, allocations, host_range)
            if check_mode and planned.netns(spec.netns):
                sysctl = KERNEL_DEFAULT_PORT_RANGE  # a namespace this run creates: what a new one holds
            else:
                sysctl = read_sysctl(spec.netns)
            before = {"container": spec.container, "range": _fmt(current), "ip_local_port_range": _fmt(sysctl)}
            after = {"container": spec.container, "range": _fmt(wanted), "ip_local_port_range": _fmt(wanted)}
            if sysctl != wanted:
                text = "set ip_local_port_range in %s to %s (was %s)" % (spec.netns_label, _fmt(wanted), _fmt(sysctl))
                changes.append(text)
                steps.append(lambda t: t.step(text, lambda: write_sysctl(spec.netns, wanted),
                                              lambda: write_sysctl(spec.netns, sysctl)))
            if current != wanted:  # the allocation lands last: its undo must not run while we hold the lock
                was = " (was %s)" % _fmt(current) if current else ""
                changes.append(allocation(wanted, "allocate %s to %s%s" % (_fmt(wanted), spec.container, was)))
        if steps and not check_mode:
            txn.run("range", steps)
        result = {"changed": bool(changes), "changes": changes, "diff": {"before": before, "after": after},
                  "range": None}
        if wanted is not None:
            result["range"] = {"first": wanted[0], "last": wanted[1], "size": wanted[1] - wanted[0] + 1,
                               "ports": _fmt(wanted)}
        return result


def spec(params, host=True, planned=None):
    """The part's validated spec from the module's parameters (contract.py); the option ``range`` is
    the spec's ``requested``."""
    args = validate.params(OPTIONS, params)
    if "range" in args:
        args["requested"] = args.pop("range")
    return EphemeralSpec(host=host, planned=planned, **args)
