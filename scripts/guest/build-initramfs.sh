#!/bin/bash
# build-initramfs.sh OUTDIR — build smolvm's default guest initramfs.
#
# Contents: /bin/busybox from busybox-static (with /bin/sh, no other applet
# links: see below) and the list of its applets (/smolvm/applets), our /init,
# /smolvm (the kit /init takes into a root filesystem: hard links),
# the guest agent /sbin/smolvm-agent (scripts/guest/agent, built by make),
# udhcpc's default script (udhcpc.script, for virtio-net),
# a few /etc files, and the /dev/console node the kernel opens for init's
# stdio (written directly as a newc entry: no root, no mknod needed).
# Outputs: OUTDIR/initramfs.cpio.gz and, because inflating costs the emulated
# guest kernel real time on slow hosts, the same archive uncompressed as
# OUTDIR/initramfs.cpio (the kernel accepts either).
#
# Environment: BUSYBOX (default /bin/busybox; must be static), SMOLVM_AGENT
# (the agent binary; default OUTDIR/smolvm-agent, where `make agent` puts it;
# must be static).
set -euo pipefail

die() { echo "build-initramfs: error: $*" >&2; exit 1; }
step() { echo "==> [initramfs] $*"; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(realpath -m "$1")
BUSYBOX=${BUSYBOX:-/bin/busybox}
INIT=$HERE/init
UDHCPC_SCRIPT=$HERE/udhcpc.script
AGENT=${SMOLVM_AGENT:-$OUT/smolvm-agent}
STAMP=$OUT/initramfs.stamp
STAGE=$OUT/initramfs-root
# fixed timestamps: same inputs, same archive
EPOCH=${SOURCE_DATE_EPOCH:-1}

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found; install it with: apt-get install busybox-static"
[ -f "$INIT" ] || die "missing $INIT"
[ -f "$UDHCPC_SCRIPT" ] || die "missing $UDHCPC_SCRIPT"
[ -x "$AGENT" ] || die "$AGENT not found: build it first (make agent, or make guest-linux)"
for t in cpio gzip sha256sum; do
    command -v "$t" >/dev/null || die "missing tool: $t (apt-get install cpio gzip coreutils)"
done
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q "statically linked"; then
    die "$BUSYBOX is not statically linked (install busybox-static)"
fi
if command -v file >/dev/null && ! file -L "$AGENT" | grep -q "statically linked"; then
    die "$AGENT is not statically linked"
fi

mkdir -p "$OUT"
HASH=$( { sha256sum < "$BUSYBOX"; sha256sum < "$INIT"; sha256sum < "$UDHCPC_SCRIPT";
          sha256sum < "$AGENT"; sha256sum < "${BASH_SOURCE[0]}"; echo "$EPOCH"; } |
        sha256sum | cut -d' ' -f1)
if [ -f "$OUT/initramfs.cpio.gz" ] && [ -f "$OUT/initramfs.cpio" ] && [ -f "$STAMP" ] &&
   [ "$(cat "$STAMP")" = "$HASH" ]; then
    echo "initramfs up to date ($OUT/initramfs.cpio.gz)"
    exit 0
fi

step "staging tree in $STAGE"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cd "$STAGE"
mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys tmp root run mnt var newroot smolvm
chmod 1777 tmp
chmod 0700 root
install -m 0755 "$BUSYBOX" bin/busybox
install -m 0755 "$INIT" init
install -m 0755 "$AGENT" sbin/smolvm-agent

# No link per applet: creating each costs the emulated guest kernel ~35 ms
# at boot (268 of them: ~10 s). The shell needs none (Debian's busybox runs
# its applets first, FEATURE_SH_STANDALONE), and the agent runs a command
# not found on PATH as the applet of that name (--busybox, --applets);
# only /bin/sh stays, for #! lines.
env -i PATH=/nonexistent "$BUSYBOX" sh -c 'basename /x/ok' >/dev/null 2>&1 ||
    die "$BUSYBOX does not run its applets without links (FEATURE_SH_STANDALONE); install busybox-static"
ln -s busybox bin/sh
"$BUSYBOX" --list | LC_ALL=C sort > smolvm/applets
n=$(wc -l < smolvm/applets)
[ "$n" -gt 100 ] || die "$BUSYBOX --list gave $n applets"
echo "    busybox $("$BUSYBOX" | head -1 | cut -d' ' -f2), $n applets (no links)"

cat > etc/fstab <<'EOF'
# mounted by /init with a single `mount -a` (order matters: proc first)
proc      /proc  proc      nosuid,nodev,noexec        0 0
sysfs     /sys   sysfs     nosuid,nodev,noexec        0 0
devtmpfs  /dev   devtmpfs  nosuid,mode=0755           0 0
tmpfs     /tmp   tmpfs     nosuid,nodev,mode=1777     0 0
EOF
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "/bin/sh" > etc/shells
cat > etc/shinit <<'EOF'
# $ENV of the console shell started by /init.
# busybox reboot/halt/poweroff without -f signal PID 1, which is waiting for
# this shell to end: act at once instead. Every way out is a reset (reboot=k),
# which the VMM takes as a clean exit; without ACPI there is no power-off.
reboot()   { /bin/busybox reboot -f; }
halt()     { /bin/busybox reboot -f; }
poweroff() { /bin/busybox reboot -f; }
EOF
sed 's|/bin/busybox|/run/smolvm/busybox|' etc/shinit > smolvm/shinit
ln -s /proc/mounts etc/mtab
# a root filesystem (smolvm.root=/dev/vda): mounted by /init in one
# `mount -a -T`, in this order (the /dev/pts and /dev/shm mount points are
# made in the devtmpfs just before)
cat > etc/fstab.root <<'EOF'
/dev/vda  /newroot          ext4      rw,noatime                 0 0
run       /newroot/run      tmpfs     nosuid,nodev,mode=0755     0 0
/dev      /newroot/dev      none      move                       0 0
/proc     /newroot/proc     none      move                       0 0
/sys      /newroot/sys      none      move                       0 0
devpts    /newroot/dev/pts  devpts    nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 0 0
shm       /newroot/dev/shm  tmpfs     nosuid,nodev,mode=1777     0 0
EOF
# the kit /init copies to the root filesystem's /run/smolvm and runs from
# there: busybox, the agent, /init itself and the shell's startup file
ln bin/busybox smolvm/busybox
ln sbin/smolvm-agent smolvm/smolvm-agent
ln init smolvm/init
# DHCP for virtio-net: `udhcpc -i eth0 -q` runs udhcpc's default script
mkdir -p etc/udhcpc
install -m 0755 "$UDHCPC_SCRIPT" etc/udhcpc/default.script

# ---- archive ---------------------------------------------------------------
# dev/ and dev/console come first as newc entries written by hand (GNU cpio
# would need a real device node, i.e. mknod as root); GNU cpio's stream of the
# tree follows and closes the archive with its trailer: one valid archive.
# Header fields: magic ino mode uid gid nlink mtime filesize devmajor devminor
# rdevmajor rdevminor namesize check.
newc_entry() { # name mode(octal, with type bits) nlink rdevmajor rdevminor
    local name=$1 namesize=$(( ${#1} + 1 ))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        $((900000 + namesize)) "$2" 0 0 "$3" "$EPOCH" 0 0 0 "$4" "$5" "$namesize" 0
    printf '%s\0' "$name"
    # header (110 bytes) + name, padded to a multiple of 4
    head -c $(( (4 - (110 + namesize) % 4) % 4 )) /dev/zero
}

step "writing archive"
find . -mindepth 1 -exec touch -h -d "@$EPOCH" {} +
{
    newc_entry dev $((0040755)) 2 0 0
    newc_entry dev/console $((0020600)) 1 5 1
    # the tree: owner root, sorted, reproducible
    find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' |
        cpio --quiet -o -H newc -R 0:0 --reproducible
} > "$OUT/initramfs.cpio.tmp"
gzip -9 -n -c "$OUT/initramfs.cpio.tmp" > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"

# sanity: the archive lists what /init needs
list=$(cpio -it --quiet < "$OUT/initramfs.cpio" 2>/dev/null)
for f in init bin/busybox bin/sh etc/fstab etc/fstab.root dev/console smolvm/applets \
         sbin/smolvm-agent smolvm/busybox smolvm/smolvm-agent smolvm/init smolvm/shinit; do
    grep -qx "$f" <<< "$list" || die "archive lacks $f"
done
echo "$HASH" > "$STAMP"
printf '    initramfs.cpio.gz %s bytes, initramfs.cpio %s bytes, %s entries\n' \
    "$(stat -c %s "$OUT/initramfs.cpio.gz")" "$(stat -c %s "$OUT/initramfs.cpio")" \
    "$(wc -l <<< "$list")"
echo "initramfs built: $OUT/initramfs.cpio.gz"
