# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CNI ADD latency of hostnet-cni-port-mapper against Debian's CNI `portmap`, in one run.

    make cni-plugin && .venv/bin/python bench/cni_add.py [--existing 0,1000,10000] [--adds 40]

Both plugins are driven the same way a runtime chains them: CNI_* variables and a configuration
with ``prevResult`` and ``runtimeConfig.portMappings`` (one TCP mapping per container) on stdin.
For each count of existing mappings, each plugin gets a fresh hermetic host (its own network
namespace, never the machine's own) holding that many mappings of other containers, then
``--adds`` new containers are added one after another and every ADD's wall time is recorded.

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

# Runs inside the hermetic host: times each ADD as a runtime sees it (fork, exec, wait).
DRIVER = textwrap.dedent(r"""
    import json, os, subprocess, sys, time
    plugin, name, first, count, existing = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    times = []
    for i in range(count):
        port = first + i
        ip = "10.%d.%d.%d" % (100 + port // 62500, port // 250 % 250, port % 250 + 2)
        conf = {"cniVersion": "1.0.0", "name": name, "type": os.path.basename(plugin),
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]},
                "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                               "ips": [{"address": ip + "/8", "interface": 0}]}}
        env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="bench%d" % port, CNI_NETNS="/run/netns/x",
                   CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        start = time.perf_counter()
        proc = subprocess.run([plugin], input=json.dumps(conf), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit("ADD %d failed: %s %s" % (port, proc.stdout, proc.stderr))
    floor = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "pass"])
        floor.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "floor": floor}))
""")

PRELOAD_OURS = textwrap.dedent(r"""
    import sys
    sys.path.insert(0, sys.argv[1])
    from module_utils.portmap import PortMapperSpec
    from module_utils.port_mapper import converge_port_mapper
    n = int(sys.argv[2])
    mappings = [{"container_id": "old%d" % (i // 4), "container_ip": "10.200.%d.%d" % (i // 4 // 250, i // 4 % 250 + 2),
                 "host_port": 30000 + i, "container_port": 80} for i in range(n)]
    converge_port_mapper(PortMapperSpec("bench", mappings=mappings))
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
        if plugin == PLUGIN and existing:
            host.run(["/usr/bin/python3", "-c", PRELOAD_OURS, os.path.join(REPO, "plugins"), str(existing)])
        elif existing:
            host.run(["iptables-restore", "--noflush"], input=portmap_state(existing), text=True)
        driver = os.path.join(workdir, "driver.py")
        with open(driver, "w") as f:
            f.write(DRIVER)
        out = host.run(["/usr/bin/python3", driver, plugin, "bench", str(FIRST_PORT), str(adds), str(existing)],
                       stdout=subprocess.PIPE, text=True).stdout
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
    print("ADD latency, %d ADDs per row (ms); floor = starting the OS Python with nothing to do" % args.adds)
    print("%9s  %-24s %7s %7s %7s   %s" % ("existing", "plugin", "p50", "p95", "floor", "p50 vs portmap"))
    ours_p50 = {}
    for existing in [int(n) for n in args.existing.split(",")]:
        row = {}
        for name, plugin in (("hostnet-cni-port-mapper", PLUGIN), ("portmap (Debian)", PORTMAP)):
            result = measure(plugin, existing, args.adds, workdir)
            row[name] = (pct(result["times"], 0.5) * 1000, pct(result["times"], 0.95) * 1000,
                         statistics.median(result["floor"]) * 1000)
        for name, (p50, p95, floor) in row.items():
            ratio = p50 / row["portmap (Debian)"][0]
            print("%9d  %-24s %7.1f %7.1f %7.1f   %.2fx" % (existing, name, p50, p95, floor, ratio))
        ours_p50[existing] = row["hostnet-cni-port-mapper"][0]
        sys.stdout.flush()
    counts = sorted(ours_p50)
    if len(counts) > 1:
        growth = ours_p50[counts[-1]] / ours_p50[counts[0]] - 1
        print("hostnet-cni-port-mapper p50 growth from %d to %d existing: %+.0f%%"
              % (counts[0], counts[-1], growth * 100))


if __name__ == "__main__":
    main()
