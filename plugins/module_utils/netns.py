# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named network namespaces: bind-mounted handles, their symlinks, recovery.

Plan, then apply: ``plan_netns`` reads the host and returns the actions that
would bring it to the spec (check mode stops there); ``apply_netns`` runs
them as one transaction. While a plan is applied, every namespace whose
handle is removed or replaced is held open, so a failure can put the old
handle back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from . import nsutil
from .errors import ValidationError
from .transaction import Transaction

STATES = ("present", "absent", "reconciled")
DEFAULT_HANDLE_PATTERN = r"^[0-9]+$"


class NetnsSpec:
    """What the user asked for, validated."""

    def __init__(self, name=None, state="present", netns_dir=nsutil.DEFAULT_NETNS_DIR, pid=None,
                 symlinks=None, symlink_dir=None, handle_pattern=DEFAULT_HANDLE_PATTERN, keep=None):
        if state not in STATES:
            raise ValidationError("state", "%r is not one of %s" % (state, ", ".join(STATES)))
        self.state = state
        if not isinstance(netns_dir, str) or not netns_dir.startswith("/"):
            raise ValidationError("netns_dir", "%r is not an absolute path" % (netns_dir,))
        self.netns_dir = os.path.normpath(netns_dir)
        self.symlinks = []
        self.keep = list(keep or [])
        self.symlink_dir = None
        self.handle_pattern = None
        if state == "reconciled":
            self._init_reconcile(name, pid, symlinks, symlink_dir, handle_pattern)
            return
        if symlink_dir is not None:
            raise ValidationError("symlink_dir", "only used with state=reconciled")
        if keep:
            raise ValidationError("keep", "only used with state=reconciled")
        if name is None:
            raise ValidationError("name", "required with state=%s" % state)
        self.name = nsutil.check_netns_name("name", name)
        self.handle = os.path.join(self.netns_dir, self.name)
        if pid is not None:
            if state != "present":
                raise ValidationError("pid", "only used with state=present")
            if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
                raise ValidationError("pid", "%r is not a process id" % (pid,))
            if not nsutil.is_netns_handle("/proc/%d/ns/net" % pid):
                raise ValidationError("pid", "no process with pid %d (or its network namespace "
                                             "cannot be opened)" % pid)
        self.pid = pid
        seen = set()
        for i, link in enumerate(symlinks or []):
            field = "symlinks[%d]" % i
            if not isinstance(link, str) or not link.startswith("/"):
                raise ValidationError(field, "%r is not an absolute path" % (link,))
            link = os.path.normpath(link)
            if link == self.handle:
                raise ValidationError(field, "%s is the handle itself" % link)
            if link in seen:
                raise ValidationError(field, "%s is listed twice" % link)
            seen.add(link)
            if os.path.lexists(link) and not os.path.islink(link):
                raise ValidationError(field, "%s exists and is not a symlink; refusing to replace it" % link)
            self.symlinks.append(link)

    def _init_reconcile(self, name, pid, symlinks, symlink_dir, handle_pattern):
        for field, value in (("name", name), ("pid", pid), ("symlinks", symlinks)):
            if value:
                raise ValidationError(field, "not used with state=reconciled (it reconciles a directory)")
        if not isinstance(symlink_dir, str) or not symlink_dir.startswith("/"):
            raise ValidationError("symlink_dir", "required with state=reconciled, as an absolute path "
                                                 "(got %r)" % (symlink_dir,))
        self.symlink_dir = os.path.normpath(symlink_dir)
        if self.symlink_dir == self.netns_dir:
            raise ValidationError("symlink_dir", "must differ from netns_dir")
        try:
            self.handle_pattern = re.compile(handle_pattern)
        except (re.error, TypeError) as exc:
            raise ValidationError("handle_pattern", "%r is not a regular expression: %s" % (handle_pattern, exc))
        for i, name in enumerate(self.keep):
            nsutil.check_netns_name("keep[%d]" % i, name)


def _symlink_state(path):
    if os.path.islink(path):
        return os.readlink(path)
    return None


def describe_netns(spec):
    """The user-visible state of what ``spec`` manages (for diff and return values)."""
    handle = spec.handle
    live = nsutil.is_netns_handle(handle)
    return {
        "handle": handle if os.path.lexists(handle) else None,
        "live": live,
        "namespace_inode": nsutil.netns_inode(handle) if live else None,
        "symlinks": dict((link, _symlink_state(link)) for link in spec.symlinks),
    }


def plan_netns(spec):
    """Actions (dicts) that bring the host to ``spec``, with before/after views."""
    if spec.state == "reconciled":
        return _plan_reconcile(spec)
    before = describe_netns(spec)
    actions = []
    if spec.state == "present":
        want_inode = nsutil.netns_inode("/proc/%d/ns/net" % spec.pid) if spec.pid else None
        if before["handle"] and not before["live"]:
            actions.append({"action": "remove_stale_handle", "path": spec.handle})
        if not before["live"]:
            actions.append({"action": "create_handle", "path": spec.handle, "pid": spec.pid})
        elif want_inode is not None and before["namespace_inode"] != want_inode:
            actions.append({"action": "replace_handle", "path": spec.handle, "pid": spec.pid})
        for link in spec.symlinks:
            current = before["symlinks"][link]
            if current is None:
                actions.append({"action": "create_symlink", "path": link, "target": spec.handle})
            elif current != spec.handle:
                actions.append({"action": "replace_symlink", "path": link, "target": spec.handle,
                                "old_target": current})
        after = {
            "handle": spec.handle,
            "live": True,
            "namespace_inode": want_inode or (before["namespace_inode"] if before["live"] else None),
            "symlinks": dict((link, spec.handle) for link in spec.symlinks),
        }
    else:
        for link in spec.symlinks:
            if before["symlinks"][link] == spec.handle:
                actions.append({"action": "remove_symlink", "path": link, "old_target": spec.handle})
        if before["handle"]:
            actions.append({"action": "remove_handle" if before["live"] else "remove_stale_handle",
                            "path": spec.handle})
        after = {
            "handle": None,
            "live": False,
            "namespace_inode": None,
            "symlinks": dict((link, None if before["symlinks"][link] == spec.handle else before["symlinks"][link])
                             for link in spec.symlinks),
        }
    return {"actions": actions, "before": before, "after": after}


def _list_dir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _plan_reconcile(spec):
    """Mesos-style recovery: dangling symlinks and orphan handles go."""
    actions = []
    referenced = set()
    symlinks = {}
    for entry in _list_dir(spec.symlink_dir):
        path = os.path.join(spec.symlink_dir, entry)
        target = _symlink_state(path)
        if target is None:
            continue
        symlinks[path] = target
        resolved = os.path.normpath(os.path.join(spec.symlink_dir, target))
        if nsutil.is_netns_handle(resolved):
            referenced.add(os.path.realpath(resolved))
        else:
            actions.append({"action": "remove_symlink", "path": path, "old_target": target})
    handles = {}
    for entry in _list_dir(spec.netns_dir):
        path = os.path.join(spec.netns_dir, entry)
        live = nsutil.is_netns_handle(path)
        handles[path] = live
        if entry in spec.keep or not spec.handle_pattern.search(entry):
            continue
        if os.path.realpath(path) in referenced:
            continue
        actions.append({"action": "remove_handle" if live else "remove_stale_handle", "path": path})
    removed = set(a["path"] for a in actions)
    before = {"symlinks": symlinks, "handles": sorted(handles)}
    after = {"symlinks": dict((k, v) for k, v in symlinks.items() if k not in removed),
             "handles": sorted(h for h in handles if h not in removed)}
    # Symlinks go first so that a failure never leaves a symlink to a removed handle.
    actions.sort(key=lambda a: a["action"] != "remove_symlink")
    return {"actions": actions, "before": before, "after": after}


def _held_open(path, held):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    held.append(fd)
    return "/proc/self/fd/%d" % fd


def _step(action, held):
    """(do, undo) for one planned action."""
    path = action["path"]
    kind = action["action"]
    if kind == "create_handle":
        undo = []

        def do():
            if action.get("pid"):
                undo.append(nsutil.bind_handle("/proc/%d/ns/net" % action["pid"], path))
            else:
                undo.append(nsutil.create_handle(path))
        return do, lambda: undo and undo[0]()
    if kind in ("replace_handle", "remove_handle"):
        old = _held_open(path, held)  # keeps the old namespace alive until the transaction is over

        def undo():
            if os.path.lexists(path):
                nsutil.remove_handle(path)
            nsutil.bind_handle(old, path)
        if kind == "remove_handle":
            return (lambda: nsutil.remove_handle(path)), undo

        def do():
            nsutil.remove_handle(path)
            try:
                nsutil.bind_handle("/proc/%d/ns/net" % action["pid"], path)
            except OSError:
                undo()  # this step's own first half: put the old handle back before failing
                raise
        return do, undo
    if kind == "remove_stale_handle":
        return lambda: nsutil.remove_handle(path), lambda: open(path, "a").close()
    if kind in ("create_symlink", "replace_symlink"):
        undo_dirs = []

        def do():
            undo_dirs.append(nsutil.make_dirs(os.path.dirname(path)))
            tmp = "%s.hostnet-tmp" % path
            try:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(action["target"], tmp)
                os.rename(tmp, path)  # atomic replace: readers never see a missing link
            except OSError:
                undo_dirs[0]()
                raise

        def undo():
            if kind == "replace_symlink":
                os.symlink(action["old_target"], path + ".hostnet-tmp")
                os.rename(path + ".hostnet-tmp", path)
            else:
                os.unlink(path)
            undo_dirs[0]()
        return do, undo
    if kind == "remove_symlink":
        return lambda: os.unlink(path), lambda: os.symlink(action["old_target"], path)
    raise ValueError("unknown action %r" % kind)


def apply_netns(plan):
    """Apply a plan from ``plan_netns`` as one transaction; returns the done steps."""
    held = []
    txn = Transaction()
    try:
        steps = []
        for action in plan["actions"]:
            do, undo = _step(action, held)
            description = "%s %s" % (action["action"], action["path"])
            steps.append(lambda t, d=description, do=do, undo=undo: t.step(d, do, undo))
        return txn.run("netns", steps)
    finally:
        for fd in held:
            os.close(fd)
