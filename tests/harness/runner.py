# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the installed collection's modules and playbooks inside a hermetic host, as a user would."""

import json
import os
import subprocess
import tempfile

from .hermetic import REPO

VENV_BIN = os.path.join(REPO, ".venv", "bin")
COLLECTIONS = os.path.join(REPO, ".build", "collections")

# The managed-host Pythons we support and test: the OS Python with Debian's python3-pyroute2 (0.7.x)
# and the project venv with the newest pyroute2 from PyPI.
INTERPRETERS = {
    "os-pyroute2-0.7": "/usr/bin/python3",
    "pypi-pyroute2": os.path.join(VENV_BIN, "python"),
}


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra or {})
    return env


class AnsibleResult(dict):
    """A task's result dict; ``.raw`` keeps the whole callback output for failure messages."""


def _task_results(stdout):
    data = json.loads(stdout)
    results = []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host_name, host_result in task.get("hosts", {}).items():
                result = AnsibleResult(host_result)
                result["_task"] = task.get("task", {}).get("name")
                result["_host"] = host_name
                results.append(result)
    return data, results


def run_module(host, module, args, python, check=False, diff=True, env=None):
    """One module call inside ``host``; returns its result dict (``failed`` set on failure).

    ``env`` adds to the environment the module runs with (the local connection passes it on).
    """
    argv = [os.path.join(VENV_BIN, "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-m", module, "-e", "ansible_python_interpreter=%s" % python]
    if args:
        argv += ["-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = host.run(argv, check=False, env=ansible_env(env))
    try:
        _data, results = _task_results(proc.stdout)
    except ValueError:
        raise AssertionError("ansible did not return JSON (%d):\n%s\n%s"
                             % (proc.returncode, proc.stdout, proc.stderr))
    result = results[0]
    result.raw = proc.stdout
    return result


def run_playbook(host, playbook_text, python, extra_vars=None, check=False, diff=False):
    """Run a playbook (YAML text) inside ``host``; returns (returncode, stats, task results)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=os.path.join(REPO, ".build"), delete=False) as f:
        f.write(playbook_text)
        path = f.name
    try:
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-c", "local", "-i", "localhost,", path,
                "-e", json.dumps(dict(extra_vars or {}, ansible_python_interpreter=python))]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        proc = host.run(argv, check=False, env=ansible_env())
    finally:
        os.unlink(path)
    try:
        data, results = _task_results(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook did not return JSON (%d):\n%s\n%s" % (
            proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, data.get("stats", {}), results


class LocalHost:
    """The machine the tests run on, as a ``host`` for run_module / run_playbook: no hermetic
    namespaces around the run. ``netns`` (a name in /run/netns) runs ansible inside that network
    namespace (`ip netns exec`), for modules without a netns option or to keep a module's changes
    off the machine's own network. The kernel tier (tests/kernel) uses it: there "the machine" is
    the build host or the distro-kernel VM of `make test-kernels`."""

    def __init__(self, netns=None):
        self.netns = netns

    def run(self, argv, check=True, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("universal_newlines", True)
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns] + list(argv)
        return subprocess.run(argv, check=check, **kwargs)


def run_local_module(module, args, python=INTERPRETERS["os-pyroute2-0.7"], netns=None, check=False, diff=True,
                     env=None):
    """One module run end to end on this machine's kernel (local connection, the installed collection
    in .build/collections, ``python`` as the managed host's interpreter); its result dict, as
    run_module returns it. ``netns``: run it inside that named network namespace."""
    return run_module(LocalHost(netns), module, args, python, check=check, diff=diff, env=env)
