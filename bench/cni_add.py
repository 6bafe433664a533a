# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CNI ADD, CHECK, GC and DEL latency of hostnet-cni-port-mapper against Debian's CNI `portmap`, in one run.

    make cni-plugin && .venv/bin/python bench/cni_add.py [--existing 0,1000,10000] [--adds 40]

Both plugins are driven the same way a runtime chains them: CNI_* variables and a configuration
with ``prevResult`` and ``runtimeConfig.portMappings`` (one TCP and one UDP mapping per container,
as the issue measured DEL) on stdin. For each count of existing mappings, each plugin gets a fresh
hermetic host (its own network namespace, never the machine's own) holding that many mappings of
other containers; then ``--adds`` new containers are added one after another, CHECKed, GCed and
DELeted, and every call's wall time (fork, exec, wait, as a runtime sees it) is recorded.

ADD, CHECK and DEL use cniVersion 1.0.0, the newest Debian's portmap (1.1.1) accepts; GC needs
1.1.0, which that portmap does not speak, so GC has no peer and is shown against the floor only.
Each GC lists every container on the host as valid (a GC that removes nothing: the steady state).
Every DEL carries ``prevResult`` as libcni sends it when it has a cached result. Debian's portmap
1.1.1 answers every CHECK with an error where ip6tables exists (it looks for the container's IPv4
rules in the IPv6 table); its CHECK is timed anyway and the row says it failed.

Existing mappings are loaded the quick way, in the state each plugin itself leaves behind: for
ours through the port_mapper core (the table the plugin's ADDs grow); for portmap as the
per-container chains and jump rules its ADD writes, through one iptables-restore.
The floor is the time to start the OS Python with nothing to do, measured in the same run.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from harness.hermetic import HermeticHost  # noqa: E402  pylint: disable=wrong-import-position

PLUGIN = os.path.join(REPO, ".build", "cni", "hostnet-cni-port-mapper")
PORTMAP = "/usr/lib/cni/portmap"
FIRST_PORT = 20000
COMMANDS = ("ADD", "CHECK", "GC", "DEL")

# Runs inside the hermetic host: times each call as a runtime sees it (fork, exec, wait).
DRIVER = textwrap.dedent(r"""
    import json, os, subprocess, sys, time
    params = json.load(open(sys.argv[1]))
    plugin, name, first, count = params["plugin"], params["name"], params["first"], params["count"]

    def conf(port, version="1.0.0"):
        ip = "10.%d.%d.%d" % (100 + port // 62500, port // 250 % 250, port % 250 + 2)
        return {"cniVersion": version, "name": name, "type": os.path.basename(plugin),
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                                                   {"hostPort": port, "containerPort": 53, "protocol": "udp"}]},
                "prevResult": {"cniVersion": version, "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                               "ips": [{"address": ip + "/8", "interface": 0}]}}

    failed = {}

    def call(command, config, cid):
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS="/run/netns/x",
                   CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        start = time.perf_counter()
        proc = subprocess.run([plugin], input=json.dumps(config), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            if command != "CHECK" or not params["check_may_fail"]:
                sys.exit("%s %s failed: %s %s" % (command, cid, proc.stdout, proc.stderr))
            failed.setdefault(command, (proc.stdout or proc.stderr).strip()[:300])
        return took

    times = {"ADD": [], "CHECK": [], "GC": [], "DEL": []}
    ports = range(first, first + count)
    for port in ports:
        times["ADD"].append(call("ADD", conf(port), "bench%d" % port))
    for port in ports:
        times["CHECK"].append(call("CHECK", conf(port), "bench%d" % port))
    if params["gc"]:
        valid = [{"containerID": cid, "ifname": "eth0"} for cid in params["existing_ids"]]
        valid += [{"containerID": "bench%d" % port, "ifname": "eth0"} for port in ports]
        gc = {"cniVersion": "1.1.0", "name": name, "type": os.path.basename(plugin),
              "cni.dev/valid-attachments": valid}
        for port in ports:
            times["GC"].append(call("GC", gc, ""))
    for port in ports:
        times["DEL"].append(call("DEL", conf(port), "bench%d" % port))
    floor = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "pass"])
        floor.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "floor": floor, "failed": failed}))
""")

PRELOAD_OURS = textwrap.dedent(r"""
    import sys
    sys.path.insert(0, sys.argv[1])
    from module_utils.portmap import PortMapperSpec
    from module_utils.port_mapper import converge_port_mapper
    n = int(sys.argv[2])
    mappings = [{"container_id": "old%d" % (i // 4), "container_ip": "10.200.%d.%d" % (i // 4 // 250, i // 4 % 250 + 2),
                 "host_port": 30000 + i, "container_port": 80} for i in range(n)]
    # the options the plugin's own chained ADDs give this network (snat: the /8 of prevResult, no host-side device)
    converge_port_mapper(PortMapperSpec("bench", mappings=mappings, localhost=True, hairpin_prefix=(8, 128),
                                        localhost_devices=[]))
""")


def portmap_state(count):
    """iptables-restore input with the chains portmap's own ADD writes, for ``count`` containers."""
    lines = ["*nat", ":CNI-HOSTPORT-DNAT - [0:0]", ":CNI-HOSTPORT-MASQ - [0:0]", ":CNI-HOSTPORT-SETMARK - [0:0]",
             "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
             "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
             '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
             "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
             '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK '
             '--set-xmark 0x2000/0x2000']
    for i in range(count):
        cid, port, ip = "old%d" % i, 30000 + i, "10.200.%d.%d" % (i // 250, i % 250 + 2)
        chain = "CNI-DN-" + hashlib.sha512(("bench" + cid).encode()).hexdigest()[:21]
        lines.insert(1, ":%s - [0:0]" % chain)
        lines += ["-A %s -s 10.0.0.0/8 -p tcp -m tcp --dport %d -j CNI-HOSTPORT-SETMARK" % (chain, port),
                  "-A %s -s 127.0.0.1/32 -p tcp -m tcp --dport %d -j CNI-HOSTPORT-SETMARK" % (chain, port),
                  "-A %s -p tcp -m tcp --dport %d -j DNAT --to-destination %s:80" % (chain, port, ip),
                  '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"bench\\" id: \\"%s\\"" '
                  "-m multiport --dports %d -j %s" % (cid, port, chain)]
    return "\n".join(lines + ["COMMIT", ""])


def measure(plugin, existing, adds, workdir):
    host = HermeticHost("hn-bench-cni-%d" % os.getpid()).start()
    try:
        host.sh("mkdir -p /run/netns")
        if plugin == PLUGIN:
            existing_ids = sorted(set("old%d" % (i // 4) for i in range(existing)))
            if existing:
                host.run(["/usr/bin/python3", "-c", PRELOAD_OURS, os.path.join(REPO, "plugins"), str(existing)])
        else:
            existing_ids = ["old%d" % i for i in range(existing)]
            if existing:
                host.run(["iptables-restore", "--noflush"], input=portmap_state(existing), text=True)
        params = os.path.join(workdir, "params.json")
        with open(params, "w") as f:
            json.dump({"plugin": plugin, "name": "bench", "first": FIRST_PORT, "count": adds,
                       "gc": plugin == PLUGIN, "check_may_fail": plugin == PORTMAP, "existing_ids": existing_ids}, f)
        driver = os.path.join(workdir, "driver.py")
        with open(driver, "w") as f:
            f.write(DRIVER)
        out = host.run(["/usr/bin/python3", driver, params], stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out)
    finally:
        host.stop()


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", default="0,1000,10000")
    parser.add_argument("--adds", type=int, default=40)
    args = parser.parse_args()
    if not os.access(PLUGIN, os.X_OK):
        sys.exit("build the plugin first: make cni-plugin")
    workdir = os.path.join(REPO, ".build", "bench")
    os.makedirs(workdir, exist_ok=True)
    print("CNI call latency, %d calls per command and row (ms); floor = starting the OS Python with nothing to do"
          % args.adds)
    header = ("existing", "cmd", "plugin", "p50", "p90", "floor", "vs portmap", "vs floor")
    print("%9s  %-6s %-24s %8s %8s %7s  %10s %9s" % header)
    ours_p50 = {}
    for existing in [int(n) for n in args.existing.split(",")]:
        runs = {"ours": measure(PLUGIN, existing, args.adds, workdir),
                "portmap": measure(PORTMAP, existing, args.adds, workdir)}
        for command in COMMANDS:
            figures = {}
            for who, result in runs.items():
                if result["times"][command]:
                    times = result["times"][command]
                    figures[who] = (pct(times, 0.5) * 1000, pct(times, 0.9) * 1000,
                                    statistics.median(result["floor"]) * 1000)
            for who, label in (("ours", "hostnet-cni-port-mapper"), ("portmap", "portmap (Debian)")):
                if who not in figures:
                    print("%9d  %-6s %-24s %8s %8s %7s  %10s %9s" % (existing, command, label, "-", "-", "-",
                                                                     "", "(no %s)" % command))
                    continue
                p50, p90, floor = figures[who]
                peer = "%.2fx" % (p50 / figures["portmap"][0]) if "portmap" in figures else "-"
                failed = runs[who]["failed"].get(command)
                print("%9d  %-6s %-24s %8.1f %8.1f %7.1f  %10s %8.2fx%s" % (
                    existing, command, label, p50, p90, floor, peer, p50 / floor,
                    "  (answered an error: %s)" % " ".join(failed.split())[:120] if failed else ""))
            ours_p50[(existing, command)] = figures["ours"][0]
        sys.stdout.flush()
    counts = sorted(set(n for n, _c in ours_p50))
    if len(counts) > 1:
        for command in COMMANDS:
            growth = ours_p50[(counts[-1], command)] / ours_p50[(counts[0], command)] - 1
            print("hostnet-cni-port-mapper %s p50 growth from %d to %d existing: %+.0f%%"
                  % (command, counts[0], counts[-1], growth * 100))


if __name__ == "__main__":
    main()
