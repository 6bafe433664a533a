# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network namespace plumbing: handles, entering a namespace, bind mounts.

Only the standard library (ctypes) is used here so that the watcher and the
CNI plugin can share it on hosts without Ansible.

Entering a namespace is done per thread with setns(2) and undone before the
context exits: a netlink socket opened inside the context talks to that
namespace, everything else in the process stays in its own namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import stat

from .errors import ValidationError

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: which kind of namespace it is (Linux 4.11)

DEFAULT_NETNS_DIR = "/var/run/netns"
# What `ip netns` accepts as a name: no slashes, not "." or "..".
_NETNS_NAME_RE = re.compile(r"^[A-Za-z0-9_.@:+-]{1,255}\Z")

_LIBC = []


def _libc():
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True))
    return _LIBC[0]


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def mount(source, target, fstype, flags, data=None):
    _check(_libc().mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    ), "mount %s" % target)


def umount(target, flags=0):
    _check(_libc().umount2(target.encode(), ctypes.c_int(flags)), "umount %s" % target)


def setns(fd, nstype=CLONE_NEWNET):
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def unshare(flags):
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def check_netns_name(field, name):
    """A namespace name as `ip netns` accepts it; raises ValidationError otherwise."""
    if not isinstance(name, str) or not _NETNS_NAME_RE.match(name) or name in (".", ".."):
        raise ValidationError(field, "%r is not a valid namespace name "
                                     "(1-255 characters of letters, digits, '_.@:+-', no '/')" % (name,))
    return name


def _nsfs_dev():
    return os.stat("/proc/self/ns/net").st_dev


def open_netns(path, follow=True):
    """A file descriptor on the network namespace at ``path``, or None when it is not one.

    Only files on nsfs are opened (opening a device or a FIFO could have effects of its own),
    and a handle of another namespace type (mnt, pid ...) is not a network namespace.
    ``follow=False`` does not follow a symlink at ``path`` itself.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_dev != _nsfs_dev():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    except OSError:
        return None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino) and fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def is_netns_handle(path):
    """True when ``path`` is a live network namespace (an nsfs bind mount or /proc/<pid>/ns/net)."""
    fd = open_netns(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def netns_inode(path):
    """The namespace's inode number, which identifies it across handles, or None."""
    fd = open_netns(path)
    if fd is None:
        return None
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _unescape_mountinfo(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points():
    """{mount point: filesystem type} of this mount namespace (the topmost mount wins)."""
    points = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            points[_unescape_mountinfo(fields[4])] = fields[fields.index("-") + 1]
    return points


def _describe(st):
    for test, what in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return what
    return "a non-empty regular file" if st.st_size else "an empty regular file"


def handle_kind(path, mounts=None):
    """What is at a handle path, as (kind, description); kind is one of

    - ``missing``;
    - ``netns``: a network namespace mounted there (what `ip netns add` and ``bind_handle`` make);
    - ``placeholder``: an empty regular file that is no mount point (what a crashed `ip netns add`
      leaves behind, before its bind mount);
    - ``foreign``: anything else, which is not ours to replace or remove.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return "missing", "missing"
    if stat.S_ISREG(st.st_mode) and st.st_dev == _nsfs_dev():
        fd = open_netns(path, follow=False)
        if fd is None:
            return "foreign", "a handle of another kind of namespace"
        os.close(fd)
        return "netns", "a network namespace handle"
    mounts = mount_points() if mounts is None else mounts
    fstype = mounts.get(os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)))
    if fstype is not None:
        return "foreign", "%s and a mount point (%s)" % (_describe(st), fstype)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return "placeholder", "an empty regular file"
    return "foreign", _describe(st)


def netns_users():
    """{network namespace inode: sorted pids of the processes with a thread in it}."""
    users = {}
    for pid in sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue  # exited meanwhile
        for tid in tids:
            try:
                inode = os.stat("/proc/%d/task/%s/ns/net" % (pid, tid)).st_ino
            except OSError:
                continue
            pids = users.setdefault(inode, [])
            if pid not in pids[-1:]:
                pids.append(pid)
    return users


def current_netns_inode():
    return os.stat("/proc/thread-self/ns/net").st_ino


def netns_path(field, name=None, pid=None, netns_dir=DEFAULT_NETNS_DIR, dir_field="netns_dir"):
    """The path ``resolve_netns`` would check, or None for the caller's own namespace; pure (no host access).

    Every refusal that needs no look at the host is made here (a pid that is no process id, a name ``ip
    netns`` would refuse, a relative ``netns_dir``), so the controller refuses what the host would.
    """
    if netns_dir is not None and (not isinstance(netns_dir, str) or not netns_dir.startswith("/")):
        raise ValidationError(dir_field, "%r is not an absolute path" % (netns_dir,))
    if pid is not None:
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValidationError(field, "%r is not a process id" % (pid,))
        return "/proc/%d/ns/net" % pid
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValidationError(field, "%r is not a namespace name or the absolute path of a handle" % (name,))
    if name.startswith("/"):
        if "\x00" in name:
            raise ValidationError(field, "%r holds a NUL byte; no path does" % (name,))
        return name
    check_netns_name(field, name)
    return os.path.join(netns_dir or DEFAULT_NETNS_DIR, name)


def netns_option(netns, netns_pid, netns_dir=DEFAULT_NETNS_DIR, own="(current)"):
    """(path, label) of the namespace a module's ``netns`` / ``netns_pid`` pair names (path None and label
    ``own`` for the module's own); pure. Each value's own faults are named first, then giving both."""
    if netns is not None and netns_pid is not None:
        netns_path("netns", name=netns, netns_dir=netns_dir)
        netns_path("netns_pid", pid=netns_pid)
        raise ValidationError("netns", "give either netns or netns_pid, not both")
    field = "netns_pid" if netns_pid is not None else "netns"
    path = netns_path(field, name=netns, pid=netns_pid, netns_dir=netns_dir)
    label = netns if netns is not None else ("pid %d" % netns_pid if netns_pid is not None else own)
    return path, label


def resolve_netns(field, name=None, pid=None, netns_dir=DEFAULT_NETNS_DIR):
    """Path of a namespace given by name (in ``netns_dir``), absolute path, or pid.

    Raises ValidationError naming ``field`` when the namespace does not exist,
    so that nothing is created for an unknown namespace.
    """
    if pid is not None:
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValidationError(field, "%r is not a process id" % (pid,))
        path = "/proc/%d/ns/net" % pid
        if not os.path.exists("/proc/%d" % pid):
            raise ValidationError(field, "no process with pid %d" % pid)
    elif name is None:
        return None
    elif name.startswith("/"):
        path = name
    else:
        check_netns_name(field, name)
        path = os.path.join(netns_dir, name)
    if not is_netns_handle(path):
        raise ValidationError(field, "network namespace %s does not exist (%s is not a namespace handle)"
                                     % (name if pid is None else "of pid %d" % pid, path))
    return path


@contextlib.contextmanager
def entered(path):
    """Run the body with this thread inside the namespace at ``path`` (None: stay)."""
    if path is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


def make_dirs(path, mode=0o755):
    """mkdir -p that returns an undo: removing exactly the directories it created."""
    created = []
    while path and not os.path.isdir(path):
        created.append(path)
        path = os.path.dirname(path)
    for directory in reversed(created):
        os.mkdir(directory, mode)

    def undo():
        for directory in created:
            os.rmdir(directory)
    return undo


def ensure_shared_dir(directory):
    """Make ``directory`` a shared mount point, as `ip netns add` does; returns an undo.

    Handles mounted below it then propagate to mount namespaces that were
    cloned from this one (containers started later see them).
    """
    undos = [make_dirs(directory)]

    def undo():
        for step in reversed(undos):
            step()
    try:
        mount("none", directory, None, MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            undo()
            raise
        try:
            mount(directory, directory, "none", MS_BIND | MS_REC)
            undos.append(lambda: umount(directory, MNT_DETACH))
            mount("none", directory, None, MS_SHARED | MS_REC)
        except OSError:
            undo()
            raise
    return undo


def pin_handle(source, path):
    """Bind-mount the namespace at ``source`` onto a new empty file ``path``, as `ip netns add` does."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.close(fd)
    try:
        mount(source, path, "none", MS_BIND)
    except OSError:
        os.unlink(path)
        raise


def bind_handle(source, path):
    """Pin the namespace at ``source`` at ``path``, making its directory shared first.

    Returns an undo that removes the handle and whatever directory set-up this call did.
    """
    undo_dir = ensure_shared_dir(os.path.dirname(path))
    try:
        pin_handle(source, path)
    except OSError:
        undo_dir()
        raise

    def undo():
        remove_handle(path)
        undo_dir()
    return undo


def create_handle(path):
    """Create a new, empty network namespace pinned at ``path``; returns an undo."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWNET)
        try:
            return bind_handle("/proc/thread-self/ns/net", path)
        finally:
            setns(own)
    finally:
        os.close(own)


def remove_handle(path):
    """Unpin and remove a handle; the namespace dies with its last user.

    Only a network namespace mount and the empty file below it (or such a file alone) are
    removed. Anything else at ``path``, on top or below, stays where it is and the call fails:
    the directory may hold files that are not ours.
    """
    kind, what = handle_kind(path)
    if kind == "placeholder":
        os.unlink(path)
        return
    if kind != "netns":
        raise OSError("%s is %s, not a network namespace handle; left in place" % (path, what))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        umount(path, MNT_DETACH)
        kind, what = handle_kind(path)
        if kind != "placeholder":
            mount("/proc/self/fd/%d" % fd, path, "none", MS_BIND)  # put our mount back over it
            raise OSError("%s: below the namespace mount is %s, not the file a handle is made of; "
                          "left in place" % (path, what))
        os.unlink(path)
    finally:
        os.close(fd)
