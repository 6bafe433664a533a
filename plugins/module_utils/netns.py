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

import binascii
import os
import re

from . import nsutil, validate
from .contract import NOTHING_PLANNED
from .errors import ValidationError
from .transaction import Transaction

STATES = ("present", "absent", "reconciled")
DEFAULT_HANDLE_PATTERN = r"^[0-9]+$"


# The root and the kernel's own filesystems hold nothing a namespace directory may share them with.
_FORBIDDEN_DIRS = ("/proc", "/sys", "/dev")


def _check_path(field, value):
    """An absolute path, normalised; pure (no host access), so it can run on the controller."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValidationError(field, "%r is not an absolute path" % (value,))
    if ".." in value.split("/"):
        # normpath drops "x/.." before the kernel would follow a symlink x: the two could differ
        raise ValidationError(field, "%r contains '..'; give the path without it" % (value,))
    return "/" + os.path.normpath(value).lstrip("/")


def _check_link(field, value, netns_dir):
    """A symlink path: absolute, and not where a directory the handles need (or the kernel's) is."""
    link = _check_path(field, value)
    if link == "/" or any(link == d or link.startswith(d + "/") for d in _FORBIDDEN_DIRS):
        raise ValidationError(field, "%s is the root directory or inside /proc, /sys or /dev; refusing to make a "
                                     "symlink there" % link)
    if link == netns_dir or netns_dir.startswith(link + "/"):
        raise ValidationError(field, "%s is netns_dir %s or a directory above it, not a place for a symlink"
                              % (link, netns_dir))
    return link


def _pattern(value):
    if not isinstance(value, str):
        raise ValidationError("handle_pattern", "%r is not a regular expression" % (value,))
    try:
        return re.compile(value)
    except (re.error, RecursionError) as exc:
        raise ValidationError("handle_pattern", "%r is not a regular expression: %s" % (value, exc)) from None


def _list(field, value):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):  # a string would be taken letter by letter
        raise ValidationError(field, "%r is not a list" % (value,))
    return list(value)


def _check_dir(field, value):
    path = _check_path(field, value)
    if path == "/" or any(path == d or path.startswith(d + "/") for d in _FORBIDDEN_DIRS):
        raise ValidationError(field, "%s is the root directory or inside /proc, /sys or /dev; "
                                     "refusing to manage files there" % path)
    return path


class NetnsSpec:
    """What the user asked for, validated without looking at the host."""

    def __init__(self, name=None, state="present", netns_dir=nsutil.DEFAULT_NETNS_DIR, pid=None,
                 symlinks=None, symlink_dir=None, handle_pattern=DEFAULT_HANDLE_PATTERN, keep=None):
        if state not in STATES:
            raise ValidationError("state", "%r is not one of %s" % (state, ", ".join(STATES)))
        self.state = state
        self.netns_dir = _check_dir("netns_dir", netns_dir)
        self.symlinks = []
        symlinks = _list("symlinks", symlinks)
        self.keep = _list("keep", keep)
        self.symlink_dir = None
        self.handle_pattern = None
        pattern = _pattern(handle_pattern)  # checked whatever the state: a policy may carry it for later
        if state == "reconciled":
            self._init_reconcile(name, pid, symlinks, symlink_dir, pattern)
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
        self.pid = pid
        seen = set()
        for i, link in enumerate(symlinks or []):
            field = "symlinks[%d]" % i
            link = _check_link(field, link, self.netns_dir)
            if link == self.handle:
                raise ValidationError(field, "%s is the handle itself" % link)
            if link in seen:
                raise ValidationError(field, "%s is listed twice" % link)
            seen.add(link)
            self.symlinks.append(link)

    def _init_reconcile(self, name, pid, symlinks, symlink_dir, handle_pattern):
        for field, value in (("name", name), ("pid", pid), ("symlinks", symlinks)):
            if value:
                raise ValidationError(field, "not used with state=reconciled (it reconciles a directory)")
        if symlink_dir is None:
            raise ValidationError("symlink_dir", "required with state=reconciled, as an absolute path")
        self.symlink_dir = _check_dir("symlink_dir", symlink_dir)
        if self.symlink_dir == self.netns_dir:
            raise ValidationError("symlink_dir", "must differ from netns_dir")
        self.handle_pattern = handle_pattern
        for i, name in enumerate(self.keep):
            nsutil.check_netns_name("keep[%d]" % i, name)


# The netns module's options (contract.py).
OPTIONS = {
    "name": {"type": "str", "bad": ["web/1", "..", "n" * 256]},
    "state": {"type": "str", "choices": list(STATES), "default": "present", "bad": ["deleted"]},
    "netns_dir": {"type": "path", "default": nsutil.DEFAULT_NETNS_DIR, "bad": ["run/netns", "/proc/netns", "/"]},
    "pid": {"type": "int", "bad": [0, -42, "x"]},
    "symlinks": {"type": "list", "elements": "path", "default": [],
                 "bad": [["mesos/netns/web"], ["/var/run/netns"], ["/run/a/../b"]]},
    "symlink_dir": {"type": "path", "bad": ["mesos/netns", "/sys/fs"]},
    "handle_pattern": {"type": "str", "default": DEFAULT_HANDLE_PATTERN, "bad": ["[0-9+$", "(?P<"]},
    "keep": {"type": "list", "elements": "str", "default": [], "bad": [["a/b"], [".."]]},
}


def spec(params, host=True, planned=None):
    """The validated NetnsSpec of the module's parameters or a policy item (contract.py).

    ``host=False`` reads nothing from the host (the controller's check); ``host=True`` also checks that
    what the spec names on the host is of the kind the part manages (a handle, not a file of someone
    else's; a live ``pid``; symlinks it may replace). A namespace in ``planned`` at the handle's path is
    one this run creates: the handle is not looked at then.
    """
    result = NetnsSpec(**validate.params(OPTIONS, params))
    planned = planned or NOTHING_PLANNED
    if host and result.state != "reconciled" and not planned.netns(result.handle):
        _check_host(result, nsutil.mount_points())
    return result


_SAID = {
    "create_handle": lambda a: ("pin the network namespace of pid %d at %s" % (a["pid"], a["path"]) if a.get("pid")
                                else "create a network namespace with its handle at %s" % a["path"]),
    "replace_handle": lambda a: "re-point %s to the network namespace of pid %d" % (a["path"], a["pid"]),
    "remove_handle": lambda a: "remove the namespace handle %s (the namespace goes with its last process; this "
                               "cannot be undone)" % a["path"],
    "remove_stale_handle": lambda a: "remove %s, an empty file that pins no namespace" % a["path"],
    "create_symlink": lambda a: "link %s -> %s" % (a["path"], a["target"]),
    "replace_symlink": lambda a: "re-link %s -> %s (was -> %s)" % (a["path"], a["target"], a["old_target"]),
    "remove_symlink": lambda a: "remove the symlink %s (-> %s)" % (a["path"], a["old_target"]),
}


def converge(spec, check_mode=False, planned=None):  # pylint: disable=redefined-outer-name,unused-argument
    """Plan and (unless ``check_mode``) apply; the module's result (contract.py).

    ``created`` says whether the run makes a new, empty namespace at ``path`` (check mode too), so that a
    caller planning the parts after this one can add it to its ``Planned``. Creating, symlinks and
    placeholders are undone by an enclosing ``transaction.unit``; a namespace whose handle was removed
    or re-pointed is released when this part's transaction ends and cannot be brought back.
    """
    plan = plan_netns(spec)
    after = plan["after"]
    if plan["actions"] and not check_mode:
        apply_netns(plan)
        if spec.state != "reconciled":
            after = describe_netns(spec)
    result = {
        "changed": bool(plan["actions"]),
        "changes": [_SAID[a["action"]](a) for a in plan["actions"]],
        "actions": plan["actions"],
        "diff": {"before": plan["before"], "after": after},
    }
    if spec.state == "reconciled":
        result["removed"] = [a["path"] for a in plan["actions"]]
        result["left_alone"] = plan["left_alone"]
    else:
        result["path"] = spec.handle
        result["created"] = any(a["action"] == "create_handle" and not a.get("pid") for a in plan["actions"])
        result["netns"] = {"name": spec.name, "path": spec.handle, "exists": after["live"],
                           "namespace_inode": after["namespace_inode"], "symlinks": after["symlinks"]}
    return result


def _symlink_state(path):
    if os.path.islink(path):
        return os.readlink(path)
    return None


def _names_dead_handle(link, netns_dir, mounts):
    """Whether the symlink ``link`` points into ``netns_dir`` at a handle that pins no namespace.

    That is the only kind of symlink we replace or remove without being told its exact target:
    the links we make point there. Resolved as the kernel does (relative targets, symlinked dirs).
    """
    target = os.path.realpath(link)
    if os.path.dirname(target) != os.path.realpath(netns_dir):
        return False
    return nsutil.handle_kind(target, mounts)[0] in ("missing", "placeholder")


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


def _check_host(spec, mounts):
    """What the spec names on the host is of the kind we manage; raises ValidationError otherwise.

    Ownership before destruction: a path that is not a namespace handle (or the empty file a
    crashed `ip netns add` leaves) is never replaced or removed, a symlink only when it already
    points at a namespace handle or a dead handle in netns_dir.
    """
    kind, what = nsutil.handle_kind(spec.handle, mounts)
    if kind == "foreign":
        raise ValidationError("name", "%s exists and is %s, not a network namespace handle; refusing to %s it"
                                      % (spec.handle, what, "replace" if spec.state == "present" else "remove"))
    if spec.pid is not None and not nsutil.is_netns_handle("/proc/%d/ns/net" % spec.pid):
        raise ValidationError("pid", "no process with pid %d (or its network namespace cannot be opened)"
                                     % spec.pid)
    for i, link in enumerate(spec.symlinks):
        field = "symlinks[%d]" % i
        target = _symlink_state(link)
        if target is None:
            if os.path.lexists(link):
                raise ValidationError(field, "%s exists and is not a symlink; refusing to replace it" % link)
        elif spec.state == "present" and target != spec.handle and not (
                nsutil.is_netns_handle(link) or _names_dead_handle(link, spec.netns_dir, mounts)):
            raise ValidationError(field, "%s is a symlink to %s, which is neither a network namespace handle "
                                         "nor a dead handle in %s; refusing to replace it"
                                  % (link, target, spec.netns_dir))


def plan_netns(spec):
    """Actions (dicts) that bring the host to ``spec``, with before/after views."""
    mounts = nsutil.mount_points()
    if spec.state == "reconciled":
        return _plan_reconcile(spec, mounts)
    _check_host(spec, mounts)
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


def _plan_reconcile(spec, mounts):
    """Mesos-style recovery: dead symlinks into netns_dir, unused handles and placeholders go.

    Whatever else is found is left alone and reported (``left_alone``) rather than removed.
    """
    actions = []
    left_alone = []
    referenced = set()
    symlinks = {}
    for entry in _list_dir(spec.symlink_dir):
        path = os.path.join(spec.symlink_dir, entry)
        target = _symlink_state(path)
        if target is None:
            left_alone.append({"path": path, "reason": "not a symlink (%s)" % nsutil.handle_kind(path, mounts)[1]})
            continue
        symlinks[path] = target
        if nsutil.is_netns_handle(path):
            referenced.add(os.path.realpath(path))
        elif _names_dead_handle(path, spec.netns_dir, mounts):
            actions.append({"action": "remove_symlink", "path": path, "old_target": target})
        else:
            left_alone.append({"path": path, "reason": "a symlink to %s, which is neither a network namespace "
                                                       "nor a dead handle in %s" % (target, spec.netns_dir)})
    users = None
    handles = {}
    for entry in _list_dir(spec.netns_dir):
        path = os.path.join(spec.netns_dir, entry)
        kind, what = nsutil.handle_kind(path, mounts)
        handles[path] = kind
        if entry in spec.keep or not spec.handle_pattern.search(entry) or os.path.realpath(path) in referenced:
            continue
        if kind == "placeholder":
            actions.append({"action": "remove_stale_handle", "path": path})
        elif kind == "netns":
            users = nsutil.netns_users() if users is None else users
            pids = users.get(nsutil.netns_inode(path))
            if pids:
                left_alone.append({"path": path, "reason": "its namespace is in use by pid %s"
                                                           % ", ".join(str(p) for p in pids[:5])})
            else:
                actions.append({"action": "remove_handle", "path": path})
        else:
            left_alone.append({"path": path, "reason": "%s, not a network namespace handle" % what})
    removed = set(a["path"] for a in actions)
    before = {"symlinks": symlinks, "handles": sorted(handles)}
    after = {"symlinks": dict((k, v) for k, v in symlinks.items() if k not in removed),
             "handles": sorted(h for h in handles if h not in removed)}
    # Symlinks go first so that a failure never leaves a symlink to a removed handle.
    actions.sort(key=lambda a: a["action"] != "remove_symlink")
    return {"actions": actions, "before": before, "after": after, "left_alone": left_alone}


def _held_open(path, held):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    held.append(fd)
    return "/proc/self/fd/%d" % fd


def _tmp_name(path):
    # unique, so that creating it never meets (and never has to remove) a file of someone else's
    return "%s.%s.hostnet-tmp" % (path, binascii.hexlify(os.urandom(6)).decode())


def _expect_link(path, target):
    """Changes to a symlink are made only while it still points where the plan saw it point."""
    current = _symlink_state(path)
    if current != target:
        raise OSError("%s changed since it was planned (now %s); left in place"
                      % (path, "a symlink to %s" % current if current else "not a symlink"))


def _relink(path, target):
    tmp = _tmp_name(path)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, path)  # atomic replace: readers never see a missing link
    except OSError:
        os.unlink(tmp)
        raise


def _step(action, held, released):
    """(do, undo) for one planned action; each undo either restores or raises."""
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
            if released:  # the descriptor is closed (its number may be reused): the namespace is gone
                raise OSError("the namespace %s pinned was released when its removal landed; it cannot be "
                              "brought back" % path)
            if nsutil.handle_kind(path)[0] == "netns":
                nsutil.remove_handle(path)
            nsutil.pin_handle(old, path)
        if kind == "remove_handle":
            return (lambda: nsutil.remove_handle(path)), undo

        def do():
            nsutil.remove_handle(path)
            try:
                nsutil.pin_handle("/proc/%d/ns/net" % action["pid"], path)
            except OSError:
                undo()  # this step's own first half: put the old handle back before failing
                raise
        return do, undo
    if kind == "remove_stale_handle":
        mode = []

        def do():
            found, what = nsutil.handle_kind(path)
            if found != "placeholder":
                raise OSError("%s is %s now, no longer an empty placeholder; left in place" % (path, what))
            mode.append(os.lstat(path).st_mode & 0o7777)
            os.unlink(path)

        def undo():
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode[0]))
            os.chmod(path, mode[0])  # past the umask
        return do, undo
    if kind == "create_symlink":
        undo_dirs = []

        def do():
            undo_dirs.append(nsutil.make_dirs(os.path.dirname(path)))
            try:
                os.symlink(action["target"], path)
            except OSError:
                undo_dirs[0]()
                raise

        def undo():
            _expect_link(path, action["target"])
            os.unlink(path)
            undo_dirs[0]()
        return do, undo
    if kind == "replace_symlink":
        def do():
            _expect_link(path, action["old_target"])
            _relink(path, action["target"])

        def undo():
            _expect_link(path, action["target"])
            _relink(path, action["old_target"])
        return do, undo
    if kind == "remove_symlink":
        def do():
            _expect_link(path, action["old_target"])
            os.unlink(path)
        return do, lambda: os.symlink(action["old_target"], path)
    raise ValueError("unknown action %r" % kind)


def apply_netns(plan):
    """Apply a plan from ``plan_netns`` as one transaction; returns the done steps."""
    held = []
    released = []
    txn = Transaction()
    try:
        steps = []
        for action in plan["actions"]:
            do, undo = _step(action, held, released)
            description = "%s %s" % (action["action"], action["path"])
            steps.append(lambda t, d=description, do=do, undo=undo: t.step(d, do, undo))
        return txn.run("netns", steps)
    finally:
        released.append(True)  # undo steps handed to an enclosing unit must not use the closed descriptors
        for fd in held:
            os.close(fd)
