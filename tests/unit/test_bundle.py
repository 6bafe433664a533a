# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The builder of the watcher's and the CNI plugin's executables: deterministic bytes, only the entry's
import closure, and an executable that runs."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from module_utils import bundle

CORE = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "module_utils")
BUILDER = os.path.join(CORE, "bundle.py")


def names(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist(), [info.external_attr >> 16 for info in archive.infolist()], \
            set(info.date_time for info in archive.infolist())


def cli(*args, **env):
    """The builder run by path, as the Makefile and the roles run it; its JSON answer."""
    proc = subprocess.run([sys.executable, BUILDER] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=dict(os.environ, **env), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("bytecode", [False, True])
def test_two_builds_are_byte_identical_whatever_the_process(tmp_path, bytecode):
    """In one process, and in two processes with different hash seeds (set order, string interning)."""
    assert bundle.build(CORE, "watcher", bytecode=bytecode) == bundle.build(CORE, "watcher", bytecode=bytecode)
    flag = ["--bytecode"] if bytecode else []
    first = cli("--entry", "cni", "--output", str(tmp_path / "a"), *flag, PYTHONHASHSEED="1")
    second = cli("--entry", "cni", "--output", str(tmp_path / "b"), *flag, PYTHONHASHSEED="2")
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert os.stat(str(tmp_path / "a")).st_mode & 0o777 == 0o755
    entries, modes, dates = names((tmp_path / "a").read_bytes())
    assert entries == sorted(entries) and set(modes) == {0o100644} and dates == {(1980, 1, 1, 0, 0, 0)}


def test_the_watcher_holds_its_import_closure_and_nothing_else():
    data = bundle.build(CORE, "watcher")
    assert data.startswith(b"#!/usr/bin/python3\n")
    entries, _modes, _dates = names(data)
    modules = sorted(e[len("hostnet_core/"):-3] for e in entries if e.startswith("hostnet_core/"))
    # bpfbind is imported inside functions (prevent mode): a lazy import is followed too
    assert modules == ["__init__", "bpfbind", "cgroups", "errors", "nlsock", "portranges", "sockdiag", "watcher",
                       "watcher_judge", "watcher_policy"]
    assert "__main__.py" in entries and "hostnet_core/portmap_nft.py" not in entries
    assert "bundle" not in modules  # the builder is not part of what it builds


def test_the_cni_plugin_holds_what_it_imports():
    entries, _modes, _dates = names(bundle.build(CORE, "cni", bytecode=True))
    for module in ("cni", "port_mapper", "portmap_nft", "portmap_ipt", "portmap_iptc", "conntrack", "netlink"):
        assert "hostnet_core/%s.py" % module in entries and "hostnet_core/%s.pyc" % module in entries
    assert "hostnet_core/watcher.py" not in entries and "hostnet_core/qdisc.py" not in entries


def test_the_executables_run(tmp_path):
    watcher, plugin = tmp_path / "watcher", tmp_path / "cni"
    cli("--entry", "watcher", "--output", str(watcher))
    cli("--entry", "cni", "--output", str(plugin), "--bytecode")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"syslog": False, "tasks": [{"name": "web", "cgroup": "t/web", "ports": "31000"}]}))
    check = subprocess.run([str(watcher), "--config", str(config), "--check"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=False)
    assert check.returncode == 0 and check.stdout == "%s: valid, 1 tasks\n" % config
    version = subprocess.run([str(plugin)], input='{"cniVersion": "1.0.0"}', stdout=subprocess.PIPE,
                             universal_newlines=True, env=dict(os.environ, CNI_COMMAND="VERSION"), check=False)
    assert version.returncode == 0 and "1.1.0" in json.loads(version.stdout)["supportedVersions"]


def test_an_unrelated_core_change_leaves_the_watcher_as_it_was(tmp_path):
    """As the roles build it: into a cache named by content. A file the watcher does not import changes
    nothing (same file, not rewritten); one it imports, even indirectly, makes a new build."""
    core, cache = tmp_path / "core", tmp_path / "cache"
    shutil.copytree(CORE, str(core), ignore=shutil.ignore_patterns("__pycache__"))
    args = ("--entry", "watcher", "--name", "hostnet-ports-watcher", "--cache-dir", str(cache), "--source", str(core))
    first = cli(*args)
    assert first["changed"] and first["path"].startswith(str(cache / "hostnet-ports-watcher") + os.sep)
    assert first["python"] == "/usr/bin/python3" and first["path"].endswith(os.sep + "hostnet-ports-watcher")
    with open(str(core / "portmap_nft.py"), "a") as f:
        f.write("\n# an unrelated change\n")
    again = cli(*args)
    assert (again["path"], again["changed"], again["sha256"]) == (first["path"], False, first["sha256"])
    with open(str(core / "portranges.py"), "a") as f:  # imported by watcher_policy, not by watcher directly
        f.write("\n# a change the watcher runs\n")
    changed = cli(*args)
    assert changed["changed"] and changed["path"] != first["path"] and os.path.exists(first["path"])


def test_old_cached_builds_are_pruned(tmp_path):
    cache = str(tmp_path)
    old = bundle.cache_path(cache, "w", b"old")
    bundle.write(b"old", old)
    os.utime(old, (1, 1))
    recent = bundle.cache_path(cache, "w", b"recent")
    bundle.write(b"recent", recent)
    keep = bundle.cache_path(cache, "w", b"new")
    bundle.write(b"new", keep)
    bundle.prune(cache, "w", keep)
    assert not os.path.exists(os.path.dirname(old)) and os.path.exists(recent) and os.path.exists(keep)


@pytest.mark.parametrize("source,words", [
    ("from ansible_collections.hostnet.isolation.plugins.module_utils import errors\n", "imports ansible_collections"),
    ("import ansible.module_utils.basic\n", "imports ansible.module_utils.basic"),
    ("from .. import x\n", "beyond the core's package"),
    ("def f(:\n", "not valid Python"),
])
def test_an_entry_the_bundle_cannot_serve_is_refused_naming_the_file(tmp_path, source, words):
    (tmp_path / "entry.py").write_text(source)
    with pytest.raises(bundle.BundleError) as err:
        bundle.build(str(tmp_path), "entry")
    assert str(tmp_path / "entry.py") in str(err.value) and words in str(err.value)


def test_a_missing_module_is_refused_naming_it(tmp_path):
    (tmp_path / "entry.py").write_text("from . import gone\n")
    with pytest.raises(bundle.BundleError) as err:
        bundle.build(str(tmp_path), "entry")
    assert "cannot read the core module 'gone'" in str(err.value)
