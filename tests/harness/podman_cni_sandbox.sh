#!/usr/bin/env bash
# podman-cni-sandbox.sh: Debian's podman with its CNI network backend, in private namespaces.
#
#   podman-cni-sandbox.sh [PLUGIN] -- COMMAND [ARG...]   run COMMAND inside a fresh sandbox
#   podman-cni-sandbox.sh --selftest [PLUGIN]            check port mapping end to end, print PASS/FAIL
#   podman-cni-sandbox.sh --host-state                   print what a sandbox could leak onto the machine
#
# PLUGIN: "portmap" (Debian's, the default), a plugin executable such as
# .build/cni/hostnet-cni-port-mapper (its file name becomes the conflist "type"), or a directory of
# plugins (type from $SANDBOX_CNI_TYPE). Needs root and podman, containernetworking-plugins,
# busybox-static, iproute2, nftables. Runtime: crun when installed (cgroups disabled, so none are made
# on the host), else runc (its empty libpod_parent cgroups are removed afterwards); SANDBOX_RUNTIME picks.
# Stop it by killing its process group: killing only this script leaves unshare running.
#
# COMMAND sees: CONTAINERS_CONF, CONTAINERS_STORAGE_CONF (podman needs nothing else), SANDBOX_ROOTFS
# (busybox, host /usr expected at /usr: `podman run -v /usr:/usr:ro --rootfs "$SANDBOX_ROOTFS" CMD`;
# /bin/echo-server answers "tcp-ok" on TCP 80 and "udp-ok" on UDP 53), SANDBOX_NET_DIR (conflist
# dir, network "hostnet-test" on 10.88.77.0/24 is the default), SANDBOX_CNI_DIR, SANDBOX_HOST_IP
# (10.99.0.1) and SANDBOX_CLIENT_NS (netns "client", 10.99.0.2, routed via the sandbox).
# Everything lives in new net/mount/uts/ipc/pid namespaces and one temp dir, gone on exit.
set -euo pipefail

NET=hostnet-test SUBNET=10.88.77.0/24 HOST_IP=10.99.0.1 CLIENT_IP=10.99.0.2

host_state() {  # what the sandbox could leak: its names and addresses, CNI/podman state, cgroups
    { ip netns list; nft list ruleset; iptables-save; ip -br link; } 2>/dev/null |
        grep -E '^(client|netns-|cni-)|10\.88\.77\.|10\.99\.0\.|hostnet-test|CNI-|cni-hnt0|sbx0' || true
    find /var/lib/cni /var/lib/containers /run/containers /run/libpod 2>/dev/null || true
    find /sys/fs/cgroup -maxdepth 3 -name 'libpod*' 2>/dev/null || true
}
[ "${1:-}" = --host-state ] && { host_state; exit 0; }

if [ "${1:-}" != --inside ]; then
    selftest=0
    [ "${1:-}" = --selftest ] && { selftest=1; shift; }
    plugin=portmap
    if [ $# -gt 0 ] && [ "$1" != -- ]; then plugin=$1; shift; fi
    [ "${1:-}" = -- ] && shift
    [ $selftest = 1 ] || [ $# -gt 0 ] || { sed -n '4,5p' "$0" >&2; exit 2; }
    [ "$plugin" = portmap ] || plugin=$(realpath -e "$plugin")
    runtime=${SANDBOX_RUNTIME:-$(command -v crun >/dev/null && echo crun || echo runc)}
    # runc always makes cgroups: remove podman's parent cgroup afterwards if it is ours
    cg_before=$(ls -d /sys/fs/cgroup/libpod_parent /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true)
    [ $selftest = 1 ] && before=$(host_state)
    tmp=$(mktemp -d /tmp/podman-cni-sandbox.XXXXXX)
    rc=0
    SANDBOX_RUNTIME=$runtime unshare --net --mount --uts --ipc --pid --fork --kill-child --mount-proc \
        --propagation private "$0" --inside "$tmp" "$plugin" "$selftest" "$@" || rc=$?
    rm -rf "$tmp"
    if [ "$runtime" = runc ] && [ -z "$cg_before" ]; then
        # a container killed with the sandbox leaves its cgroup busy for a moment: retry for up to 5 s
        for _ in $(seq 50); do
            for d in /sys/fs/cgroup/libpod_parent /sys/fs/cgroup/*/libpod_parent; do
                if [ -d "$d" ]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
            done
            [ -z "$(ls -d /sys/fs/cgroup/libpod_parent /sys/fs/cgroup/*/libpod_parent 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    if [ $selftest = 1 ]; then
        if [ "$before" = "$(host_state)" ]; then echo "PASS host unchanged (netns, nft, iptables, /var/lib/cni, cgroups, links)"
        else echo "FAIL host changed:"; diff <(echo "$before") <(host_state) || true; rc=1; fi
    fi
    exit $rc
fi

# ---- inside the namespaces ----
T=$2 plugin=$3 selftest=$4; shift 4
mount -t tmpfs -o mode=0700 sandbox "$T"                      # the whole sandbox is this tmpfs
mkdir -p "$T"/{cgroup,varlib/up,varlib/wk,net.d,cni,rootfs/bin,rootfs/usr,storage,runroot,tmp}
if [ "$SANDBOX_RUNTIME" = crun ]; then                        # sysfs of this netns; crun wants some
    mount -t sysfs sysfs /sys; cgroups=disabled                # filesystem at /sys/fs/cgroup, no more
    mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
else                                                          # runc needs the host's cgroup mounts
    mount --rbind /sys/fs/cgroup "$T/cgroup"; cgroups=enabled
    mount -t sysfs sysfs /sys; mount --move "$T/cgroup" /sys/fs/cgroup
fi
mount -t tmpfs tmpfs /run                                     # netns files, runc/conmon state
mount -t tmpfs tmpfs /dev/shm                                 # podman's lock memory
# /var/lib/cni (libcni's result cache, host-local's leases) may not exist on the host: overlay /var/lib
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$T/varlib/up,workdir=$T/varlib/wk" /var/lib
hostname podman-cni-sandbox
ip link set lo up

# a "client" netns wired to the sandbox's host address
ip netns add client
ip link add sbx0 type veth peer name eth0 netns client
ip addr add "$HOST_IP/24" dev sbx0 && ip link set sbx0 up
ip -n client addr add "$CLIENT_IP/24" dev eth0
ip -n client link set eth0 up && ip -n client link set lo up
ip -n client route add default via "$HOST_IP"

# plugins: Debian's, plus the one under test
cni_dir=$T/cni type=portmap
if [ -d "$plugin" ]; then cni_dir=$plugin type=${SANDBOX_CNI_TYPE:-portmap}
elif [ "$plugin" != portmap ]; then cp "$plugin" "$cni_dir/"; type=$(basename "$plugin"); fi

# busybox rootfs (relative links work inside the container); host /usr is mounted at /usr by callers
cp "$(command -v busybox)" "$T/rootfs/bin/busybox"
for a in $(busybox --list); do [ -e "$T/rootfs/bin/$a" ] || ln -s busybox "$T/rootfs/bin/$a"; done
ln -s usr/lib "$T/rootfs/lib"; ln -s usr/lib64 "$T/rootfs/lib64"
cat > "$T/rootfs/bin/echo-server" <<'EOF'
#!/bin/sh
nc -ll -p 80 -e echo tcp-ok &
exec /usr/bin/python3 -c "import socket;s=socket.socket(2,2);s.bind(('',53));[s.sendto(b'udp-ok\n',s.recvfrom(99)[1]) for _ in iter(int,1)]"
EOF
chmod +x "$T/rootfs/bin/echo-server"

cat > "$T/containers.conf" <<EOF
[containers]
default_ulimits = []
default_sysctls = []
log_driver = "k8s-file"
cgroups = "$cgroups"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$cni_dir", "/usr/lib/cni"]
network_config_dir = "$T/net.d"
default_network = "$NET"
[engine]
runtime = "$SANDBOX_RUNTIME"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$T/tmp"
static_dir = "$T/storage/libpod"
volume_path = "$T/storage/volumes"
EOF
cat > "$T/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/storage"
runroot = "$T/runroot"
EOF
cat > "$T/net.d/$NET.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$NET", "plugins": [
  {"type": "bridge", "bridge": "cni-hnt0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "$type", "capabilities": {"portMappings": true}}]}
EOF
export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf SANDBOX_ROOTFS=$T/rootfs \
    SANDBOX_NET_DIR=$T/net.d SANDBOX_CNI_DIR=$cni_dir SANDBOX_HOST_IP=$HOST_IP SANDBOX_CLIENT_NS=client

[ "$selftest" = 1 ] || { "$@"; exit; }

# ---- selftest ----
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
check() { if [ "$2" = "$3" ]; then echo "PASS $1"; else echo "FAIL $1 (got '$2', want '$3')"; fails=$((fails+1)); fi; }
tcp() { timeout 5 busybox nc "$@" </dev/null 2>/dev/null || true; }
tcp_client() { ip netns exec client timeout 5 busybox nc "$@" </dev/null 2>/dev/null || true; }
cat > "$T/udp.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
for _ in range(3):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    try: print(s.recv(99).decode().strip()); break
    except OSError: pass
EOF
leftovers() {  # rules naming the container's address, and its host-local lease
    echo "$({ nft list ruleset 2>/dev/null; iptables-save 2>/dev/null; } | grep -c -w -F "$1")" \
         "$(find "/var/lib/cni/networks/$NET" -name "$1" | wc -l)"
}
start() {
    t=$(date +%s%N)
    podman run -d --name "$1" -p 8080:80 -p 5353:53/udp -v /usr:/usr:ro --rootfs "$T/rootfs" /bin/echo-server \
        >/dev/null || { echo "FAIL podman run -d"; exit 1; }
    echo "INFO podman run -d: $(ms "$t") ms"
    ip=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1")
    [ -n "$ip" ] || { echo "FAIL container $1 has no address"; exit 1; }
    for _ in $(seq 50); do [ -n "$(tcp "$ip" 80)" ] && break; sleep 0.1; done
}
remove() {
    t=$(date +%s%N)
    if podman rm -f -t 0 "$1" >"$T/rm.log" 2>&1; then echo "INFO podman rm -f: $(ms "$t") ms"
    else echo "FAIL podman rm -f: $(cat "$T/rm.log")"; fails=$((fails+1)); fi
    grep -i 'warn\|error' "$T/rm.log" | sed 's/^/INFO   /' || true
}
fails=0
echo "INFO plugin type \"$type\", runtime $SANDBOX_RUNTIME, $(podman --version)"
start c1
check "tcp from client netns to $HOST_IP:8080" "$(tcp_client "$HOST_IP" 8080)" tcp-ok
check "tcp from sandbox host to $HOST_IP:8080" "$(tcp "$HOST_IP" 8080)" tcp-ok
check "tcp from sandbox host to 127.0.0.1:8080" "$(tcp 127.0.0.1 8080)" tcp-ok
check "udp from client netns to $HOST_IP:5353" "$(ip netns exec client /usr/bin/python3 "$T/udp.py" "$HOST_IP" 5353)" udp-ok
read -r rules lease <<<"$(leftovers "$ip")"
check "rules ($rules) and lease while running" "$([ "$rules" -gt 0 ] && echo yes) $lease" "yes 1"
remove c1
check "no rule or lease left after rm" "$(leftovers "$ip")" "0 0"
start c2
echo "INFO deleting $(find /var/lib/cni/results -type f | wc -l) cached CNI result(s)"
rm -rf /var/lib/cni/results/*                                 # libcni's cache of ADD results
remove c2
check "no rule or lease left after rm without result cache" "$(leftovers "$ip")" "0 0"
[ $fails = 0 ]
