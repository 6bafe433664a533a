# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel tier: tc / netlink / nftables behaviour that depends on the running kernel.

These tests call the core library directly (a playbook adds nothing to what the kernel does) and
run twice in `make test`: on the build host's kernel, and inside a VM on each of Debian's kernels
(`make test-kernels`), where sch_fq_codel, sch_fq and sch_cake exist. A test that needs a kernel
feature asks the core's capability probe and, on a kernel without it, asserts the refusal instead.
"""

import itertools
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins"))

from module_utils import capabilities  # noqa: E402  pylint: disable=wrong-import-position

_counter = itertools.count()


def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, text=True)


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    if os.geteuid() != 0:
        raise pytest.UsageError("kernel tier tests need root (they create network namespaces)")


class Pair:
    """Two fresh named namespaces joined by a veth: ``dev_a`` (10.7.0.1/24 in ``a``), ``dev_b``
    (10.7.0.2/24 in ``b``). Names carry a unique hn-kt- prefix; both go away after the test."""

    def __init__(self, tag):
        self.a, self.b = "hn-kt-%s-a" % tag, "hn-kt-%s-b" % tag
        self.dev_a, self.dev_b = "va", "vb"
        self.netns_dir = "/run/netns"

    def up(self):
        _ip("netns", "add", self.a)
        _ip("netns", "add", self.b)
        _ip("link", "add", self.dev_a, "netns", self.a, "type", "veth", "peer", "name", self.dev_b, "netns", self.b)
        _ip("-n", self.a, "addr", "add", "10.7.0.1/24", "dev", self.dev_a)
        _ip("-n", self.b, "addr", "add", "10.7.0.2/24", "dev", self.dev_b)
        for ns, dev in ((self.a, self.dev_a), (self.b, self.dev_b)):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def down(self):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    def sh(self, netns, command):
        """A shell command inside one of the pair's namespaces; its CompletedProcess (text)."""
        return subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", command], check=True,
                              capture_output=True, text=True)


@pytest.fixture
def pair():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    p = Pair("%s-%d-%d" % (worker, os.getpid() % 100000, next(_counter)))
    try:
        yield p.up()
    finally:
        p.down()


@pytest.fixture(scope="session")
def qdisc_missing():
    """qdisc_missing(kind) -> None when this kernel accepts a qdisc of ``kind``, else why not."""
    cache = {}

    def missing(kind):
        if kind not in cache:
            cache[kind] = capabilities.qdisc_unsupported(kind)
        return cache[kind]
    return missing
