# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ports watcher may touch: task cgroup paths, nesting, and how policy files are read."""

import json
import os
import posixpath
import unicodedata

import pytest
from hypothesis import given, strategies as st

from module_utils import watcher_policy as wp
from module_utils.errors import ValidationError

ROOT = "/sys/fs/cgroup"


@given(st.one_of(st.text(), st.text(alphabet="/.\0\n a-"), st.integers(), st.none()))
def test_a_cgroup_is_refused_naming_the_field_or_lies_strictly_below_the_root(value):
    try:
        rel = wp.task_cgroup("tasks[3].cgroup", value)
    except ValidationError as exc:
        assert exc.field == "tasks[3].cgroup"
        return
    resolved = posixpath.normpath(posixpath.join(ROOT, rel))
    assert resolved.startswith(ROOT + "/") and resolved != ROOT
    assert not any(unicodedata.category(c) == "Cc" for c in rel)
    assert resolved == posixpath.join(ROOT, rel)  # already normal: what is checked is what is used


@pytest.mark.parametrize("value,words", [
    ("/", "is the cgroup root"), (".", "is the cgroup root"), ("//", "is the cgroup root"),
    ("/./", "is the cgroup root"), ("", "is the cgroup root"), ("a/../..", "contains '..'"),
    ("a\0b", "control"), ("a\nb", "control"), ("a\u202eb", "control"), (" ", "blank"), (7, "not a cgroup path"),
])
def test_bad_cgroups_are_refused_with_the_reason(value, words):
    with pytest.raises(ValidationError) as err:
        wp.task_cgroup("tasks[0].cgroup", value)
    assert err.value.field == "tasks[0].cgroup" and words in err.value.reason


def test_a_cgroup_is_normalised():
    assert wp.task_cgroup("f", "/mesos//web-1/./") == "mesos/web-1"


def test_a_unit_name_cannot_be_an_option():
    with pytest.raises(ValidationError):
        wp.systemd_unit("tasks[0].systemd_unit", "--host=evil batch.service")
    assert wp.systemd_unit("f", "batch@1.service") == "batch@1.service"


def test_nested_finds_each_cgroup_inside_another_and_the_same_twice():
    paths = ["a/b", "a", "a-b", "c", "a/b/c", "c"]
    assert sorted(wp.nested(paths)) == [(0, 4), (1, 0), (3, 5)]


def _tasks(*cgroups):
    return [wp.Task({"name": "t%d" % i, "cgroup": c, "ports": "1"}, "tasks[%d]" % i, "config")
            for i, c in enumerate(cgroups)]


def test_a_task_containing_another_is_refused_naming_the_container():
    with pytest.raises(ValidationError) as err:
        wp.check_task_cgroups(_tasks("apps/web", "apps/api", "apps"))
    assert err.value.field == "tasks[2].cgroup" and "contains the cgroup of task" in err.value.reason


def test_a_task_containing_the_watcher_is_refused():
    with pytest.raises(ValidationError) as err:
        wp.check_task_cgroups(_tasks("ops"), own="ops/watcher")
    assert err.value.field == "tasks[0].cgroup" and "watcher's own cgroup" in err.value.reason
    wp.check_task_cgroups(_tasks("ops", "apps"), own="opsx")


@pytest.fixture
def policy_dir(tmp_path):
    d = tmp_path / "policy.d"
    d.mkdir()
    return d


def test_policy_files_are_regular_bounded_and_not_followed(policy_dir):
    good = policy_dir / "good.json"
    good.write_text('{"name": "g", "cgroup": "g", "ports": "1"}')
    os.symlink(str(good), str(policy_dir / "link.json"))
    os.mkfifo(str(policy_dir / "fifo.json"))
    (policy_dir / "big.json").write_text("{}" + " " * wp.MAX_POLICY_BYTES)
    for name, words in (("link.json", "symbolic link"), ("fifo.json", "not a regular file"), ("big.json", "larger")):
        with pytest.raises(ValidationError) as err:
            wp.read_file(str(policy_dir / name), "f", follow=False)
        assert words in err.value.reason
    assert wp.read_file(str(good), "f", follow=False).startswith(b"{")


def test_a_file_not_as_listed_is_read_again_later(policy_dir):
    f = policy_dir / "t.json"
    f.write_text('{"name": "t", "cgroup": "t", "ports": "1"}')
    listed = wp.file_signature(os.lstat(str(f)))
    f.write_text('{"name": "t", "cgroup": "t", "ports": "1-2"}')
    with pytest.raises(wp.PolicyChanging):
        wp.read_file(str(f), "f", follow=False, expect=listed)
    f.unlink()
    with pytest.raises(wp.PolicyChanging):
        wp.read_file(str(f), "f", follow=False, expect=listed)


@pytest.mark.parametrize("name,text", [("t.yml", "a: 1\nsecret: hunter2: [\n"), ("t.json", '{"secret": hunter2}')])
def test_parse_errors_give_a_position_never_the_text(name, text):
    with pytest.raises(ValidationError) as err:
        wp.parse_document(text.encode(), name, name)
    assert "hunter2" not in str(err.value) and "line" in str(err.value)


def _config(policy_dir, tasks=()):
    return wp.Config({"policy_dir": str(policy_dir), "tasks": list(tasks)})


def test_a_policy_file_holds_one_task_or_a_list_of_them(policy_dir):
    (policy_dir / "ansible.json").write_text(json.dumps([{"name": "a", "cgroup": "a", "ports": "31000"},
                                                         {"name": "b", "systemd_unit": "b.service", "ports": []}]))
    (policy_dir / "other.json").write_text('{"name": "c", "cgroup": "c", "ports": "31002"}')
    (policy_dir / "empty.json").write_text("[]")
    tasks = wp.load_policy(_config(policy_dir))
    assert [(t.name, t.cgroup, t.systemd_unit, t.ports_text) for t in tasks] == [
        ("a", "a", None, "31000"), ("b", None, "b.service", ""), ("c", "c", None, "31002")]
    assert tasks[0].source == str(policy_dir / "ansible.json")  # what the watcher watches for changes


@pytest.mark.parametrize("document,field,words", [
    ([{"name": "a", "cgroup": "a", "ports": "31000"}, "b"], "ansible.json[1]", "a policy file holds one task"),
    ([{"name": "a", "cgroup": "a", "ports": "31000"}, {"name": "a", "cgroup": "b", "ports": "1"}],
     "ansible.json[1].name", "task 'a' is also defined in"),
    ([{"name": "a", "cgroup": "a", "ports": "99999"}], "ansible.json[0].ports", "99999"),
])
def test_a_bad_task_in_a_list_is_refused_naming_its_index(policy_dir, document, field, words):
    (policy_dir / "ansible.json").write_text(json.dumps(document))
    with pytest.raises(ValidationError) as err:
        wp.load_policy(_config(policy_dir))
    assert err.value.field == str(policy_dir / field) and words in err.value.reason, err.value
