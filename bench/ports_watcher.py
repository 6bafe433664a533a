# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ports-watcher scan over many listening sockets in many task cgroups, against `ss`.

    make watcher && .venv/bin/python bench/ports_watcher.py [--tasks 1000] [--sockets-per-task 10]

Inside a hermetic host (its own network namespace), ``--tasks`` cgroup v2 directories each get
``--sockets-per-task`` TCP listeners. Ten holder processes create them: a socket belongs to the
cgroup its creator was in when it was made, so each holder moves through a tenth of the cgroups,
making that cgroup's sockets as it passes. The watcher then scans with every task in its policy
(one unassigned port per task, so every task is in violation and reported). Either cgroup layout
will do: the machine's cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host)
is found by the core's detection.

Printed: the watcher's in-process scan (wall and CPU) and the whole ``--once`` run (Python start-up
and policy load included, and its peak RSS), next to ``ss -tln`` (the netlink floor) and
``ss -tlnp`` (which walks /proc for owners, as a /proc-based attribution must), all measured in
the same namespace in the same run; medians of ``--repeat`` runs.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import textwrap
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "plugins"))

from harness.hermetic import HermeticHost  # noqa: E402  pylint: disable=wrong-import-position
from module_utils import cgroups  # noqa: E402  pylint: disable=wrong-import-position

WATCHER = os.path.join(REPO, ".build", "watcher", "hostnet-ports-watcher")

HOLDER = textwrap.dedent(r"""
    import os, socket, sys, time
    base, first, last, per, port0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    keep = []
    for task in range(first, last):
        with open("%s/t%d/cgroup.procs" % (base, task), "w") as f:
            f.write(str(os.getpid()))
        for k in range(per):
            s = socket.socket()
            s.bind(("127.0.0.1", port0 + task * per + k))
            s.listen(1)
            keep.append(s)
    with open("%s/holder-%d.ready" % ("/run", first), "w") as f:
        f.write("ok")
    time.sleep(3600)
""")


def timed(host, argv):
    start = time.perf_counter()
    proc = host.run(argv)
    return time.perf_counter() - start, proc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--sockets-per-task", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of a --once run and stop")
    args = parser.parse_args()
    if not os.path.exists(WATCHER):
        sys.exit("build the watcher first: make watcher")
    machine_root = cgroups.cgroup2_root()  # /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host
    if machine_root is None:
        sys.exit("needs cgroup v2: this host has no cgroup2 mounted (cgroup mode %s)" % cgroups.host_layout()["mode"])
    base_name = "hn-bench-%s" % uuid.uuid4().hex[:8]
    outer = os.path.join(machine_root, base_name)
    os.mkdir(outer)
    for t in range(args.tasks):
        os.mkdir(os.path.join(outer, "t%d" % t))
    host = HermeticHost("hn-bench-watch").start()
    try:
        host.sh("mount -t cgroup2 none /sys/fs/cgroup && cat > /run/holder.py <<'EOF'\n%sEOF" % HOLDER)
        inner = "/sys/fs/cgroup/%s" % base_name
        holders = 10
        step = (args.tasks + holders - 1) // holders
        port0 = 10000
        for h in range(holders):
            first, last = h * step, min(args.tasks, (h + 1) * step)
            host.spawn(["python3", "/run/holder.py", inner, str(first), str(last), str(args.sockets_per_task),
                        str(port0)])
        deadline = time.time() + 120
        while len(host.sh("ls /run/holder-*.ready 2>/dev/null || true").stdout.split()) < holders:
            if time.time() > deadline:
                raise SystemExit("holders did not start")
            time.sleep(0.2)
        tasks = [{"name": "t%d" % t, "cgroup": "%s/t%d" % (base_name, t),
                  "ports": "%d-%d" % (port0 + t * args.sockets_per_task,
                                      port0 + t * args.sockets_per_task + args.sockets_per_task - 2)}
                 for t in range(args.tasks)]
        config = {"mode": "audit", "cgroup_root": "/sys/fs/cgroup", "syslog": False, "tasks": tasks}
        host.sh("cat > /run/watcher.json <<'EOF'\n%s\nEOF" % json.dumps(config))
        if args.profile:
            code = ("import sys, cProfile; sys.path.insert(0, %r); from hostnet_core.watcher import main; "
                    "cProfile.run('main([\"--config\", \"/run/watcher.json\", \"--once\"])', sort='tottime')"
                    % WATCHER)
            print("\n".join(host.run(["/usr/bin/python3", "-c", code]).stdout.split("Ordered by")[1].splitlines()[:28]))
            return
        # the daemon's steady state: one process, a first scan (logs every violation, sweeps filters), then scans
        steady = ("import json, sys, time; sys.path.insert(0, %r)\n"
                  "from hostnet_core.watcher import Watcher, load_config\n"
                  "w = Watcher(load_config('/run/watcher.json')); first = w.scan()\n"
                  "out = []\n"
                  "for _ in range(%d):\n"
                  "    r = w.scan(); out.append((r['scan_seconds'], r['scan_cpu_seconds']))\n"
                  "print(json.dumps({'first': first['scan_seconds'], 'runs': out}))\n" % (WATCHER, args.repeat))
        daemon = json.loads(host.run(["/usr/bin/python3", "-c", steady]).stdout)
        runs = {"scan": [r[0] for r in daemon["runs"]], "scan_cpu": [r[1] for r in daemon["runs"]],
                "once": [], "ss -tln": [], "ss -tlnp": []}
        rss = []
        listeners = violations = None
        for _run in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            wall, proc = timed(host, ["/usr/bin/python3", WATCHER, "--config", "/run/watcher.json", "--once",
                                      "--json"])
            rss.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss or before)
            report = json.loads(proc.stdout)
            listeners, violations = report["listeners"], len(report["violations"])
            runs["once"].append(wall)
            for tool, argv in (("ss -tln", ["ss", "-tln"]), ("ss -tlnp", ["ss", "-tlnp"])):
                wall, proc = timed(host, argv)
                runs[tool].append(wall)
        med = dict((k, statistics.median(v)) for k, v in runs.items())
        print("ports watcher scan: %d tasks, %d listening sockets, %d tasks in violation (median of %d)"
              % (args.tasks, listeners, violations, args.repeat))
        print("  cgroup layout: %s (the machine's cgroup2 at %s)" % (cgroups.host_layout()["mode"], machine_root))
        print("  %-34s %8.1f ms" % ("daemon's first scan (wall)", daemon["first"] * 1e3))
        print("  %-34s %8.1f ms" % ("daemon's later scans (wall)", med["scan"] * 1e3))
        print("  %-34s %8.1f ms" % ("daemon's later scans (CPU)", med["scan_cpu"] * 1e3))
        print("  %-34s %8.1f ms" % ("watcher --once (whole process)", med["once"] * 1e3))
        print("  %-34s %8.1f ms" % ("ss -tln (netlink floor)", med["ss -tln"] * 1e3))
        print("  %-34s %8.1f ms" % ("ss -tlnp (adds the /proc walk)", med["ss -tlnp"] * 1e3))
        print("  scan / ss -tln:  %.2fx   (target: within 3x)" % (med["scan"] / med["ss -tln"]))
        print("  ss -tlnp / scan: %.2fx   (target: at least 3x)" % (med["ss -tlnp"] / med["scan"]))
        print("  peak RSS of a --once run: %.1f MB (target: under 60 MB; includes every child "
              "process measured so far, so an upper bound)" % (max(rss) / 1024.0))
    finally:
        host.stop()
        for t in range(args.tasks):
            path = os.path.join(outer, "t%d" % t)
            if os.path.isdir(path):
                os.rmdir(path)
        os.rmdir(outer)


if __name__ == "__main__":
    main()
