# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host_network module with a large policy, against Ansible's own cost of the same variable.

    .venv/bin/python bench/host_network.py [--mappings 10000] [--backend nftables]

Inside a hermetic host (never the machine's own network namespace): one host_network task whose
policy holds a namespace, a veth pair and a port mapper network of N mappings; its first converge,
its no-op re-run (best of 3), and the baseline measured in the same run: a play that loads the same
policy variable and uses it in one set_fact (best of 3). Prints the no-op's ratio to the baseline,
and the module's own time split (policy check, plan and apply) from its result.
"""

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import port_mapper as pm_bench  # noqa: E402  pylint: disable=wrong-import-position
from harness.hermetic import HermeticHost  # noqa: E402  pylint: disable=wrong-import-position


def policy(count):
    return {"agent_ports": "20000-%d" % (20000 + count + 1000),
            "tasks": [{"name": "bench", "ports": "20000-%d" % (20000 + count - 1)}],
            "namespaces": [{"name": "hn-bench"}],
            "veths": [{"name": "veth-bench", "peer": "eth0", "peer_netns": "hn-bench",
                       "addresses": ["10.89.0.1/30"], "peer_addresses": ["10.89.0.2/30"]}],
            "port_mappers": [{"network": "bench", "backend": "nftables",
                              "mappings": [dict(m, task="bench") for m in pm_bench.mappings(count)]}]}


TASK = [{"name": "converge", "hostnet.isolation.host_network": {"policy": "{{ hn_policy }}", "host": "bench"}}]
BASELINE = [{"name": "count", "ansible.builtin.set_fact": {
    "hn_count": "{{ hn_policy.port_mappers[0].mappings | length }}"}}]


def best(host, workdir, name, tasks, extra, runs=3):
    out = None
    for _attempt in range(runs):
        wall, results = pm_bench.playbook(host, workdir, name, tasks, extra)
        out = (wall, results) if out is None or wall < out[0] else out
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mappings", type=int, default=10000)
    parser.add_argument("--backend", default="nftables", choices=["nftables", "iptables"])
    args = parser.parse_args(argv)
    value = policy(args.mappings)
    value["port_mappers"][0]["backend"] = args.backend
    extra = {"hn_policy": value}
    host = HermeticHost("bench-hn").start()
    try:
        with tempfile.TemporaryDirectory(dir=os.path.join(HERE, "..", ".build")) as workdir:
            baseline = best(host, workdir, "baseline", BASELINE, extra)[0]
            first, results = pm_bench.playbook(host, workdir, "first", TASK, extra)
            assert results[0]["changed"] is True, results[0]
            noop, results = best(host, workdir, "noop", TASK, extra)
            assert results[0]["changed"] is False, results[0].get("changes")
            timings = results[0]["parts"]["port_mappers"][0].get("timings", {})
    finally:
        host.stop()
    report = {"mappings": args.mappings, "backend": args.backend, "baseline_s": round(baseline, 2),
              "first_s": round(first, 2), "noop_s": round(noop, 2), "noop_vs_baseline": round(noop / baseline, 2),
              "port_mapper_timings_s": timings}
    print(json.dumps(report, indent=2))
    print("\nhost_network, a policy of %d mappings (%s): first %.2fs, no-op %.2fs = %.2fx Ansible's baseline of "
          "loading the same variable (%.2fs, one set_fact), best of 3 each"
          % (args.mappings, args.backend, first, noop, noop / baseline, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
