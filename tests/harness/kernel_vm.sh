#!/usr/bin/env bash
# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# kernel_vm.sh: run a command in a throwaway VM booted on a Debian distro kernel.
#
#   kernel_vm.sh [--kernel DEB_OR_VERSION] [--mem SIZE] -- COMMAND [ARG...]
#
# For what the build host's own kernel lacks (no modules, no sch_fq_codel, sch_fq, sch_cake,
# sch_netem, sch_sfq, sch_codel): tc / netlink / nftables code runs under the kernel users run.
# DEB_OR_VERSION: a linux-image .deb, or a version such as 6.1.0-57-amd64 or 6.12-amd64 (fetched
# with `apt-get download linux-image-VERSION`; a metapackage stands for the kernel it depends on);
# default is what Debian's linux-image-amd64 depends on. The kernel and its modules are extracted
# once (dpkg-deb -x, nothing goes to /boot or /lib/modules) into $KERNEL_VM_CACHE (default
# /var/tmp/hostnet-kernels): 220 MB + the 70 MB .deb per kernel. A second run reuses them.
#
# The guest sees the host's whole filesystem read-only over 9p (virtme-ng), with throwaway
# writable overlays on /etc /usr /var /tmp /home /opt /srv /lib, $HOME and the current directory,
# which is also the guest's cwd. /lib/modules/$(uname -r) points at the extracted modules, so
# modprobe and the kernel's module autoloading work (Debian builds sch_fq_codel in; sch_htb, veth,
# nf_tables are modules). The guest has no network device (qemu -net none), runs as root and has
# a pure cgroup v2 hierarchy at /sys/fs/cgroup; the host's network, files and modules are never
# touched. COMMAND's exit status is returned; its stdout and stderr are the script's.
# KERNEL_VM_RWDIR=DIR makes DIR writable through to the host.
#
# Boot: KVM only when /proc/cpuinfo has vmx/svm. The build host has /dev/kvm without nested
# virtualisation: qemu -enable-kvm aborts with -cpu host (MSR 0x10a) and hangs in early boot with
# qemu64, so TCG it is. With TCG on 2 cores `kernel_vm.sh -- true` takes 12-14 s (the command
# starts 8.7 s after the kernel; udev coldplug is most of that), Debian 6.1.0-57-amd64 (bookworm);
# 21 s on an empty cache. Guest memory 1 GiB (--mem); qemu's RSS is ~110 MB idle, 1.5 GB at most
# under ansible + iperf3 (guest RAM plus TCG's code cache). Everything is slow under TCG: one
# ansible-playbook run of three hostnet.isolation.qdisc tasks takes ~40 s, iperf3 over a bare veth
# gives ~2 Gbit/s.
#
# Needs root, and from Debian (apt-packages.txt): qemu-system-x86, kmod (depmod; modprobe in the
# guest), udev (the guest init names its I/O ports with it: without it output and exit status are
# lost), python3-venv; iproute2, nftables, iperf3 as tests need. virtme-ng (pip, pinned in
# kernel-vm-requirements.txt beside this script) is put in a venv in the cache dir.
set -euo pipefail
shopt -s nullglob

usage() { echo "usage: $0 [--kernel DEB_OR_VERSION] [--mem SIZE] -- COMMAND [ARG...]" >&2; exit 2; }

CACHE=${KERNEL_VM_CACHE:-/var/tmp/hostnet-kernels}
REQUIREMENTS=$(dirname "$(realpath "$0")")/kernel-vm-requirements.txt
kernel='' mem=1G
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) [ $# -ge 2 ] || usage; kernel=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || usage
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"; flock 9    # one setup at a time; released before the boot

# virtme-ng, once, in its own venv: the guest runs its init from there too (the host fs is its
# root). The stamp holds the requirements it was built from: a new pin rebuilds it.
venv=$CACHE/virtme-ng
if ! cmp -s "$REQUIREMENTS" "$venv/.done"; then
    rm -rf "$venv"
    "$(command -v /usr/bin/python3 || command -v python3)" -m venv "$venv"
    "$venv/bin/pip" install -q -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$venv/.done"
fi
export PATH=$venv/bin:$PATH

# The kernel package: a .deb given, or downloaded by apt into the cache. A metapackage
# (linux-image-amd64, linux-image-6.12-amd64) stands for the kernel it depends on.
if [ -f "$kernel" ]; then
    deb=$(realpath "$kernel")
else
    pkg=linux-image-${kernel:-amd64}; pkg=linux-image-${pkg#linux-image-}
    dep=$(apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {p = $2} END {print p}')
    pkg=${dep:-$pkg}
    debs=("$CACHE"/debs/"$pkg"_*.deb)
    if [ ${#debs[@]} -eq 0 ]; then
        mkdir -p "$CACHE/debs"
        (cd "$CACHE/debs" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
            true  # grep finds nothing to print when all went well; a failed download shows below
        debs=("$CACHE"/debs/"$pkg"_*.deb)
        [ ${#debs[@]} -gt 0 ] || { echo "$0: could not download $pkg (apt-get download)" >&2; exit 1; }
    fi
    deb=${debs[-1]}
fi
dir=$CACHE/$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)

# Extract once; modules a VM never loads (sound, GPUs, NICs, wireless) are dropped to save space
if [ ! -d "$dir" ]; then
    rm -rf "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp"
    moddirs=("$dir.tmp"/lib/modules/* "$dir.tmp"/usr/lib/modules/*)
    [ ${#moddirs[@]} -gt 0 ] || { echo "$0: $deb has no lib/modules" >&2; exit 1; }
    moddir=${moddirs[0]}
    rm -rf "$dir.tmp/usr/share/doc" "$moddir"/kernel/sound "$moddir"/kernel/drivers/{gpu,media,infiniband,staging} \
        "$moddir"/kernel/drivers/net/{wireless,ethernet}
    depmod -a -b "${moddir%/lib/modules/*}" "${moddir##*/}"
    mv "$dir.tmp" "$dir"
fi
vmlinuz=("$dir"/boot/vmlinuz-*)
[ ${#vmlinuz[@]} -gt 0 ] || { echo "$0: no boot/vmlinuz-* in $dir" >&2; exit 1; }
exec 9>&-

accel=(--disable-kvm)
if [ -w /dev/kvm ] && grep -qE '^flags.*\b(vmx|svm)\b' /proc/cpuinfo; then accel=(); fi

# 9p: without virtiofsd, vng would spend ~3 s per share waiting for it. The guest init hides
# /var/tmp (and /var/cache) under a tmpfs: the cache is mounted over it again.
opts=(--run "${vmlinuz[0]}" "${accel[@]}" --force-9p --memory "$mem" --cpus "$(nproc)" --rodir "$CACHE"
      --cwd "$PWD")
for d in "$HOME" "$PWD"; do [ "$d" = / ] || opts+=(--overlay-rwdir "$d"); done
if [ -n "${KERNEL_VM_RWDIR:-}" ]; then opts+=(--rwdir "$(realpath "$KERNEL_VM_RWDIR")"); fi
# -e takes one shell string: quote each argument so COMMAND arrives as given. qemu reopens
# /proc/self/fd/1 and 2 once per guest port: were they files, its writes would overwrite each
# other, so both go through pipes (pipefail passes vng's status, which is COMMAND's).
{ vng "${opts[@]}" -e "$(printf '%q ' "$@")" 2>&1 >&3 3>&- | cat >&2; } 3>&1 | cat
