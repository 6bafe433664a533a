# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watcher's judgement over recorded scans: sockets with cgroup ids / inodes, and a task table."""

from module_utils.sockdiag import Listener
from module_utils.watcher_judge import TaskScan, judge, ports_text

ALL = [(1, 65535)]


def sock(port, cgroup_id=0, inode=0, protocol="tcp"):
    return Listener(protocol, 10, "::", port, inode, 0, cgroup_id)


# a recorded scan: web's cgroup (id 100) and its worker (101); api (200); a stranger (300)
SCAN = [sock(31001, 100), sock(31777, 101), sock(31010, 200), sock(8080, 200), sock(31900, 300),
        sock(31555, 100, protocol="udp")]
TASKS = [TaskScan("web", [(31000, 31009)], cgroup_ids=[100, 101]), TaskScan("api", [(31010, 31010)], cgroup_ids=[200])]


def test_each_socket_counts_against_the_task_whose_cgroup_tree_holds_it():
    verdicts = judge(SCAN, TASKS, ALL)
    assert verdicts["web"].listening == ["tcp/31001", "tcp/31777", "udp/31555"]
    assert verdicts["web"].offending == frozenset([("tcp", 31777), ("udp", 31555)])
    assert verdicts["api"].offending == frozenset([("tcp", 8080)])
    assert ports_text(verdicts["web"].offending) == "tcp 31777; udp 31555"


def test_ports_outside_the_considered_range_never_offend():
    verdicts = judge(SCAN, TASKS, [(31000, 32000)])
    assert verdicts["api"].offending == frozenset() and verdicts["api"].listening == ["tcp/31010", "tcp/8080"]


def test_a_socket_in_no_task_is_nobodys():
    verdicts = judge([sock(31900, 300)], TASKS, ALL)
    assert all(not v.listening and not v.offending for v in verdicts.values())


def test_cgroup_v1_tasks_are_matched_by_socket_inode():
    verdicts = judge([sock(31666, inode=77), sock(31001, inode=78)], [TaskScan("app", [(31001, 31001)], inodes=[77, 78])],
                     ALL)
    assert verdicts["app"].offending == frozenset([("tcp", 31666)])


def test_a_socket_without_a_cgroup_id_is_not_claimed_by_id_zero():
    verdicts = judge([sock(31666)], [TaskScan("odd", [], cgroup_ids=[0])], ALL)
    assert verdicts["odd"].listening == []
