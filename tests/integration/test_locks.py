# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An unprivileged local user cannot stop port mapping or ephemeral port allocation (issue #17).

The locks used to live in the world-writable /run/lock: whoever created (and flocked) them first
blocked every later run. Now locks and state live in /run/hostnet, which only root can write.
"""

import json

from harness.assertions import assert_same
from harness.runner import INTERPRETERS, run_module

PYTHON = INTERPRETERS["os-pyroute2-0.7"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
OLD_LOCKS = ["/run/lock/hostnet-port-mapper.lock", "/run/lock/hostnet-ephemeral-ports.lock"]
# on today's host a lock someone else holds would make a run wait forever: fail instead
TIMEOUT = {"ANSIBLE_TASK_TIMEOUT": "30"}
MAPPER = {"network": "locktest", "backend": "nftables",
          "mappings": [{"container_id": "c1", "container_ip": "10.88.0.2", "host_port": 31000, "container_port": 80}]}


def _hostile_user_takes_the_shared_places(host):
    host.sh("chmod 1777 /run/lock")  # as on a real host
    host.run(NOBODY + ["touch"] + OLD_LOCKS)
    for path in OLD_LOCKS:
        host.spawn(NOBODY + ["flock", path, "sleep", "3600"])
    host.sh("for i in $(seq 100); do ok=1; for f in %s; do flock -n $f true && ok=0; done; "
            "[ $ok = 1 ] && exit 0; sleep 0.05; done; exit 1" % " ".join(OLD_LOCKS))
    # and the new place is out of reach
    tried = host.run(NOBODY + ["mkdir", "/run/hostnet"], check=False)
    assert tried.returncode != 0 and "Permission denied" in tried.stderr


def test_port_mapper_and_ephemeral_ports_work_while_a_user_holds_the_old_locks(host):
    host.sh("ip netns add c1")
    _hostile_user_takes_the_shared_places(host)
    mapped = run_module(host, "hostnet.isolation.port_mapper", MAPPER, PYTHON, env=TIMEOUT)
    assert not mapped.get("failed") and mapped["changed"], mapped.get("msg")
    rules = host.sh("nft list table inet hostnet-pm-locktest").stdout
    assert "31000" in rules and "10.88.0.2" in rules, rules
    eph = run_module(host, "hostnet.isolation.ephemeral_ports", {"container": "c1", "netns": "c1"}, PYTHON, env=TIMEOUT)
    assert not eph.get("failed") and eph["range"]["ports"] == "1024-2047", eph.get("msg")
    assert json.loads(host.sh("cat /run/hostnet/ephemeral-ports.json").stdout)["allocations"] == {"c1": [1024, 2047]}
    # what holds our locks and state: root's own, private directory and files
    assert host.sh("stat -c '%U %a' /run/hostnet").stdout.split() == ["root", "700"]
    assert host.sh("stat -c '%n %U %a' /run/hostnet/*.lock").stdout.splitlines() == [
        "/run/hostnet/ephemeral-ports.lock root 600", "/run/hostnet/port-mapper.lock root 600"]


def test_a_run_directory_others_could_change_is_refused_naming_it(host):
    host.sh("ip netns add c1 && mkdir -m 0700 /run/hostnet && chown 65534:65534 /run/hostnet")
    before = host.snapshot()
    for module, args in (("hostnet.isolation.port_mapper", MAPPER),
                         ("hostnet.isolation.ephemeral_ports", {"container": "c1", "netns": "c1"})):
        result = run_module(host, module, args, PYTHON, env=TIMEOUT)
        assert result.get("failed"), result
        assert "/run/hostnet is owned by uid 65534" in result["msg"], result["msg"]
    host.sh("chown root:root /run/hostnet && chmod 0777 /run/hostnet")
    result = run_module(host, "hostnet.isolation.port_mapper", MAPPER, PYTHON, env=TIMEOUT)
    assert result.get("failed") and "/run/hostnet is writable by others (mode 0777)" in result["msg"], result
    host.sh("chmod 0700 /run/hostnet")
    assert_same(before, host.snapshot(), "refused runs")
