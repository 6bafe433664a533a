# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What counts as a namespace handle: only these are ever replaced or removed."""

import os

import pytest

from module_utils import nsutil


@pytest.mark.parametrize("make,kind,what", [
    (lambda p: None, "missing", "missing"),
    (lambda p: open(p, "w").close(), "placeholder", "an empty regular file"),
    (lambda p: open(p, "w").write("root:x:0:0\n"), "foreign", "a non-empty regular file"),
    (lambda p: os.symlink("/proc/self/ns/net", p), "foreign", "a symlink"),
    (os.mkdir, "foreign", "a directory"),
    (os.mkfifo, "foreign", "a FIFO"),
])
def test_handle_kind(tmp_path, make, kind, what):
    path = str(tmp_path / "h")
    make(path)
    assert nsutil.handle_kind(path) == (kind, what)


def test_an_empty_file_with_a_mount_on_it_is_no_placeholder(tmp_path):
    path = str(tmp_path / "h")
    open(path, "w").close()
    assert nsutil.handle_kind(path, {path: "ext4"}) == ("foreign", "an empty regular file and a mount point (ext4)")


def test_only_network_namespaces_are_network_namespace_handles():
    assert nsutil.is_netns_handle("/proc/self/ns/net")
    assert nsutil.netns_inode("/proc/self/ns/net") == os.stat("/proc/self/ns/net").st_ino
    assert not nsutil.is_netns_handle("/proc/self/ns/mnt")
    assert nsutil.netns_inode("/proc/self/ns/uts") is None
    assert not nsutil.is_netns_handle("/dev/null")


def test_remove_handle_refuses_what_is_not_a_handle(tmp_path):
    path = str(tmp_path / "passwd")
    with open(path, "w") as f:
        f.write("root:x:0:0\n")
    with pytest.raises(OSError, match="is a non-empty regular file, not a network namespace handle; left in place"):
        nsutil.remove_handle(path)
    assert open(path).read() == "root:x:0:0\n"
