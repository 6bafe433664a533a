# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Debian's podman with its CNI network backend calls the port-mapping plugin, as on a real host.

Each test gets a fresh sandbox (tests/harness/podman_cni_sandbox.sh: private net, mount, UTS, IPC
and PID namespaces, podman's storage, runroot and /var/lib/cni in one temp dir, a busybox rootfs,
no image pull). Its network "hostnet-test" chains Debian's `bridge` (host-local IPAM, 10.88.77.0/24)
and the plugin under test with `capabilities.portMappings`: ours, or Debian's `portmap`, which is
the behaviour to match. A "client" namespace (10.99.0.2) reaches the sandbox host at 10.99.0.1.

    client ns 10.99.0.2 --veth-- sbx0 10.99.0.1 (sandbox host) --cni-hnt0 10.88.77.1-- containers

The container serves "tcp-ok" on TCP 80 and "udp-ok" on UDP 53, published as 8080 and 5353.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from harness.hermetic import REPO

SANDBOX = os.path.join(REPO, "tests", "harness", "podman_cni_sandbox.sh")
OURS = os.path.join(REPO, ".build", "cni", "hostnet-cni-port-mapper")
PLUGINS = {"hostnet-cni-port-mapper": OURS, "portmap": "portmap"}
NET, HOST_IP = "hostnet-test", "10.99.0.1"
LEASES = "/var/lib/cni/networks/%s" % NET
PUBLISH = ["-p", "8080:80", "-p", "5353:53/udp"]
# Sandboxes of this file run one at a time, whichever xdist worker runs them: each compares the
# machine's state before and after, and podman's shared parent cgroup is only removed by the
# sandbox that made it.
LOCK = "/tmp/hostnet-podman-cni-sandbox.lock"
UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(6):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(99).decode().strip())
        break
    except OSError:
        pass
"""


def host_state():
    return subprocess.run([SANDBOX, "--host-state"], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def _children(pid):
    found = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            found += [int(p) for p in f.read().split()]
    return found


class PodmanSandbox:
    """One running sandbox; run() executes a command inside all of its namespaces."""

    def __init__(self, plugin):
        self.plugin = plugin
        self.proc = None
        self.pid = None
        self.env = None

    def start(self):
        # the command inside reports its environment (the sandbox's paths), then holds the sandbox
        # open until its stdin closes
        hold = "import json, os, sys; print(json.dumps(dict(os.environ)), flush=True); sys.stdin.read()"
        self.proc = subprocess.Popen([SANDBOX, self.plugin, "--", "/usr/bin/python3", "-c", hold],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("{"):
            out, err = self.proc.communicate(timeout=60)  # closes stdin: whatever started stops
            self.proc = None
            raise AssertionError("podman sandbox did not start: %s%s%s" % (line, out, err))
        self.env = json.loads(line)
        # script -> unshare -> the sandbox's PID 1 (the script again), in every new namespace
        unshare = _children(self.proc.pid)
        self.pid = _children(unshare[0])[0]
        return self

    def run(self, argv, check=True, timeout=60, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "-i", "-p", "--"] + list(argv),
                              check=False, env=self.env, universal_newlines=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d) in the podman sandbox:\n%s" % (argv, proc.returncode, proc.stdout))
        return proc

    def sh(self, script, check=True):
        return self.run(["sh", "-c", script], check=check)

    def stop(self):
        if self.proc is None:
            return
        if self.pid is not None:
            self.run(["podman", "rm", "-a", "-f", "-t", "0"], check=False)
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the script, unshare and all inside
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc = None

    # -- podman -------------------------------------------------------------------------------

    def podman_run(self, name, check=True):
        return self.run(["podman", "run", "-d", "--name", name] + PUBLISH +
                        ["-v", "/usr:/usr:ro", "--rootfs", self.env["SANDBOX_ROOTFS"], "/bin/echo-server"],
                        check=check)

    def start_container(self, name):
        """Run a published container and wait until it serves; its address."""
        self.podman_run(name)
        address = self.run(["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                            name]).stdout.strip()
        assert address.startswith("10.88.77."), address
        for _attempt in range(50):
            if self.tcp(address, 80) == "tcp-ok":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("container %s (%s) never served TCP 80" % (name, address))
        return address

    def rm(self, name):
        """podman rm -f; its output (warnings included), asserting it succeeded."""
        return self.run(["podman", "rm", "-f", "-t", "0", name]).stdout

    # -- traffic and leftovers ------------------------------------------------------------------

    def tcp(self, address, port, netns=None):
        prefix = ["ip", "netns", "exec", netns] if netns else []
        return self.run(prefix + ["timeout", "3", "busybox", "nc", address, str(port)], check=False,
                        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL).stdout.strip()

    def udp(self, address, port, netns=None):
        prefix = ["ip", "netns", "exec", netns] if netns else []
        return self.run(prefix + ["/usr/bin/python3", "-c", UDP_CLIENT, address, str(port)], check=False,
                        stderr=subprocess.DEVNULL).stdout.strip()

    def answers(self):
        """What each client gets through the published ports."""
        return {
            "tcp from client netns": self.tcp(HOST_IP, 8080, netns="client"),
            "tcp from host address": self.tcp(HOST_IP, 8080),
            "tcp from 127.0.0.1": self.tcp("127.0.0.1", 8080),
            "udp from client netns": self.udp(HOST_IP, 5353, netns="client"),
            "udp from host address": self.udp(HOST_IP, 5353),
            "udp from 127.0.0.1": self.udp("127.0.0.1", 5353),
        }

    def rules_naming(self, text):
        """Firewall rules (nftables and iptables views) that mention text, e.g. a container address."""
        ruleset = self.sh("nft list ruleset; iptables-save; ip6tables-save", check=False).stdout
        return [line.strip() for line in ruleset.splitlines() if text in line and not line.startswith("#")]

    def ruleset(self):
        """The whole ruleset without counters, and without empty tables: iptables-nft makes one by
        merely looking at a table (portmap's DEL lists ip6 nat), which maps nothing."""
        return re.sub(r"(?m)^table \S+ \S+ \{\n\}\n", "", self.run(["nft", "--stateless", "list", "ruleset"]).stdout)

    def leases(self):
        """host-local's leases: one file named by each address it handed out."""
        names = self.sh("ls -1 %s 2>/dev/null || true" % LEASES).stdout.split()
        return sorted(n for n in names if n.startswith("10.88.77."))

    def container_netns(self):
        return sorted(n for n in self.sh("ls -1 /run/netns").stdout.split() if n != "client")


EVERYWHERE = {"tcp from client netns": "tcp-ok", "tcp from host address": "tcp-ok", "tcp from 127.0.0.1": "tcp-ok",
              "udp from client netns": "udp-ok", "udp from host address": "udp-ok", "udp from 127.0.0.1": "udp-ok"}


def assert_clean_teardown(podman_output):
    """podman reports a failed CNI DEL as a warning ("failed (delete)") or as an error naming the cleanup."""
    for complaint in ("Unable to clean up network", "failed (delete)"):
        assert complaint not in podman_output, podman_output


def assert_removed_without_trace(sandbox, name, address):
    """`podman rm` reports no failed teardown and leaves no rule, lease or network namespace."""
    assert_clean_teardown(sandbox.rm(name))
    assert sandbox.rules_naming(address) == []
    assert sandbox.leases() == []
    assert sandbox.container_netns() == []


@pytest.fixture(scope="module", autouse=True)
def podman_available():
    missing = [tool for tool in ("podman", "runc") if not shutil.which(tool)]
    if missing:
        pytest.skip("%s not installed: the podman CNI test needs Debian's podman and runc" % " and ".join(missing))
    if not shutil.which("busybox"):
        pytest.fail("busybox-static is not installed (make deps installs it)")
    if not os.access(OURS, os.X_OK):
        pytest.fail("%s is not built: run `make cni-plugin` (make test does)" % OURS)


@pytest.fixture(params=sorted(PLUGINS))
def sandbox(request):
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = host_state()
        sbx = PodmanSandbox(PLUGINS[request.param])
        try:
            yield sbx.start()
        finally:
            sbx.stop()
        after = host_state()
        assert after == before, "the podman sandbox changed the machine:\n--- before\n%s--- after\n%s" % (
            before, after)


def test_published_ports_reach_the_container(sandbox):
    sandbox.start_container("web")
    assert sandbox.answers() == EVERYWHERE


def test_rm_leaves_no_rule_and_no_lease(sandbox):
    address = sandbox.start_container("web")
    assert sandbox.rules_naming(address), "no rule names the container while it runs"
    assert sandbox.leases() == [address]
    assert_removed_without_trace(sandbox, "web", address)


def test_rm_without_cached_result_cleans_up(sandbox):
    """libcni has no cached ADD result after a lost cache or a reboot: DEL comes without prevResult."""
    address = sandbox.start_container("web")
    assert sandbox.sh("ls /var/lib/cni/results").stdout.split(), "podman cached no CNI result"
    sandbox.sh("rm -rf /var/lib/cni/results/*")
    assert_removed_without_trace(sandbox, "web", address)


def test_add_failing_on_a_host_port_in_use_leaves_nothing(sandbox):
    """A second container on a published host port is refused (by podman or by the plugin) cleanly."""
    address = sandbox.start_container("first")
    ruleset, netns = sandbox.ruleset(), sandbox.container_netns()
    refused = sandbox.podman_run("second", check=False)
    assert refused.returncode != 0, refused.stdout
    assert_clean_teardown(refused.stdout)
    assert sandbox.leases() == [address], refused.stdout
    assert sandbox.ruleset() == ruleset, refused.stdout
    assert sandbox.container_netns() == netns, refused.stdout
    assert sandbox.answers() == EVERYWHERE  # the first container keeps its ports


def test_add_failing_after_the_plugin_leaves_nothing(sandbox):
    """A plugin later in the chain fails ADD: libcni caches no result, podman tears down with DEL."""
    conflist = os.path.join(sandbox.env["SANDBOX_NET_DIR"], NET + ".conflist")
    config = json.loads(sandbox.run(["cat", conflist]).stdout)
    config["plugins"].append({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.hostnet_forced_failure": "1"}})
    sandbox.run(["sh", "-c", 'cat > "$1"', "-", conflist], input=json.dumps(config))
    failed = sandbox.podman_run("web", check=False)
    assert failed.returncode != 0 and "hostnet_forced_failure" in failed.stdout, failed.stdout
    assert_clean_teardown(failed.stdout)
    assert sandbox.rules_naming("10.88.77.") == [], failed.stdout
    assert sandbox.leases() == [], failed.stdout
    assert sandbox.container_netns() == [], failed.stdout


def test_network_reload_restores_a_flushed_ruleset(sandbox):
    sandbox.start_container("web")
    sandbox.sh("nft flush ruleset")
    assert sandbox.tcp(HOST_IP, 8080, netns="client") == "", "the flush left the mapping in place"
    sandbox.run(["podman", "network", "reload", "web"])
    assert sandbox.answers() == EVERYWHERE
