#!/usr/bin/env bash
# Builds a pristine Debian bookworm root standing in for Raspberry Pi OS Lite, once, into a cache.
# Usage: build-root.sh ARCH CACHE_DIR   (ARCH: amd64 for the converge test, arm64 for the image test)
# Promises: CACHE_DIR/ARCH.tar exists and holds a complete root when this exits 0; a half-built root is
# never left under that name (built in a temp dir, renamed at the end). Runs as root; uses only Debian's mirror.
set -euo pipefail
arch=${1:?arch}
cache=${2:?cache dir}
out="$cache/bookworm-$arch.tar"
[[ -s "$out" ]] && exit 0
mkdir -p "$cache"
exec 9>"$cache/.lock-$arch"
flock 9
[[ -s "$out" ]] && exit 0
work=$(mktemp -d "$cache/.build-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
# What Raspberry Pi OS Lite ships and the roles expect to find (the roles' apt tasks then change nothing).
include=python3,python3-apt,python3-venv,python3-systemd,python3-plyvel,systemd,systemd-sysv,dbus,chrony,openssh-server,ca-certificates
mirror=${PEERGRID_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ "$arch" == "$(dpkg --print-architecture)" ]]; then
    debootstrap --variant=minbase --include="$include" bookworm "$work/root" "$mirror" >"$work/log" 2>&1 \
        || { tail -20 "$work/log" >&2; exit 1; }
else
    # Foreign root: unpack here, run the second stage under qemu-user-static through binfmt_misc.
    debootstrap --foreign --arch="$arch" --variant=minbase --include="$include" bookworm "$work/root" "$mirror" \
        >"$work/log" 2>&1 || { tail -20 "$work/log" >&2; exit 1; }
    chroot "$work/root" /debootstrap/debootstrap --second-stage >>"$work/log" 2>&1 \
        || { tail -20 "$work/log" >&2; exit 1; }
fi
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_Packages
tar -C "$work/root" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
