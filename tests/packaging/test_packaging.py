# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection declares and ships, as ansible-builder and a Galaxy user see it (make test-packaging).

- ``ansible-builder introspect`` on the installed collection lists exactly its runtime dependencies: no
  Python package for an execution environment (the controller needs ansible-core only), the managed hosts'
  packages under bindep profiles an EE build does not install; nothing from the repository's tooling.
- Every third-party module the plugins import is declared for the managed hosts (bindep.txt), and the
  filters load on a controller without any of them.
- The tarball ships what roles and playbooks use and none of the repository's tooling.

PKG_VENV (the venv of tests/packaging/requirements.txt) and TARBALL come from the Makefile.
"""

import ast
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
INSTALLED = os.path.join(COLLECTIONS, "ansible_collections", "hostnet", "isolation")
PKG_VENV = os.environ.get("PKG_VENV", os.path.join(REPO, ".build", "pkg-venv"))

# The collection's runtime dependencies, as bindep.txt declares them: a change there is a change here.
EXPECTED_SYSTEM = [
    "python3 [node]",
    "python3-pyroute2 [node]",
    "nftables [node]",
    "iptables [node-optional]",
    "python3-iptables [platform:dpkg node-optional]",
    "conntrack [platform:dpkg node-optional]",
    "python3-prometheus-client [platform:dpkg node-optional]",
    "python3-yaml [platform:dpkg node-optional]",
]
# Third-party modules the plugins import (top-level name) -> the managed-host package that provides it.
IMPORTED_FROM = {
    "pyroute2": "python3-pyroute2",
    "iptc": "python3-iptables",
    "prometheus_client": "python3-prometheus-client",
    "yaml": "python3-yaml",
}
# Never in the tarball: the repository's tooling and tests.
DEV_PATHS = ["Makefile", "pytest.ini", "apt-packages.txt", "requirements.txt", ".ansible-lint", ".ci", "bench",
             "molecule", "tools", "tests/harness", "tests/unit", "tests/integration", "tests/kernel",
             "tests/sanity", "tests/packaging", "tests/requirements.txt", "inventories/sandbox",
             "changelogs/fragments", "changelogs/.plugin-cache.yaml", ".build", ".venv", ".git"]
# Always in it: what the roles, the playbooks and ansible-builder read from the installed collection.
SHIPPED = ["README.md", "LICENSE", "CHANGELOG.md", "changelogs/changelog.yaml", "meta/runtime.yml",
           "meta/execution-environment.yml", "meta/ee-requirements.txt", "bindep.txt", "tests/config.yml",
           "plugins/module_utils/bundle.py", "playbooks/site.yml", "playbooks/tasks/plant_violation.yml",
           "inventories/example/hosts.yml", "roles/host_network/meta/argument_specs.yml",
           "roles/ports_watcher/templates/hostnet-ports-watcher.service.j2"]


def introspect(tmp_path):
    """ansible-builder's view of the installed collection alone (other collections may share its path)."""
    os.makedirs(str(tmp_path / "ansible_collections" / "hostnet"))
    os.symlink(INSTALLED, str(tmp_path / "ansible_collections" / "hostnet" / "isolation"))
    proc = subprocess.run([os.path.join(PKG_VENV, "bin", "ansible-builder"), "introspect", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    return [_source_dropped(x) for x in data["python"]], [_source_dropped(x) for x in data["system"]]


def _source_dropped(line):
    """An introspect line without the comment naming the collection it came from."""
    return line.split("  # from collection ")[0]


def test_introspect_lists_exactly_the_runtime_dependencies(tmp_path):
    python, system = introspect(tmp_path)
    assert python == [], "an execution environment would pip install %s" % python
    assert system == EXPECTED_SYSTEM


def active(profiles):
    """The bindep.txt lines (package names) selected by ``profiles`` on this Debian platform."""
    code = ("import sys; from bindep.depends import Depends\n"
            "d = Depends(open(sys.argv[1]).read())\n"
            "print('\\n'.join(r[0] for r in d.active_rules(sys.argv[2:] + d.platform_profiles())))")
    proc = subprocess.run([os.path.join(PKG_VENV, "bin", "python"), "-c", code,
                           os.path.join(INSTALLED, "bindep.txt")] + profiles,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    return proc.stdout.split()


def test_an_execution_environment_installs_no_system_package():
    assert active(["default"]) == []  # what ansible-builder's assemble installs (bindep's default profile)


def test_a_managed_host_gets_its_packages_from_the_node_profile():
    assert active(["node"]) == ["python3", "python3-pyroute2", "nftables"]
    assert set(active(["node", "node-optional"])) == set(line.split()[0] for line in EXPECTED_SYSTEM)


def third_party_imports():
    """{top-level module: [files]} of every absolute import in plugins/ outside the stdlib and Ansible."""
    found = {}
    for root, _dirs, files in os.walk(os.path.join(REPO, "plugins")):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    tops = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top not in sys.stdlib_module_names and top not in ("ansible", "ansible_collections"):
                        found.setdefault(top, []).append(os.path.relpath(path, REPO))
    return found


def test_every_third_party_import_is_declared_for_the_managed_hosts():
    imports = third_party_imports()
    undeclared = dict((top, files) for top, files in imports.items() if top not in IMPORTED_FROM)
    assert not undeclared, "imports with no package in bindep.txt (add one, and to IMPORTED_FROM): %s" % undeclared
    packages = set(line.split()[0] for line in EXPECTED_SYSTEM)
    assert set(IMPORTED_FROM[top] for top in imports) <= packages
    assert set(imports) == set(IMPORTED_FROM), "IMPORTED_FROM lists modules nothing imports any more"


def test_the_filters_load_on_a_controller_without_the_managed_hosts_packages():
    """The controller (an execution environment) needs ansible-core only: the filters load without them."""
    code = ("import sys\n"
            "for name in %r: sys.modules[name] = None  # any import of them fails\n"
            "from ansible_collections.hostnet.isolation.plugins.filter import policy, ports\n"
            "print(len(policy.FilterModule().filters()) + len(ports.FilterModule().filters()))"
            % sorted(set(IMPORTED_FROM) - {"yaml"}))  # PyYAML comes with ansible-core
    proc = subprocess.run([sys.executable, "-c", code], cwd=COLLECTIONS, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 7


@pytest.fixture(scope="module")
def tarball_files():
    path = os.environ.get("TARBALL")
    if not path:
        with open(os.path.join(REPO, "galaxy.yml")) as f:
            path = os.path.join(REPO, ".build", "hostnet-isolation-%s.tar.gz" % yaml.safe_load(f)["version"])
    with tarfile.open(path) as tar:
        return set(name.rstrip("/") for name in tar.getnames())


def test_the_tarball_ships_no_repository_tooling(tarball_files):
    shipped_dev = sorted(name for name in tarball_files for dev in DEV_PATHS
                         if name == dev or name.startswith(dev + "/"))
    assert shipped_dev == []
    assert sorted(name for name in tarball_files if name.startswith("tests/")) == ["tests/config.yml"]


def test_the_tarball_ships_what_roles_playbooks_and_ansible_builder_read(tarball_files):
    assert sorted(set(SHIPPED) - tarball_files) == []
