# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throwaway "hosts" for tests and the demo sandbox.

A hermetic host is a holder process in its own network, mount and UTS
namespaces, with a private tmpfs on /run (so named netns handles, lock files
and symlinks never reach the machine's /run) and its own sysfs. Everything a
test does to "the host" happens in there; stopping the host kills every
process left in its mount namespace and the namespaces vanish.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import time

MARKER = "hostnet-hermetic-host"

# $0 names the script in sh's own error messages, $1 is the hostname.
_HOLDER = r"""
set -e
mount -t tmpfs -o mode=755 hostnet-run /run
mkdir -p /run/lock
mount -t sysfs sysfs /sys
hostname "$1"
ip link set lo up
echo ready
exec sleep infinity
"""

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HermeticHost:
    def __init__(self, name, pid=None, mnt_ino=None):
        """A new host (then call start), or one started earlier by another process (pid, mnt_ino)."""
        self.name = name
        self.pid = pid
        self.mnt_ino = mnt_ino
        self._proc = None
        self._spawned = []
        # An open reference keeps the mount namespace, and so its inode number, alive: processes
        # are recognised as this host's by that number, which must not be reused meanwhile.
        self._mnt_fd = None
        if pid is not None:
            try:
                fd = os.open("/proc/%d/ns/mnt" % pid, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return  # the holder is gone: nothing is recognisably ours any more
            if os.fstat(fd).st_ino == mnt_ino:
                self._mnt_fd = fd
            else:
                os.close(fd)  # the pid was reused by an unrelated process

    def start(self):
        proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--uts", "--propagation", "private", "--",
             "sh", "-c", _HOLDER, MARKER, self.name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, universal_newlines=True)
        line = proc.stdout.readline().strip()
        if line != "ready":
            proc.kill()
            raise RuntimeError("hermetic host %s did not start: %s %s" % (self.name, line, proc.stderr.read()))
        self.pid = proc.pid
        self._proc = proc
        self._mnt_fd = os.open("/proc/%d/ns/mnt" % self.pid, os.O_RDONLY | os.O_CLOEXEC)
        self.mnt_ino = os.fstat(self._mnt_fd).st_ino
        return self

    # -- running things inside -------------------------------------------------------------

    def nsenter(self, argv):
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "--"] + list(argv)

    def run(self, argv, check=True, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("universal_newlines", True)
        proc = subprocess.run(self.nsenter(argv), check=False, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d) in %s:\n%s%s" % (
                " ".join(shlex.quote(a) for a in argv), proc.returncode, self.name, proc.stdout, proc.stderr))
        return proc

    def sh(self, script, check=True):
        return self.run(["sh", "-c", script], check=check)

    def spawn(self, argv, netns=None):
        """Start a long-running process inside the host (optionally inside one of its named netns)."""
        if netns:
            argv = ["ip", "netns", "exec", netns] + list(argv)
        proc = subprocess.Popen(self.nsenter(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self._spawned.append(proc)
        return proc

    def start_app(self):
        """A process in a network namespace of its own, like a container's init; returns its pid."""
        proc = self.spawn(["unshare", "--net", "sleep", "3600"])
        host_net = os.stat("/proc/%d/ns/net" % self.pid).st_ino
        for _attempt in range(200):
            try:
                with open("/proc/%d/comm" % proc.pid) as f:
                    comm = f.read().strip()
                if comm == "sleep" and os.stat("/proc/%d/ns/net" % proc.pid).st_ino != host_net:
                    return proc.pid
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("app process did not start in %s" % self.name)

    def settle(self, timeout=5.0):
        """Wait for IPv6 duplicate address detection to finish everywhere in this host."""
        deadline = time.time() + timeout
        script = ("ip -6 addr show tentative; for n in $(ls /run/netns 2>/dev/null); do "
                  "ip -n $n -6 addr show tentative; done")
        while self.sh(script, check=False).stdout.strip() and time.time() < deadline:
            time.sleep(0.1)

    # -- observing -------------------------------------------------------------------------

    def _json(self, argv):
        out = self.run(argv, check=False).stdout.strip()
        return json.loads(out) if out else []

    def netns_view(self, netns=None):
        """Links, addresses and routes of the host or of one of its named namespaces."""
        prefix = ["ip", "-n", netns] if netns else ["ip"]
        view = {
            "links": self._json(prefix + ["-j", "-d", "link", "show"]),
            "addresses": self._json(prefix + ["-j", "addr", "show"]),
            "routes4": self._json(prefix + ["-j", "-4", "route", "show", "table", "all"]),
            "routes6": self._json(prefix + ["-j", "-6", "route", "show", "table", "all"]),
        }
        view["qdiscs"] = self._json((["tc", "-n", netns] if netns else ["tc"]) + ["-j", "qdisc", "show"])
        # classes and filters of every device (listed without counters): a rate or a filter change shows
        script = ("echo ip_local_port_range $(cat /proc/sys/net/ipv4/ip_local_port_range);"
                  " cd /sys/class/net && for d in *; do echo \"== $d\"; tc class show dev $d;"
                  " tc filter show dev $d ingress; tc filter show dev $d; done")
        view["tc"] = self.run((["ip", "netns", "exec", netns] if netns else []) + ["sh", "-c", script],
                              check=False).stdout
        # What the kernel moves on its own (carrier, DAD, lifetimes) is not state we manage.
        for link in view["links"] + view["addresses"]:
            link.pop("operstate", None)
            for part in ("info_data", "info_slave_data"):  # bridge timers tick, STP walks port states
                data = link.get("linkinfo", {}).get(part, {})
                for key in [k for k in data if k.endswith("_timer") or k == "state"]:
                    del data[key]
        for addr in view["addresses"]:
            for info in addr.get("addr_info", []):
                for volatile in ("valid_life_time", "preferred_life_time", "tentative", "optimistic"):
                    info.pop(volatile, None)
        return view

    def snapshot(self):
        """Everything a module could change, as comparable data."""
        self.settle()
        handles = self.sh("ls -1 /run/netns 2>/dev/null || true").stdout.split()
        # lock files (and the private directory made to hold them) carry no state: a refused task takes the
        # lock to read the host consistently before it refuses
        files = self.sh(
            "for d in /run/netns /run/mesos; do [ -d $d ] && find $d -printf '%p %y %l\\n'; done; "
            "[ -d /run/hostnet ] && find /run/hostnet -mindepth 1 ! -name '*.lock' -printf '%p %y %l\\n'; "
            "true").stdout.splitlines()
        # and what our state files say (allocations are state a module manages)
        files += self.sh("find /run/hostnet -type f -name '*.json' -exec sh -c 'echo \"$1:\"; cat \"$1\"' _ {} \\;"
                         " 2>/dev/null; true").stdout.splitlines()
        mounts = sorted(line.split()[4] for line in open("/proc/%d/mountinfo" % self.pid)
                        if line.split()[4].startswith("/run/"))
        snap = {
            "host": self.netns_view(),
            "files": sorted(files),
            # which namespace each handle pins (a re-pointed handle keeps its name)
            "handles": dict((h, self.sh("stat -L -c %%i /run/netns/%s 2>/dev/null || true" % h).stdout.strip())
                            for h in handles),
            "mounts": mounts,
            "netns": dict((h, self.netns_view(h)) for h in handles),
            # rulesets without traffic counters: a stray packet (a DNS lookup to a local resolver walks
            # the nat OUTPUT hook) is not a change of configuration
            "nft": self.run(["nft", "--stateless", "list", "ruleset"], check=False).stdout,
        }
        for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
            out = self.run([tool], check=False).stdout
            snap[tool] = "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in out.splitlines()
                                   if not line.startswith("#"))
        snap["sysctl"] = self.sh("grep -H . /proc/sys/net/ipv4/conf/*/route_localnet").stdout
        return snap

    # -- stopping --------------------------------------------------------------------------

    def processes(self):
        """Pids of every process in this host's mount namespace (the holder included)."""
        if self._mnt_fd is None or self.mnt_ino == os.stat("/proc/self/ns/mnt").st_ino:
            return []  # not recognisably ours, or the machine's own mount namespace
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat("/proc/%s/ns/mnt" % entry).st_ino == self.mnt_ino:
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids

    def stop(self):
        if self.pid is None:
            return
        for proc in self._spawned:  # `ip netns exec` gives them a mount namespace of their own
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline:
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        if self._proc is not None:
            self._proc.wait()
            self._proc.stdout.close()
            self._proc.stderr.close()
        if self._mnt_fd is not None:
            os.close(self._mnt_fd)
            self._mnt_fd = None
        self.pid = None
