#!/usr/bin/env bash
# `make test-image`: build a two-partition arm64 image standing in for Raspberry Pi OS Lite (FAT boot + ext4
# root from a debootstrapped arm64 root), flash it with ansible/playbooks/flash.yml for one inventory device,
# check the NoCloud identity on its boot partition, boot it with systemd-nspawn --boot (through qemu-user-static)
# and check that peergrid-edge reaches READY under real systemd and is restarted after a watchdog timeout.
# Heavy (qemu): not part of `make test`. Needs root. Keeps its work in $PEERGRID_IMAGE_WORK (default a temp dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv_bin="$repo/.venv/bin"
cache=${PEERGRID_CACHE:-/var/cache/peergrid}
work=${PEERGRID_IMAGE_WORK:-$(mktemp -d /tmp/peergrid-image.XXXXXX)}
log() { echo "test-image: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "needs root"; exit 1; }

# --- tools only this target needs
need=()
for pkg in qemu-user-static binfmt-support systemd-container mtools dosfstools fdisk e2fsprogs debootstrap; do
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || need+=("$pkg")
done
if (( ${#need[@]} )); then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64

SECONDS=0
# --- the base image: what an operator downloads as Raspberry Pi OS Lite
"$here/build-root.sh" arm64 "$cache"
log "arm64 root ready (${SECONDS}s)"
base="$work/base.img"
if [[ ! -s "$base" ]]; then
    rm -rf "$work/base-root" && mkdir -p "$work/base-root"
    tar -C "$work/base-root" --numeric-owner -xf "$cache/bookworm-arm64.tar"
    printf 'LABEL=rootfs / ext4 defaults,noatime 0 1\nLABEL=bootfs /boot/firmware vfat defaults 0 2\n' >"$work/base-root/etc/fstab"
    mkdir -p "$work/base-root/boot/firmware"
    echo raspberrypi >"$work/base-root/etc/hostname"
    boot_mib=128 root_mib=1536
    mkfs.ext4 -q -L rootfs -d "$work/base-root" "$work/root.part" "${root_mib}M"
    mkfs.vfat -n bootfs -C "$work/boot.part" $((boot_mib * 1024)) >/dev/null 2>&1
    printf 'console=serial0,115200 root=LABEL=rootfs rootfstype=ext4 fsck.repair=yes rootwait\n' >"$work/cmdline.txt"
    printf '# stand-in for Raspberry Pi OS config.txt\narm_64bit=1\n' >"$work/config.txt"
    mcopy -i "$work/boot.part" "$work/cmdline.txt" "$work/config.txt" ::
    truncate -s $(( (4 + boot_mib + root_mib) * 1024 * 1024 )) "$base.tmp"
    printf 'label: dos\nstart=4MiB, size=%sMiB, type=c\nstart=%sMiB, type=83\n' "$boot_mib" $((4 + boot_mib)) \
        | sfdisk -q "$base.tmp"
    dd if="$work/boot.part" of="$base.tmp" bs=1M seek=4 conv=notrunc,sparse status=none
    dd if="$work/root.part" of="$base.tmp" bs=1M seek=$((4 + boot_mib)) conv=notrunc,sparse status=none
    rm -rf "$work/base-root" "$work/boot.part" "$work/root.part"
    mv "$base.tmp" "$base"
fi
log "base image $base (${SECONDS}s)"

# --- the operator's side: wheelhouse, PKI, inventory
"$venv_bin/python" "$repo/ansible/scripts/build-wheelhouse" --role edge --arch aarch64 \
    --out "$work/wheelhouse/edge-aarch64" 2> >(grep -v '^WARNING: Location' >&2)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=peergrid-test-ca \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
cat >"$work/hosts.yml" <<YAML
all:
  children:
    edge:
      hosts:
        mgmc-img:
          peergrid_mg_id: mg-img
          peergrid_feeder: imagetest
          peergrid_broker_host: 127.0.0.1
          peergrid_broker_port: 1883
          peergrid_ca_cert: $work/ca.crt
          peergrid_wheelhouse_dir: $work/wheelhouse
          flash_base_image: $base
          flash_output_dir: $work/out
          flash_enrolment_token: test-token-123
          # Short watchdog so the restart check takes seconds, not half a minute.
          edge_watchdog_sec: 20
          edge_start_timeout_sec: 600
YAML
log "flashing (${SECONDS}s)"
(cd "$repo/ansible" && PATH="$venv_bin:$PATH" ANSIBLE_NOCOLOR=1 ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks \
    ansible-playbook -i "$work/hosts.yml" playbooks/flash.yml) >"$work/flash.log" 2>&1 \
    || { tail -40 "$work/flash.log" >&2; log "FAIL: flash.yml (log: $work/flash.log)"; exit 1; }
image="$work/out/mgmc-img.img"
log "flashed $image (${SECONDS}s)"

# --- identity on the FAT boot partition, read back with mtools
offset=$((4 * 1024 * 1024))
mtype -i "$image@@$offset" ::user-data >"$work/user-data"
mtype -i "$image@@$offset" ::meta-data >"$work/meta-data"
grep -q '^hostname: mgmc-img$' "$work/user-data" && grep -q 'mg_id: mg-img' "$work/user-data" \
    && grep -q 'test-token-123' "$work/user-data" && grep -q 'BEGIN CERTIFICATE' "$work/user-data" \
    && grep -q '^instance-id: peergrid-mgmc-img$' "$work/meta-data" \
    || { log "FAIL: NoCloud identity on the boot partition"; cat "$work/user-data" >&2; exit 1; }
log "NoCloud identity ok"

# --- boot it
loop=$(losetup --find --show "$image")
mnt="$work/mnt"
cleanup() {
    umount "$mnt" 2>/dev/null || true
    partx --delete "$loop" 2>/dev/null || true
    losetup --detach "$loop" 2>/dev/null || true
}
trap cleanup EXIT
# partx --add fails on partitions the kernel already scanned; what matters is that p2 is there.
partx --add "$loop" 2>/dev/null || partx --update "$loop" 2>/dev/null || true
[[ -b "${loop}p2" ]] || { log "FAIL: no partition nodes for $loop"; exit 1; }
mkdir -p "$mnt"
mount "${loop}p2" "$mnt"
install -m 0755 "$here/image-probe.sh" "$mnt/usr/local/sbin/peergrid-image-probe"
cat >"$mnt/etc/systemd/system/peergrid-image-probe.service" <<UNIT
[Unit]
Description=test-image probe (not part of the product)
After=peergrid-edge.service
[Service]
Type=exec
ExecStart=/usr/local/sbin/peergrid-image-probe
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/peergrid-image-probe.service "$mnt/etc/systemd/system/multi-user.target.wants/"
rm -f "$mnt/var/lib/peergrid-probe/result"
log "booting with systemd-nspawn (${SECONDS}s)"
timeout "${PEERGRID_BOOT_TIMEOUT:-1500}" systemd-nspawn --boot --register=no --keep-unit --console=pipe \
    --machine=mgmc-img -D "$mnt" >"$work/boot.log" 2>&1 </dev/null || log "nspawn ended with $? (log: $work/boot.log)"
result=$(cat "$mnt/var/lib/peergrid-probe/result" 2>/dev/null || echo "no probe result")
echo "$result"
log "done (${SECONDS}s)"
grep -q '^READY ' <<<"$result" || { log "FAIL: peergrid-edge did not reach READY"; exit 1; }
grep -q '^RESTARTED after watchdog' <<<"$result" || { log "FAIL: no restart after the watchdog timeout"; exit 1; }
log "PASS: image flashed, booted, edge READY, restarted by the watchdog"
