# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-doc` renders every module, filter and role of the installed collection.

The plugins and roles are found from the sources (modules and roles by their files, filters by the names
each filter file's ``FilterModule.filters()`` returns), so a new one is covered without a new test, and
one without documentation fails here.
"""

import ast
import json
import os
import subprocess

import pytest
import yaml

from harness.hermetic import REPO
from harness.runner import VENV_BIN, ansible_env

MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "plugins", "modules")) if f.endswith(".py"))
ROLES = sorted(d for d in os.listdir(os.path.join(REPO, "roles")) if os.path.isdir(os.path.join(REPO, "roles", d)))


def filter_names(path):
    """The filter names a filter plugin file declares: the keys of the dict its filters() returns."""
    with open(path) as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "filters":
            returns = [n.value for n in ast.walk(node) if isinstance(n, ast.Return)]
            if len(returns) == 1 and isinstance(returns[0], ast.Dict) \
                    and all(isinstance(k, ast.Constant) for k in returns[0].keys):
                return [k.value for k in returns[0].keys]
            raise AssertionError("%s: filters() must return a dict literal with the filter names" % path)
    return []


FILTER_DIR = os.path.join(REPO, "plugins", "filter")
FILTERS = sorted(name for f in os.listdir(FILTER_DIR) if f.endswith(".py")
                 for name in filter_names(os.path.join(FILTER_DIR, f)))


def ansible_doc(*args):
    out = subprocess.run([os.path.join(VENV_BIN, "ansible-doc")] + list(args),
                         env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "WARNING" not in out.stderr, out.stderr
    return out.stdout


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    text = ansible_doc("hostnet.isolation." + module)
    assert "hostnet.isolation.%s" % module in text
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in text, "%s: no %s section" % (module, section)


def test_the_filters_are_found():
    assert {"network_policy", "network_policy_requirements", "port_ranges"} <= set(FILTERS)


@pytest.mark.parametrize("name", FILTERS)
def test_ansible_doc_renders_filter(name):
    text = ansible_doc("-t", "filter", "hostnet.isolation." + name)
    assert "FILTER hostnet.isolation.%s" % name in text
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in text, "%s: no %s section" % (name, section)


def test_every_filter_documented_in_one_call():
    """As galaxy-importer asks: one ansible-doc call for all the filters, which fails whole if one has no docs."""
    docs = json.loads(ansible_doc("-t", "filter", "--json", *["hostnet.isolation." + n for n in FILTERS]))
    assert sorted(docs) == ["hostnet.isolation." + n for n in FILTERS]
    for name, doc in docs.items():
        assert doc["doc"]["short_description"] and doc["examples"] and doc["return"], name


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_renders_role(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    text = ansible_doc("-t", "role", "hostnet.isolation." + role)
    assert "ROLE: *hostnet.isolation.%s*" % role in text
    for entry, spec in specs.items():
        assert "ENTRY POINT: *%s* - %s" % (entry, spec["short_description"]) in text, entry
        for option in spec.get("options") or {}:
            assert option in text, "%s: %s: option %s not shown" % (role, entry, option)
    assert os.path.isfile(os.path.join(REPO, "roles", role, "README.md")), "%s: no README.md (Galaxy needs one)" % role
