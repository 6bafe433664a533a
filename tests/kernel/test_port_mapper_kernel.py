# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An nftables port-mapper smoke test on this kernel, through the core.

The pair's namespace ``a`` is the host (10.7.0.1), ``b`` the container (10.7.0.2). The core runs in a
forked child that entered ``a`` for good, so nothing it does can reach the namespace pytest runs in.
"""

import os
import subprocess

import pytest

from module_utils import capabilities, nsutil, port_mapper, portmap

NETWORK = "hn-kt-smoke"


def _in_netns(netns, func):
    """``func()`` in a forked child inside the named network namespace; its JSON-able result."""
    def inside():
        nsutil.setns(os.open(os.path.join("/run/netns", netns), os.O_RDONLY))
        return func()
    return capabilities._in_child(inside)  # pylint: disable=protected-access  # the core's fork-and-return


def _converge(lock_dir, **kwargs):
    def run():
        # the lock goes to the test's own directory, not the machine's /run/hostnet
        port_mapper.LOCK_PATH = os.path.join(lock_dir, "port-mapper.lock")
        return port_mapper.converge_port_mapper(portmap.PortMapperSpec(NETWORK, backend="nftables", **kwargs))
    return run


def _connect(pair, port):
    """What a client on the host gets from the host's own address and ``port`` ('' if nothing)."""
    return pair.sh(pair.a, "for i in $(seq 25); do r=$(socat -T2 - TCP:10.7.0.1:%d,connect-timeout=2 </dev/null"
                           " 2>/dev/null) && [ -n \"$r\" ] && echo $r && exit 0; sleep 0.2; done" % port).stdout.strip()


def _tables(pair):
    return pair.sh(pair.a, "nft list tables").stdout


@pytest.fixture
def lock_dir(tmp_path):
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return str(path)


def test_a_mapped_port_reaches_the_container_and_goes_away(pair, lock_dir):
    mapping = [{"container_id": "smoke", "container_ip": "10.7.0.2", "host_port": 8080, "container_port": 80}]
    first = _in_netns(pair.a, _converge(lock_dir, mappings=mapping))
    assert first["changed"] is True and first["backend"] == "nftables", first
    assert first["added"] == [{"container_id": "smoke", "container_ip": "10.7.0.2", "protocol": "tcp",
                               "host_port": "8080", "container_port": "80"}], first
    assert "table inet hostnet-pm-%s" % NETWORK in _tables(pair)
    again = _in_netns(pair.a, _converge(lock_dir, mappings=mapping))
    assert again["changed"] is False and again["counts"] == {"added": 0, "removed": 0, "unchanged": 1}, again

    server = subprocess.Popen(["ip", "netns", "exec", pair.b, "socat", "TCP-LISTEN:80,reuseaddr,fork",
                               "EXEC:echo container"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _connect(pair, 8080) == "container"  # DNAT 10.7.0.1:8080 -> 10.7.0.2:80 (the output hook)
    finally:
        server.kill()
        server.wait()

    gone = _in_netns(pair.a, _converge(lock_dir, state="absent"))
    assert gone["changed"] is True and gone["counts"]["removed"] == 1, gone
    assert "hostnet-pm-" not in _tables(pair)
    assert _in_netns(pair.a, _converge(lock_dir, state="absent"))["changed"] is False
