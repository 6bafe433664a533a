# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports watcher's judgement: listeners and tasks in, violations out. No host I/O.

A socket is judged by what the kernel says about the socket itself: the dump comes from the
host's network namespace (sockets of other namespaces are not in it), and a socket belongs to the
task whose cgroup tree holds the socket's cgroup (cgroup v2 id) or, on cgroup v1, whose processes
hold the socket's inode. Where a task's other processes live does not matter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import portranges


class TaskScan:
    """What one scan saw of a task: its assigned ports, and the sockets that can be its."""

    __slots__ = ("name", "ports", "cgroup_ids", "inodes")

    def __init__(self, name, ports, cgroup_ids=(), inodes=()):
        self.name = name
        self.ports = ports
        self.cgroup_ids = frozenset(cgroup_ids)
        self.inodes = frozenset(inodes)


class Verdict:
    __slots__ = ("listening", "offending")

    def __init__(self, listening, offending):
        self.listening = listening    # sorted "proto/port" of every listener of the task
        self.offending = offending    # frozenset of (proto, port) it was not assigned


def judge(listeners, tasks, considered):
    """{task name: Verdict} for ``tasks`` (TaskScan) given ``listeners`` (protocol, port, inode,
    cgroup_id) and the ``considered`` port set (ports outside it are never offending)."""
    by_id, by_inode = {}, {}
    for task in tasks:
        for cgroup_id in task.cgroup_ids:
            by_id[cgroup_id] = task
        for inode in task.inodes:
            by_inode[inode] = task
    listening = dict((task.name, set()) for task in tasks)
    offending = dict((task.name, set()) for task in tasks)
    for sock in listeners:
        task = by_id.get(sock.cgroup_id) if sock.cgroup_id else None
        task = task or by_inode.get(sock.inode)
        if task is None:
            continue
        listening[task.name].add((sock.protocol, sock.port))
        if _has(considered, sock.port) and not _has(task.ports, sock.port):
            offending[task.name].add((sock.protocol, sock.port))
    return dict((name, Verdict(["%s/%d" % pp for pp in sorted(listening[name], key=_by_text)],
                               frozenset(offending[name])))
                for name in listening)


def _by_text(pp):
    return "%s/%d" % pp


def _has(pairs, port):
    for first, last in pairs:
        if first <= port <= last:
            return True
    return False


def ports_text(bad):
    """'tcp 8080,31500; udp 31555' for a set of (protocol, port)."""
    by_proto = {}
    for proto, port in sorted(bad):
        by_proto.setdefault(proto, []).append((port, port))
    return "; ".join("%s %s" % (p, portranges.format_set(portranges.normalize(r))) for p, r in sorted(by_proto.items()))


def ports_ranges(bad):
    pairs = portranges.normalize([(port, port) for _proto, port in bad])
    return [{"begin": a, "end": b} for a, b in pairs]
