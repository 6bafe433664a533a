# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wall time of playbooks/site.yml on 6, 12 and 24 sandbox hosts: first converge and no-op re-run.

    make collection molecule-setup
    image=$(CONTAINERS_CONF=... molecule/image/build-image.sh)
    CONTAINERS_CONF=/var/tmp/hostnet-molecule/containers.conf \\
    CONTAINERS_STORAGE_CONF=/var/tmp/hostnet-molecule/storage.conf \\
      .venv/bin/python bench/site.py --image $image [--hosts 6 12 24] [--forks 5 25] [--serial 100%]

Each size gets fresh sandbox hosts (systemd containers, tests/harness/sandbox.py; half `edge`, half
`batch`, the demo's two policies). For each forks value: a fresh sandbox, the first converge,
a no-op re-run, and the floor: a playbook with one `ping` task per host over the same connection,
measured in the same run. Prints seconds, seconds per host, and the ratio to the floor, and the
remote module runs per host of a no-op (one more no-op at -vvv, counting Ansible's "Using module
file" lines, one per module run on a host, and dividing by the hosts).
site.yml runs with `-e hostnet_serial=<--serial>` (default 100%: one batch, so forks decide how many
hosts run at once; the sandbox inventory's own `hostnet_serial: 2` would cap that at two).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.harness import sandbox  # noqa: E402

PING = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""


def module_runs(inventory, playbook, forks, hosts, extra=()):
    """Remote module runs per host of one run of ``playbook`` (Ansible says "Using module file" for each)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_FORKS=str(forks), ANSIBLE_NOCOLOR="1")
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-vvv", "-i", inventory, playbook] + list(extra)
    proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("%s -vvv failed (%d)" % (playbook, proc.returncode))
    return proc.stdout.count("Using module file") / float(hosts)


def play(inventory, playbook, forks, extra=()):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_FORKS=str(forks), ANSIBLE_NOCOLOR="1")
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory, playbook] + list(extra)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
        raise SystemExit("%s failed (%d)" % (playbook, proc.returncode))
    changed = sum(int(part.split("=")[1]) for line in proc.stdout.splitlines() if " changed=" in line
                  for part in line.split() if part.startswith("changed="))
    return elapsed, changed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="localhost/hostnet-systemd:bookworm")
    parser.add_argument("--hosts", type=int, nargs="+", default=[6, 12, 24])
    parser.add_argument("--forks", type=int, nargs="+", default=[5, 25])
    parser.add_argument("--serial", default="100%", help="hosts per site.yml batch (hostnet_serial)")
    args = parser.parse_args()
    site = os.path.join(REPO, "playbooks", "site.yml")
    inventory = sandbox.INVENTORY
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(PING)
        ping = f.name
    print("site.yml with hostnet_serial=%s; floor: one ping task per host (forks as given)" % args.serial)
    print("%5s %5s | %9s %9s | %9s %9s | %9s | %8s %8s | %s" % (
        "hosts", "forks", "first s", "s/host", "no-op s", "s/host", "ping s", "first/f", "no-op/f",
        "no-op module runs/host"))
    try:
        for hosts in args.hosts:
            for forks in args.forks:
                sandbox.up(hosts, args.image, inventory)
                try:
                    floor = play(inventory, ping, forks)[0]
                    serial = ["-e", "hostnet_serial=%s" % args.serial]
                    first, changed_first = play(inventory, site, forks, serial)
                    noop, changed_noop = play(inventory, site, forks, serial)
                    runs = module_runs(inventory, site, forks, hosts, serial)
                finally:
                    sandbox.down(inventory)
                if changed_first == 0 or changed_noop != 0:
                    raise SystemExit("unexpected: first run changed %d, no-op changed %d"
                                     % (changed_first, changed_noop))
                print("%5d %5d | %9.1f %9.2f | %9.1f %9.2f | %9.2f | %7.1fx %7.1fx | %.1f" % (
                    hosts, forks, first, first / hosts, noop, noop / hosts, floor, first / floor, noop / floor,
                    runs), flush=True)
    finally:
        os.unlink(ping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
