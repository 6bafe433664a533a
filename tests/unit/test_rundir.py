# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where locks and state live: a directory only we (root) can change, or a clear refusal."""

import fcntl
import os
import stat

import pytest

from module_utils import rundir
from module_utils.errors import ValidationError


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_missing_directory_is_made_private_with_its_missing_parents(tmp_path):
    path = tmp_path / "a" / "hostnet"
    assert rundir.private_dir(str(path)) == str(path)
    assert _mode(path) == 0o700 and _mode(tmp_path / "a") == 0o700


def test_an_existing_directory_only_we_can_write_is_kept_as_it_is(tmp_path):
    path = tmp_path / "hostnet"
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    assert rundir.private_dir(str(path)) == str(path)
    assert _mode(path) == 0o755


@pytest.mark.parametrize("prepare,why", [
    (lambda p: os.symlink(str(p.parent), str(p)), "is a symlink"),
    (lambda p: p.write_text(""), "is not a directory"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "is writable by others (mode 0777)"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o1777)), "is writable by others (mode 1777)"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o770)), "is writable by others (mode 0770)"),
    (lambda p: (p.mkdir(mode=0o700), os.chown(p, 65534, 65534)), "is owned by uid 65534"),
])
def test_a_directory_others_could_change_is_refused_naming_it(tmp_path, prepare, why):
    path = tmp_path / "hostnet"
    prepare(path)
    with pytest.raises(ValidationError) as err:
        rundir.private_dir(str(path), "state_file")
    assert err.value.field == "state_file" and "%s %s" % (path, why) in err.value.reason


def test_an_ancestor_others_could_change_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone could rename our directory away and put theirs
    with pytest.raises(ValidationError, match="%s is writable by others" % shared):
        rundir.private_dir(str(shared / "hostnet"))
    assert not (shared / "hostnet").exists()


def test_a_sticky_ancestor_is_fine(tmp_path):
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    assert rundir.private_dir(str(sticky / "hostnet")) == str(sticky / "hostnet")


def test_the_lock_is_a_private_file_and_excludes_a_second_holder(tmp_path):
    path = tmp_path / "hostnet"
    with rundir.locked("x.lock", str(path)):
        assert _mode(path / "x.lock") == 0o600
        fd = os.open(str(path / "x.lock"), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
