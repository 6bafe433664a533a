# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""port_redirect's u32 + mirred filters on this kernel's ingress qdisc: converge, stay, redirect, go.

The pair's namespace ``a`` is the host (va, 10.7.0.1), ``b`` the client (vb, 10.7.0.2). A container
namespace shares the host's address and MAC behind the veth vc in ``a``, as port_redirect documents.
"""

import subprocess

import pytest

from module_utils import port_redirect as portredirect

MAC = "02:00:00:07:00:01"


@pytest.fixture
def container(pair):
    """A container namespace (eth0: the host's address and MAC) behind veth vc in the host namespace."""
    name = pair.a[:-2] + "-c"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)
        pair.sh(pair.a, "ip link set va address {mac} && ip link add vc type veth peer name eth0 netns {c}"
                        " && ip link set vc up && ip -n {c} link set eth0 address {mac}"
                        " && ip -n {c} addr add 10.7.0.1/24 dev eth0 && ip -n {c} link set eth0 up"
                        " && ip -n {c} link set lo up".format(c=name, mac=MAC))
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _spec(pair, **kwargs):
    return portredirect.RedirectSpec("vc", devices=["va"], netns=pair.a, **kwargs)


def _filters(pair, dev):
    return pair.sh(pair.a, "tc filter show dev %s ingress" % dev).stdout


def _serve(netns, port, answer):
    return subprocess.Popen(["ip", "netns", "exec", netns, "socat", "TCP-LISTEN:%d,reuseaddr,fork" % port,
                             "EXEC:echo %s" % answer], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ask(pair, port):
    """What the client gets from 10.7.0.1:port ('' when nothing answers within ~5 s)."""
    return pair.sh(pair.b, "for i in $(seq 25); do r=$(socat -T2 - TCP:10.7.0.1:%d,connect-timeout=2 </dev/null"
                           " 2>/dev/null) && [ -n \"$r\" ] && echo $r && exit 0; sleep 0.2; done" % port).stdout.strip()


def test_a_port_range_converges_redirects_and_goes_away(pair, container):
    spec = _spec(pair, ports="8000-8063")
    predicted = portredirect.converge(spec, check_mode=True)
    assert predicted["changes"] and "mirred" not in _filters(pair, "va")  # check mode changed nothing
    applied = portredirect.converge(spec)
    assert applied["changes"] == predicted["changes"]
    assert applied["redirects"] == {"va": {"prio": portredirect.FIRST_PRIO,
                                           "ports": {"tcp": "8000-8063", "udp": "8000-8063"}}}
    # the kernel reads back what was planned: a second plan (and check mode) finds nothing to do
    assert portredirect.converge(spec, check_mode=True)["changes"] == []
    again = portredirect.converge(spec)
    assert again["changes"] == [] and again["redirects"] == applied["redirects"]

    servers = [_serve(container, 8010, "container"), _serve(container, 8100, "container"),
               _serve(pair.a, 8100, "host")]
    try:
        assert _ask(pair, 8010) == "container"  # in the range: the container answers on the host's address
        assert _ask(pair, 8100) == "host"  # outside it: the host
    finally:
        for server in servers:
            server.kill()
            server.wait()

    gone = portredirect.converge(_spec(pair, state="absent"))
    assert gone["changes"] and gone["redirects"] == {}
    assert "u32" not in _filters(pair, "va") and "u32" not in _filters(pair, "vc")
    assert portredirect.converge(_spec(pair, state="absent"))["changes"] == []
