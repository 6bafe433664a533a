# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures: a fresh hermetic host per test, and the managed-host Python to use."""

import itertools
import os

import pytest

from harness.hermetic import HermeticHost
from harness.runner import COLLECTIONS, INTERPRETERS

_counter = itertools.count()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        raise pytest.UsageError("integration tests need root (they create namespaces)")
    if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "hostnet", "isolation")):
        raise pytest.UsageError("the collection is not installed: run `make collection` (make test does)")


@pytest.fixture
def host(request):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    h = HermeticHost("hn-%s-%d" % (worker, next(_counter))).start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(params=sorted(INTERPRETERS), ids=sorted(INTERPRETERS))
def python(request):
    """Each module test runs once per supported managed-host Python / pyroute2."""
    return INTERPRETERS[request.param]
