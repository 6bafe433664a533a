# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark hostnet.isolation.port_mapper against the floor and a peer, in one run.

    .venv/bin/python bench/port_mapper.py [--mappings 10000] [--peer-rules 40]

Inside a hermetic host (never the machine's own network namespace) it times, per backend:
  - converge of N mappings in one task, a no-op re-run, and changing 1 of N (ansible-playbook wall time,
    Ansible's own overhead included), and the module's apply step;
  - the floor: raw `nft -f` / `iptables-restore` of the very ruleset the module renders;
  - the peer: `ansible.builtin.iptables` in a loop (one DNAT rule per task), timed on --peer-rules
    rules and reported per rule;
  - new TCP connections per second through the last of N mappings vs through the only one of 1.
Figures are printed with their ratio to the floor or peer measured in the same run, since
absolute times drift on shared machines.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "plugins"))

from harness.hermetic import HermeticHost  # noqa: E402  pylint: disable=wrong-import-position
from harness.runner import INTERPRETERS, ansible_env, VENV_BIN  # noqa: E402  pylint: disable=wrong-import-position
from module_utils.portmap import NetworkState, PortMapperSpec  # noqa: E402  pylint: disable=wrong-import-position
from module_utils.portmap_ipt import IptablesBackend  # noqa: E402  pylint: disable=wrong-import-position
from module_utils.portmap_nft import NftablesBackend  # noqa: E402  pylint: disable=wrong-import-position

PYTHON = INTERPRETERS["os-pyroute2-0.7"]
HOST_IP = "192.0.2.1"
TOPOLOGY = r"""
set -e
sysctl -qw net.ipv4.ip_forward=1
ip link add br0 type bridge && ip addr add 10.88.0.1/24 dev br0 && ip link set br0 up
ip netns add c1 && ip link add hveth-c1 type veth peer name eth0 netns c1
ip link set hveth-c1 master br0 up
ip -n c1 addr add 10.88.0.2/24 dev eth0 && ip -n c1 link set eth0 up && ip -n c1 link set lo up
ip -n c1 route add default via 10.88.0.1
ip netns add client && ip link add hveth-cl type veth peer name eth0 netns client
ip addr add 192.0.2.1/24 dev hveth-cl && ip link set hveth-cl up
ip -n client addr add 192.0.2.2/24 dev eth0 && ip -n client link set eth0 up && ip -n client link set lo up
ip -n client route add default via 192.0.2.1
"""
SERVER = ("import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('0.0.0.0', 80)); s.listen(4096)\nwhile True:\n    c, _ = s.accept(); c.close()\n")
CLIENT = ("import socket, sys, time\nport = int(sys.argv[1]); n = 0; end = time.time() + float(sys.argv[2])\n"
          "while time.time() < end:\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, "
          "b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00')\n    s.connect(('192.0.2.1', port)); s.close(); n += 1\n"
          "print(n / float(sys.argv[2]))\n")


def mappings(count, first_port=20000):
    return [{"container_id": "c%d" % (i // 8), "container_ip": "10.88.0.2", "host_port": str(first_port + i),
             "container_port": "80"} for i in range(count)]


def playbook(host, workdir, name, tasks, extra_vars):
    path = os.path.join(workdir, name + ".yml")
    with open(path, "w") as f:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], f)
    vars_path = os.path.join(workdir, name + ".vars.json")
    with open(vars_path, "w") as f:
        json.dump(dict(extra_vars, ansible_python_interpreter=PYTHON), f)
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "json"})
    started = time.time()
    proc = host.run([os.path.join(VENV_BIN, "ansible-playbook"), "-c", "local", "-i", "localhost,", path,
                     "-e", "@" + vars_path], check=False, env=env)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit("%s failed:\n%s\n%s" % (name, proc.stdout[-3000:], proc.stderr[-3000:]))
    results = [h for p in json.loads(proc.stdout)["plays"] for t in p["tasks"] for h in t["hosts"].values()]
    return wall, results


def converge_task(backend):
    return [{"name": "map", "hostnet.isolation.port_mapper": {
        "network": "bench", "backend": backend, "exclusive": True, "mappings": "{{ pm_mappings }}"}}]


def floor(host, backend_name, count):
    """Seconds for the raw tool to load the same ruleset the module renders (best of 3)."""
    spec = PortMapperSpec(network="bench", mappings=mappings(count), backend=backend_name)
    state = NetworkState(exists=True, entries=spec.entries, hairpin=True)
    if backend_name == "nftables":
        text = NftablesBackend("/usr/sbin/nft").render(spec, state)
        argv = ["nft", "-f", "-"]
        reset = "nft delete table inet hostnet-pm-bench 2>/dev/null; true"
    else:
        backend = IptablesBackend("nft")
        text = backend.render(spec, state, 4, jumps={})
        argv = ["iptables-nft-restore", "--noflush"]
        reset = "iptables-nft -t nat -F; iptables-nft -t nat -X; true"
    best = None
    for _attempt in range(3):
        host.sh(reset)
        started = time.time()
        host.run(argv, input=text)
        took = time.time() - started
        best = took if best is None else min(best, took)
    host.sh(reset)
    return best


def conn_rate(host, port, seconds):
    return float(host.run(["ip", "netns", "exec", "client", "python3", "-c", CLIENT, str(port), str(seconds)])
                 .stdout.strip())


def peer_ansible_iptables(host, workdir, rules):
    """ansible.builtin.iptables, one DNAT rule per loop item (how it is used today)."""
    tasks = [{"name": "peer", "ansible.builtin.iptables": {
        "table": "nat", "chain": "PREROUTING", "protocol": "tcp", "destination_port": "{{ item }}",
        "jump": "DNAT", "to_destination": "10.88.0.2:80", "comment": "container_id: c{{ item }}"},
        "loop": "{{ range(30000, 30000 + n) | list }}"}]
    converge = playbook(host, workdir, "peer", tasks, {"n": rules})[0]
    noop = playbook(host, workdir, "peer", tasks, {"n": rules})[0]
    host.sh("iptables-nft -t nat -F PREROUTING")
    return converge / rules, noop / rules


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mappings", type=int, default=10000)
    parser.add_argument("--peer-rules", type=int, default=40)
    parser.add_argument("--conn-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    n = args.mappings
    host = HermeticHost("bench-pm").start()
    report = {}
    try:
        host.sh(TOPOLOGY)
        host.spawn(["python3", "-c", SERVER], netns="c1")
        with tempfile.TemporaryDirectory(dir=os.path.join(HERE, "..", ".build")) as workdir:
            per_rule, per_rule_noop = peer_ansible_iptables(host, workdir, args.peer_rules)
            report["peer ansible.builtin.iptables"] = {"per_rule_s": round(per_rule, 3),
                                                       "noop_per_rule_s": round(per_rule_noop, 3)}
            # Ansible's own cost of a play that loads the same variable and uses it in a trivial task
            baseline = playbook(host, workdir, "baseline", [{"name": "count", "ansible.builtin.set_fact": {
                "pm_count": "{{ pm_mappings | length }}"}}], {"pm_mappings": mappings(n)})[0]
            report["ansible baseline"] = {"load_var_and_set_fact_s": round(baseline, 2)}
            for backend in ("nftables", "iptables"):
                row = {}
                wall, res = playbook(host, workdir, "converge", converge_task(backend), {"pm_mappings": mappings(n)})
                row["converge_s"], row["converge_apply_s"] = round(wall, 2), res[0]["timings"]["apply"]
                row["backend"] = res[0]["backend"]
                wall, res = playbook(host, workdir, "noop", converge_task(backend), {"pm_mappings": mappings(n)})
                assert res[0]["changed"] is False
                row["noop_s"] = round(wall, 2)
                changed = mappings(n)
                changed[-1]["container_port"] = "81"
                wall, res = playbook(host, workdir, "change1", converge_task(backend), {"pm_mappings": changed})
                row["change1_s"], row["change1_apply_s"] = round(wall, 2), res[0]["timings"]["apply"]
                playbook(host, workdir, "restore", converge_task(backend), {"pm_mappings": mappings(n)})
                row["conn_per_s_last_of_n"] = round(conn_rate(host, 20000 + n - 1, args.conn_seconds))
                playbook(host, workdir, "one", converge_task(backend), {"pm_mappings": mappings(1)})
                row["conn_per_s_one_of_1"] = round(conn_rate(host, 20000, args.conn_seconds))
                playbook(host, workdir, "clear", [{"name": "clear", "hostnet.isolation.port_mapper": {
                    "network": "bench", "backend": backend, "state": "absent"}}], {})
                row["floor_s"] = round(floor(host, backend, n), 3)
                row["apply_vs_floor"] = round(row["converge_apply_s"] / row["floor_s"], 2)
                row["converge_vs_peer_loop"] = round(row["converge_s"] / (per_rule * n), 4)
                row["noop_vs_peer_loop"] = round(row["noop_s"] / (per_rule_noop * n), 4)
                row["conn_rate_ratio_last_vs_one"] = round(row["conn_per_s_last_of_n"] / row["conn_per_s_one_of_1"], 2)
                row["noop_vs_ansible_baseline"] = round(row["noop_s"] / baseline, 2)
                report[backend] = row
    finally:
        host.stop()
    print(json.dumps(report, indent=2))
    print("\nport_mapper, %d mappings in one task (wall incl. Ansible; ratios to floor/peer of this run):" % n)
    for backend in ("nftables", "iptables"):
        r = report[backend]
        print("  %-8s (%s) converge %.2fs  no-op %.2fs  change-1 %.2fs | apply %.3fs = %.2fx floor (%.3fs) | "
              "vs ansible.builtin.iptables loop: converge %.4fx, no-op %.4fx | new TCP conn/s last-of-%d %d vs "
              "one-of-1 %d (%.2fx)" % (
                  backend, r["backend"], r["converge_s"], r["noop_s"], r["change1_s"], r["converge_apply_s"],
                  r["apply_vs_floor"], r["floor_s"], r["converge_vs_peer_loop"], r["noop_vs_peer_loop"], n,
                  r["conn_per_s_last_of_n"], r["conn_per_s_one_of_1"], r["conn_rate_ratio_last_vs_one"]))
    print("  Ansible baseline (load the same %d-item variable, one set_fact): %.2fs; no-op = %.2fx / %.2fx of it"
          % (n, report["ansible baseline"]["load_var_and_set_fact_s"], report["nftables"]["noop_vs_ansible_baseline"],
             report["iptables"]["noop_vs_ansible_baseline"]))
    peer = report["peer ansible.builtin.iptables"]
    print("  peer ansible.builtin.iptables: %.3fs per rule converge, %.3fs per rule no-op (%d rules)"
          % (peer["per_rule_s"], peer["noop_per_rule_s"], args.peer_rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
