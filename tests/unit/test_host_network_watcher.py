# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_network's ``watcher`` option: when the one module call starts, stops or leaves the watcher alone,
and how a watcher failure is named (the service itself is exercised by molecule's fleet scenario)."""

import pytest

from module_utils import host_network, policy
from module_utils.errors import ApplyError, ValidationError

WATCHED = {"tasks": [{"name": "web", "ports": "31000-31009", "cgroup": "hostnet-tasks/web"}]}
UNWATCHED = {"tasks": [{"name": "web", "ports": "31000-31009"}]}
WATCHER = {"service": "hostnet-ports-watcher", "config": {"mode": "audit"}, "unit": "[Service]\n",
           "report": True}


def plan(raw):
    return policy.check("h1", raw)


def test_a_watched_task_starts_the_watcher_with_the_watched_tasks_as_its_policy():
    params = host_network._watcher_params(WATCHER, plan(WATCHED), {}, True)
    assert params["state"] == "started" and params["report"] is True
    assert params["policy"] == [{"name": "web", "ports": "31000-31009", "cgroup": "hostnet-tasks/web"}]


def test_no_watched_task_stops_only_a_watcher_this_module_started():
    assert host_network._watcher_params(WATCHER, plan(UNWATCHED), {"watcher": True}, True) == {
        "state": "stopped", "service": "hostnet-ports-watcher"}
    assert host_network._watcher_params(WATCHER, plan(UNWATCHED), {"watcher": False}, True) is None
    assert host_network._watcher_params(WATCHER, plan(UNWATCHED), {}, True) is None


def test_without_the_option_or_manage_watcher_the_watcher_is_left_alone():
    assert host_network._watcher_params(None, plan(WATCHED), {"watcher": True}, True) is None
    assert host_network._watcher_params(WATCHER, plan(WATCHED), {"watcher": True}, False) is None


def test_the_module_spec_takes_the_ports_watcher_options_but_state_and_policy():
    options = host_network.argument_spec()["watcher"]["options"]
    assert "executable_content" in options and options["executable_content"]["no_log"]
    assert "state" not in options and "policy" not in options


@pytest.mark.parametrize("changes, kind, words", [
    ([], ValidationError, "policy[0].ports: bad"),
    (["netns (web): create"], ApplyError, "the network policy was applied (1 change), the watcher was not"),
])
def test_a_watcher_failure_names_its_option_and_says_what_was_applied(changes, kind, words):
    exc = host_network._watcher_error(ValidationError("policy[0].ports", "bad"), changes)
    assert isinstance(exc, kind) and exc.field == "watcher.policy[0].ports" and words in str(exc)
