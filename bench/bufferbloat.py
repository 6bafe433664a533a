# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Latency under load behind an htb rate limit: a pfifo leaf against an fq_codel leaf.

    .venv/bin/python bench/bufferbloat.py [--kernel 6.12-amd64] [--count 60] [--interval 0.1]

Three fresh network namespaces: a container ``c``, a router ``a`` (IP forwarding on) and a peer
``b``, joined c -- a -- b by veths. The collection's own qdisc core (``tc.QdiscSpec`` +
``tc.converge``, what the ``qdisc`` module runs) puts an htb of 20 Mbit/s on a's veth toward b,
with a pfifo leaf (limit 1000), then with an fq_codel leaf (its defaults). For two paths through
that qdisc:

- local: traffic the host itself sends, a -> b;
- forwarded: traffic a container sends through the host, c -> a -> b (no TCP small queues on the
  host's qdisc for it, so a FIFO fills further);

``--count`` pings at ``--interval`` go the same way while one iperf3 TCP flow saturates the
limit (pings start after ``--warmup`` seconds of it, and its throughput is counted after them
too), and once with no load. Printed: ping RTT p50/p95 per leaf, their ratio pfifo / fq_codel, and
iperf3's received throughput as a share of the limit, with the qdisc's backlog sampled mid-run.
Exits 1 when a target of issue #20 is missed: fq_codel's p95 under load at least 5x lower than
pfifo's, and throughput at least 90% of the limit with either leaf, on both paths.

sch_fq_codel is needed: on a kernel without it (the build host's) the script runs itself again
inside a VM on Debian's kernel (``tests/harness/kernel_vm.sh``, else the script ``$KERNEL_VM``
names), where ``--kernel`` is passed on. ``--here`` measures on the running kernel.
"""

import argparse
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "plugins"))

from module_utils import capabilities, qdisc as tc  # noqa: E402  pylint: disable=wrong-import-position

KERNEL_VM = os.path.join(REPO, "tests", "harness", "kernel_vm.sh")
RATE = "20mbit"
RATE_BITS = 20 * 10 ** 6
PFIFO_LIMIT = 1000
P95_TARGET = 5.0  # fq_codel's p95 at least this many times lower than pfifo's
SHARE_TARGET = 0.90  # iperf3 throughput as a share of the htb rate, with either leaf
PORT = 5201

LOCAL = {"name": "local", "what": "a -> b, sent by the host itself", "src": "a", "dst": "10.71.0.2"}
FORWARDED = {"name": "forwarded", "what": "c -> a -> b, sent by a container, forwarded by the host",
             "src": "c", "dst": "10.71.0.2"}


class Topology:
    """c (10.72.0.2) -- (10.72.0.1) a (10.71.0.1) -- b (10.71.0.2); a forwards. Named hn-bloat-<pid>-*."""

    def __init__(self):
        prefix = "hn-bloat-%d-" % os.getpid()
        self.ns = {k: prefix + k for k in "abc"}
        self.shaped = "vab"  # a's veth toward b: the qdisc under test
        self.procs = []

    def ip(self, *args):
        subprocess.run(["ip"] + list(args), check=True, capture_output=True, text=True)

    def netns_argv(self, ns, argv):
        return ["ip", "netns", "exec", self.ns[ns]] + list(argv)

    def up(self):
        a, b, c = self.ns["a"], self.ns["b"], self.ns["c"]
        for ns in (a, b, c):
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("link", "add", "vab", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        self.ip("link", "add", "vac", "netns", a, "type", "veth", "peer", "name", "vc", "netns", c)
        for ns, dev, addr in ((a, "vab", "10.71.0.1/24"), (b, "vb", "10.71.0.2/24"),
                              (a, "vac", "10.72.0.1/24"), (c, "vc", "10.72.0.2/24")):
            self.ip("-n", ns, "addr", "add", addr, "dev", dev)
            self.ip("-n", ns, "link", "set", dev, "up")
        self.ip("-n", c, "route", "add", "default", "via", "10.72.0.1")
        self.ip("-n", b, "route", "add", "10.72.0.0/24", "via", "10.71.0.1")
        subprocess.run(self.netns_argv("a", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]), check=True)
        return self

    def spawn(self, ns, argv):
        proc = subprocess.Popen(self.netns_argv(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def down(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def percentile(values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def ping(topo, path, args):
    """Start ``--count`` pings along ``path``; returns a function that waits and gives (rtts ms, sent)."""
    proc = topo.spawn(path["src"], ["ping", "-n", "-i", str(args.interval), "-c", str(args.count), "-W", "5",
                                    path["dst"]])

    def result():
        out, err = proc.communicate()
        rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", out)]
        if not rtts:
            raise SystemExit("no ping replies on the %s path: %s" % (path["name"], (err or out).strip()))
        return rtts, args.count
    return result


def spec(topo, leaf):
    options = {"limit": PFIFO_LIMIT} if leaf == "pfifo" else {}
    return tc.QdiscSpec(device=topo.shaped, netns=topo.ns["a"], kind="htb", rate=RATE, leaf=leaf, **options)


def root_stats(topo, leaf):
    """The root htb's counters, read through the core (a check-mode converge: nothing changes)."""
    return tc.converge(spec(topo, leaf), check_mode=True)["statistics"].get("qdisc", {})


def under_load(topo, path, leaf, args):
    seconds = load_seconds(args)
    iperf = topo.spawn(path["src"], ["iperf3", "-c", path["dst"], "-p", str(PORT), "-J", "-t", "%g" % seconds,
                                     "-O", "%g" % args.warmup])
    before = root_stats(topo, leaf)
    time.sleep(args.warmup)
    pings = ping(topo, path, args)
    samples = []

    def sample():
        for _fifth in range(4):  # the backlog at 1/5 .. 4/5 of the pings
            time.sleep(args.count * args.interval / 5)
            stats = root_stats(topo, leaf)
            samples.append((stats.get("backlog", 0), stats.get("qlen", 0)))
    sampler = threading.Thread(target=sample)
    sampler.start()
    rtts, sent = pings()
    sampler.join()
    out, err = iperf.communicate()
    after = root_stats(topo, leaf)
    try:
        report = json.loads(out)
    except ValueError:
        raise SystemExit("iperf3 on the %s path gave no report: %s" % (path["name"], err.strip()))
    if "error" in report:
        raise SystemExit("iperf3 on the %s path: %s" % (path["name"], report["error"]))
    cpu = report["end"].get("cpu_utilization_percent", {})
    return {"rtts": rtts, "sent": sent, "bits": report["end"]["sum_received"]["bits_per_second"],
            "retransmits": report["end"]["sum_sent"].get("retransmits", 0),
            "cpu_sender": cpu.get("host_total", 0.0), "cpu_receiver": cpu.get("remote_total", 0.0),
            "drops": after.get("drops", 0) - before.get("drops", 0), "backlog": max(samples or [(0, 0)]),
            "iperf_seconds": seconds}


def load_seconds(args):
    """iperf3 -t: the warm-up, the pings, and a margin for the last replies to come back."""
    return args.warmup + args.count * args.interval + 1.5


def wait_listening(topo):
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(topo.netns_argv("b", ["ss", "-Htln", "sport = :%d" % PORT]), check=True,
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.2)
    raise SystemExit("iperf3 -s did not start listening in namespace b")


def row(label, rtts, sent, extra=""):
    return "| %s | %.2f | %.2f | %d/%d |%s" % (label, percentile(rtts, 50), percentile(rtts, 95),
                                               sent - len(rtts), sent, extra)


def measure(args):
    kernel = os.uname().release
    for kind in ("htb", "pfifo", "fq_codel"):
        missing = capabilities.qdisc_unsupported(kind)
        if missing:
            raise SystemExit("kernel %s: %s" % (kernel, missing))
    print("kernel %s, %d CPUs; htb %s on the router's veth toward b; %d pings at %g s after %g s of "
          "iperf3 -t %g -O %g (TCP, one flow)" % (kernel, os.cpu_count(), RATE, args.count, args.interval,
                                                  args.warmup, load_seconds(args),
                                                  args.warmup), flush=True)
    started = time.time()
    topo = Topology()
    failures = []
    try:
        topo.up()
        topo.spawn("b", ["iperf3", "-s", "-p", str(PORT)])
        wait_listening(topo)
        for path in (LOCAL, FORWARDED):
            print("\n%s path (%s):\n" % (path["name"], path["what"]))
            print("| leaf | ping p50 ms | p95 ms | lost | iperf3 Mbit/s | share of 20 Mbit/s | retransmits "
                  "| htb drops | backlog mid-run (bytes / packets) | iperf3 CPU sender / receiver |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            tc.converge(tc.QdiscSpec(device=topo.shaped, netns=topo.ns["a"], state="absent"))
            idle_rtts, idle_sent = ping(topo, path, args)()
            print(row("idle (no load)", idle_rtts, idle_sent, " - | - | - | - | - | - |"), flush=True)
            runs = {}
            for leaf in ("pfifo", "fq_codel"):
                tc.converge(spec(topo, leaf))
                runs[leaf] = r = under_load(topo, path, leaf, args)
                print(row("%s%s" % (leaf, " limit %d" % PFIFO_LIMIT if leaf == "pfifo" else " (defaults)"),
                          r["rtts"], r["sent"],
                          " %.2f | %.1f%% | %d | %d | %.0f KB / %d | %.0f%% / %.0f%% |" % (
                              r["bits"] / 1e6, 100.0 * r["bits"] / RATE_BITS, r["retransmits"], r["drops"],
                              r["backlog"][0] / 1000.0, r["backlog"][1], r["cpu_sender"], r["cpu_receiver"])), flush=True)
            ratio = {p: percentile(runs["pfifo"]["rtts"], p) / percentile(runs["fq_codel"]["rtts"], p)
                     for p in (50, 95)}
            print("\npfifo / fq_codel: p50 %.1fx, p95 %.1fx (target: p95 at least %gx)"
                  % (ratio[50], ratio[95], P95_TARGET))
            if ratio[95] < P95_TARGET:
                failures.append("%s path: fq_codel's p95 is only %.1fx lower than pfifo's (%.2f vs %.2f ms), "
                                "target %gx" % (path["name"], ratio[95], percentile(runs["fq_codel"]["rtts"], 95),
                                                percentile(runs["pfifo"]["rtts"], 95), P95_TARGET))
            for leaf, r in sorted(runs.items()):
                share = r["bits"] / RATE_BITS
                if share < SHARE_TARGET:
                    busy = max(r["cpu_sender"], r["cpu_receiver"])
                    failures.append(
                        "%s path, %s leaf: iperf3 got %.2f Mbit/s, %.1f%% of the limit (target %.0f%%); iperf3 -t %g "
                        "-O %g with pings every %g s; iperf3 CPU sender %.0f%% / receiver %.0f%%%s" % (
                            path["name"], leaf, r["bits"] / 1e6, 100 * share, 100 * SHARE_TARGET,
                            r["iperf_seconds"], args.warmup, args.interval, r["cpu_sender"], r["cpu_receiver"],
                            " (CPU-bound: the machine's cores are busy)" if busy > 90 else ""))
    finally:
        topo.down()
    print("\nmeasured in %.0f s" % (time.time() - started))
    for failure in failures:
        print("MISSED: " + failure)
    if failures:
        return 1
    print("targets met: fq_codel's p95 under load at least %gx lower than pfifo's, and throughput at least "
          "%.0f%% of the limit with either leaf, on both paths" % (P95_TARGET, 100 * SHARE_TARGET))
    return 0


def in_vm(args, argv):
    script = KERNEL_VM if os.path.exists(KERNEL_VM) else os.environ.get("KERNEL_VM")
    if not script:
        raise SystemExit("this kernel lacks sch_fq_codel and there is no VM script to run on Debian's kernel: "
                         "neither tests/harness/kernel_vm.sh nor $KERNEL_VM")
    command = [script] + (["--kernel", args.kernel] if args.kernel else []) + [
        "--", sys.executable, os.path.abspath(__file__), "--here"] + argv
    print("sch_fq_codel is missing here: measuring in a VM on Debian's kernel (%s)" % " ".join(command), flush=True)
    started, busy, ours = time.time(), cpu_busy_seconds(), children_cpu_seconds()
    status = subprocess.run(command, cwd=REPO, check=False).returncode
    wall = time.time() - started
    busy, ours = cpu_busy_seconds() - busy, children_cpu_seconds() - ours
    others = max(0.0, busy - ours) / wall
    print("the VM run took %.0f s, boot included (exit status %d); the host's %d CPUs were %.0f%% busy: "
          "this VM %.2f CPUs, other processes %.2f CPUs"
          % (wall, status, os.cpu_count(), 100 * busy / wall / os.cpu_count(), ours / wall, others))
    if status and others > 0.25:
        print("other work shared the CPUs with the VM (TCG: every guest timer and packet is host CPU time): "
              "a missed target may be contention; run it again on an idle machine")
    return status


def cpu_busy_seconds():
    """Seconds of CPU the whole host has spent busy (not idle or waiting for I/O), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--kernel", help="the VM's Debian kernel (kernel_vm.sh --kernel), e.g. 6.12-amd64")
    parser.add_argument("--count", type=int, default=60, help="pings per measurement (default 60)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between pings (default 0.1)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of load before the pings start, not counted in throughput (default 3)")
    parser.add_argument("--here", action="store_true", help="measure on the running kernel, never in a VM")
    args = parser.parse_args()
    if args.count < 2 or args.interval < 0.002 or args.warmup < 0:
        parser.error("--count must be at least 2, --interval at least 0.002, --warmup not negative")
    if os.geteuid() != 0:
        raise SystemExit("needs root: it creates network namespaces (and boots a VM where fq_codel is missing)")
    argv = []
    for name in ("count", "interval", "warmup"):
        argv += ["--%s" % name, str(getattr(args, name))]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally: clauses tear the namespaces down
    if args.here or (not args.kernel and not capabilities.qdisc_unsupported("fq_codel")):
        return measure(args)
    return in_vm(args, argv)


if __name__ == "__main__":
    sys.exit(main())
