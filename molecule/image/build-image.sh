#!/usr/bin/env bash
# Build (or reuse) the local systemd image for molecule: debootstrap minbase + packages.txt,
# imported into podman as $IMAGE_NAME:$SUITE-<hash of the recipe>, also tagged $IMAGE_NAME:$SUITE.
# The hash covers this script and packages.txt, so editing either rebuilds; otherwise nothing runs.
# Needs root, debootstrap, podman. Never touches the host's network config: the build only
# downloads .debs; all mounts live in a private mount namespace (unshare --mount) and vanish with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
IMAGE_NAME=${IMAGE_NAME:-localhost/hostnet-systemd}
WORK=${WORK:-/var/tmp/hostnet-molecule/image-work}

hash=$( { cat "$0" "$here/packages.txt"; echo "$SUITE $MIRROR"; } | sha256sum | cut -c1-12)
ref="$IMAGE_NAME:$SUITE-$hash"
if podman image exists "$ref"; then
    podman tag "$ref" "$IMAGE_NAME:$SUITE"
    echo "using cached $ref" >&2; echo "$ref"; exit 0
fi

read -ra pkgs <<<"$(grep -v '^#' "$here/packages.txt" | xargs)"
rootfs="$WORK/rootfs-$hash"
rm -rf "$rootfs"; mkdir -p "$rootfs"
trap 'rm -rf --one-file-system "$rootfs"' EXIT

t0=$SECONDS
# debootstrap and the chroot install run in a private mount namespace: the proc/sys/dev mounts they
# make vanish with it, even on failure, so `rm -rf` can never descend into the host's /proc or /dev.
# shellcheck disable=SC2016  # the inner script expands its own arguments ($1...), not this script's
unshare --mount --propagation private -- bash -euo pipefail -c '
    suite=$1 r=$2 mirror=$3; shift 3
    debootstrap --variant=minbase "$suite" "$r" "$mirror"
    echo "debootstrap: $((SECONDS))s" >&2
    printf "#!/bin/sh\nexit 101\n" >"$r/usr/sbin/policy-rc.d"; chmod +x "$r/usr/sbin/policy-rc.d"  # no service starts
    mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
    mountpoint -q "$r/sys" || mount -t sysfs sysfs "$r/sys"
    mount --rbind /dev "$r/dev"
    in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
    in_root apt-get update -qq
    in_root apt-get install -y -qq --no-install-recommends "$@"
    in_root apt-get clean
    echo "debootstrap + apt-get install: $((SECONDS))s" >&2
' _ "$SUITE" "$rootfs" "$MIRROR" "${pkgs[@]}" >"$WORK/build-$hash.log" 2>&1 \
    || { tail -20 "$WORK/build-$hash.log"; exit 1; }
grep -E '^debootstrap' "$WORK/build-$hash.log" >&2

# Container hygiene: machine-id generated at first boot, no apt lists/caches, no host files.
rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/hostname"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/tmp/*
: >"$rootfs/etc/machine-id"; : >"$rootfs/etc/resolv.conf"

t2=$SECONDS
tar --numeric-owner --xattrs -C "$rootfs" -c . \
    | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' \
        --change 'STOPSIGNAL SIGRTMIN+3' - "$ref" >/dev/null
podman tag "$ref" "$IMAGE_NAME:$SUITE"
# Drop images of older recipes (their containers, if any, keep them alive: ignore failures).
podman images --format '{{.Repository}}:{{.Tag}}' "$IMAGE_NAME" | grep -Fx -v -e "$ref" -e "$IMAGE_NAME:$SUITE" \
    | grep "^$IMAGE_NAME:$SUITE-" | xargs -r podman rmi >/dev/null 2>&1 || true
echo "import: $((SECONDS - t2))s, total $((SECONDS - t0))s" >&2
echo "$ref"
