# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's cgroup layout, from its mount table: the one place that knows where cgroups live.

- ``v2`` (unified): one ``cgroup2`` file system, usually at /sys/fs/cgroup (Debian 11+, Ubuntu
  21.10+, Fedora 31+, RHEL 9);
- ``hybrid``: cgroup v1 controller hierarchies at /sys/fs/cgroup/<controller> and cgroup2 beside
  them, usually at /sys/fs/cgroup/unified (systemd's hybrid mode);
- ``v1``: v1 hierarchies only, no cgroup2 (RHEL/CentOS 7, systemd's legacy mode);
- ``none``: no cgroup file system at all.

A mount counts only while it is visible at its mount point (statfs there reports the cgroup file
system): a cgroup mount hidden under a later mount (a new sysfs over /sys in a mount namespace) is
listed in /proc/self/mountinfo but gives no access to the cgroups.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB
# cgroup v1 mount options that are not controllers
_CGROUP_V1_OPTIONS = ("rw", "ro", "seclabel", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "none",
                      "favordynmods")
_MAGIC = {"cgroup2": CGROUP2_SUPER_MAGIC, "cgroup": CGROUP_SUPER_MAGIC}


def layout(mountinfo_lines, visible=None):
    """{"mode": v1|v2|hybrid|none, "v2_mount", "v1_controllers"} from /proc/self/mountinfo lines.

    ``visible(path, fstype)`` says whether a listed mount is reachable at its mount point (default:
    every listed mount is). ``v2_mount`` is the first visible cgroup2 mount, None without one.
    """
    v2 = []
    v1 = []
    for line in mountinfo_lines:
        pre, _sep, post = line.partition(" - ")
        fields = pre.split()
        fstype, _source, superopts = (post.split() + ["", "", ""])[:3]
        if fstype not in _MAGIC or len(fields) < 5 or (visible is not None and not visible(fields[4], fstype)):
            continue
        if fstype == "cgroup2":
            v2.append(fields[4])
        else:
            v1.extend(o for o in superopts.split(",") if o not in _CGROUP_V1_OPTIONS and "=" not in o)
    mode = "v2" if v2 and not v1 else ("hybrid" if v2 else ("v1" if v1 else "none"))
    return {"mode": mode, "v2_mount": v2[0] if v2 else None, "v1_controllers": sorted(set(v1))}


def mounted(path, fstype):
    """Whether ``path`` shows a file system of ``fstype`` (cgroup or cgroup2), by its statfs magic."""
    try:
        return fs_magic(path) == _MAGIC[fstype]
    except OSError:
        return False


def host_layout():
    """This process's view: ``layout`` of /proc/self/mountinfo, hidden mounts left out."""
    with open("/proc/self/mountinfo") as f:
        return layout(f, visible=mounted)


def cgroup2_root():
    """Where cgroup v2 is mounted (/sys/fs/cgroup; /sys/fs/cgroup/unified on hybrid hosts); None
    when it is not (a cgroup v1-only host) or the mount table cannot be read."""
    try:
        return host_layout()["v2_mount"]
    except (IOError, OSError):
        return None


def is_cgroup2(path):
    """Whether ``path`` is on a cgroup v2 file system."""
    return mounted(path, "cgroup2")


_STATFS = []


def fs_magic(path):
    """statfs(2)'s f_type of ``path``; OSError when it cannot be had."""
    import ctypes
    if not _STATFS:
        class StatFs(ctypes.Structure):
            _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]
        _STATFS.append((ctypes.CDLL(None, use_errno=True), StatFs))
    libc, statfs_type = _STATFS[0]
    buf = statfs_type()
    if libc.statfs(path.encode(), ctypes.byref(buf)) != 0:
        raise OSError(ctypes.get_errno(), "statfs %s" % path)
    return buf.f_type & 0xFFFFFFFF
