# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locks and state where only root can write.

A lock in a world-writable directory (/run/lock) lets any local user stop us: who creates the
file first owns it. Our locks and state live in RUN_DIR, mode 0700, and every directory we put
them in is checked to be one that nobody but us (and root) can change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import os
import stat

from .errors import ValidationError

RUN_DIR = "/run/hostnet"


def _refuse(field, path, why):
    raise ValidationError(field, "%s %s: only root may be able to change where hostnet keeps its locks and "
                                 "state; fix or remove it" % (path, why))


def private_dir(path=RUN_DIR, field="run_dir"):
    """``path``, created 0700 if missing; refused (naming it) unless only we can write to it.

    Its ancestors must be owned by root or us and not writable by others, unless sticky (like
    /tmp: nobody else can move what we own there); the directory itself must be ours, not a
    symlink, and without group or other write.
    """
    me = os.geteuid()
    path = os.path.abspath(path)
    parent = os.path.realpath(os.path.dirname(path))
    if not os.path.lexists(parent):
        private_dir(parent, field)  # a missing ancestor is made (and checked) like the directory itself
    ancestor = parent
    while True:
        st = os.lstat(ancestor)
        if st.st_uid not in (0, me):
            _refuse(field, ancestor, "is owned by uid %d" % st.st_uid)
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            _refuse(field, ancestor, "is writable by others (mode %04o)" % stat.S_IMODE(st.st_mode))
        if ancestor == os.path.dirname(ancestor):
            break
        ancestor = os.path.dirname(ancestor)
    path = os.path.join(parent, os.path.basename(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        _refuse(field, path, "is a symlink" if stat.S_ISLNK(st.st_mode) else "is not a directory")
    if st.st_uid != me:
        _refuse(field, path, "is owned by uid %d" % st.st_uid)
    if st.st_mode & 0o022:
        _refuse(field, path, "is writable by others (mode %04o)" % stat.S_IMODE(st.st_mode))
    return path


@contextlib.contextmanager
def locked(name, directory=RUN_DIR, field="run_dir"):
    """Hold an exclusive flock on ``directory``/``name`` (a file only we can have made)."""
    directory = private_dir(directory, field)
    fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
