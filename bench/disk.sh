#!/usr/bin/env bash
# bench/disk.sh [--runs N] [--mib M] [--disk-mib D] [--small-mib S] [--pack-mib P]
#               [--json] [--wait-idle S]
#   disks carried by bundles (issue 13): read throughput from a bundle-backed
#   disk against a raw file and QEMU, and pack/restore with a big vs a small disk.
#
# All runs use the virtio test guest (build/guest/virtio.elf), 1 vCPU, 64 MiB,
# with its read-only bench `blkread=M` (tests/guests/virtio.c): M MiB of
# sequential reads from sector 0 in 64 KiB requests at queue depth 8, then
# 4000 random 4 KiB reads at queue depth 1 over those M MiB, as the guest
# reports them (TSC, driver in guest user mode), then a hash of 4 KiB in every
# MiB that must equal the one computed here on the image (the guest read the
# right data). Median [min..max] of N runs (default 3), configurations
# interleaved within each run, one warm-up run not counted.
#
#   read   the same content, a D MiB sparse image (default 2048) with M MiB of
#          random data at its start (default 256), read by
#            raw      smolvm boot, { type = "virtio-blk", path = IMG, readonly = true }
#            first    smolvm run of a bundle packed from that machine, first
#                     restore (a fresh $SMOLVM_CACHE_DIR: the disk is unpacked
#                     from the bundle into the cache, then read from there)
#            cached   the same bundle, later restores (the cache has the disk)
#            overlay  a bundle packed with { path = IMG, overlay = COW } instead:
#                     the restored guest reads through its private overlay
#                     (empty: the guest never writes) from the cache file
#            qemu     QEMU 7.2 -M microvm on IMG: -drive file=IMG,format=raw,
#                     if=none,readonly=on -device virtio-blk-device
#          A bundle is packed with `blkwait=1`: the guest sets up the device,
#          prints "blkread: waiting" (pack's --ready) and waits for a byte on
#          the serial port; after a restore this script sends it once smolvm -v
#          prints "restored", so the reads run in the restored machine. Raw and
#          QEMU runs get the same command line and the byte as soon as the guest
#          prints "blkread: waiting". Every image and cache file is in the host's
#          page cache (it was just written or read): this compares the VMMs'
#          I/O paths, not the disk.
#   pack   the same P MiB of random data (default 64) at the start of an S MiB
#          (default 128) and of a D MiB sparse image, readonly and with an
#          overlay: smolvm pack (start to exit, and its "paused" figure), the
#          bundle's size, the first restore with a fresh cache (start to the
#          guest running again, its CPU time, smolvm's own "unpacked" and
#          "restored in"), the cache file's disk use (sparse), and a cached
#          restore. Restore must not grow with the disk's size: the D/S column.
#   save   the 2nd bundle (D MiB, overlay) restored with -o, saved by SIGUSR1
#          after the guest's reads (a small change: a few hundred KiB of guest
#          memory): the new bundle's size and pause. Where `smolvm run` has
#          --flat (child bundles), the default save is a child and --flat the
#          full bundle, both measured; otherwise the child row is a placeholder.
#
# Needs: build/smolvm + its virtio-blk plugin (`make all`), build/guest/virtio.elf
# (`make test-guests`), qemu-system-x86_64, python3, timeout; about
# M + 4P MiB of disk in $TMPDIR plus the bundles (~M + 2P MiB).
# Output: the tables on stdout, bench/results/disk-latest.json (summary), a
# dated copy disk-DATE.json, and bench/results/disk-raw/ (one tsrun.py JSON per
# run, transcripts included). --json prints the summary JSON instead of the
# tables. --wait-idle S: first wait (at most S seconds) for an idle host.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=3
MIB=256
DISK_MIB=2048
SMALL_MIB=128
PACK_MIB=64
K4=4000
JSON=0
WAIT_IDLE=0
num() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "disk.sh: $1 wants a positive number" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --mib) MIB=${2:?--mib needs a number}; shift 2 ;;
        --disk-mib) DISK_MIB=${2:?--disk-mib needs a number}; shift 2 ;;
        --small-mib) SMALL_MIB=${2:?--small-mib needs a number}; shift 2 ;;
        --pack-mib) PACK_MIB=${2:?--pack-mib needs a number}; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "disk.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
num --runs "$RUNS"; num --mib "$MIB"; num --disk-mib "$DISK_MIB"
num --small-mib "$SMALL_MIB"; num --pack-mib "$PACK_MIB"
[ "$MIB" -le "$DISK_MIB" ] || { echo "disk.sh: --mib must not exceed --disk-mib" >&2; exit 2; }
[ "$PACK_MIB" -le "$SMALL_MIB" ] && [ "$SMALL_MIB" -lt "$DISK_MIB" ] && [ "$PACK_MIB" -le "$MIB" ] ||
    { echo "disk.sh: wants --pack-mib <= --small-mib < --disk-mib and --pack-mib <= --mib" >&2; exit 2; }

ROOT=$(dirname "$BENCH")
cd "$ROOT"
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
RES=$BENCH/results
RAW=$RES/disk-raw
die() { echo "disk.sh: $*" >&2; exit 1; }
[ -x build/smolvm ] || die "build/smolvm missing: run 'make all'"
[ -f build/plugins/virtio-blk.so ] || die "build/plugins/virtio-blk.so missing: run 'make all'"
[ -f build/guest/virtio.elf ] || die "build/guest/virtio.elf missing: run 'make test-guests'"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-diskbench.XXXXXX")
cleanup() {
    local j
    set +e
    for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null || true; done
    wait
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$RAW"
mkdir -p "$RAW" "$WORK/plugins"
# What is measured is a copy (others may rebuild build/ meanwhile).
cp build/smolvm "$WORK/smolvm"
cp build/plugins/*.so "$WORK/plugins/"
cp build/guest/virtio.elf "$WORK/virtio.elf"
SMOLVM=$WORK/smolvm
ELF=$WORK/virtio.elf
# trust records of the bundles packed here: private to this run
export SMOLVM_DATA_DIR=$WORK/data
PACK_CACHE=$WORK/cache-pack
QEMU_BASE=("$QEMU" -M microvm,acpi=off -enable-kvm -cpu host,-arch-capabilities -nographic -no-reboot
           -m 64M -global virtio-mmio.force-legacy=false -kernel "$ELF")

[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"

# ---- images -----------------------------------------------------------------
log "images: $MIB MiB of random data at the start of a $DISK_MIB MiB sparse image; $PACK_MIB MiB of it in $SMALL_MIB and $DISK_MIB MiB images"
head -c "${MIB}M" /dev/urandom > "$WORK/data.bin"
mkimg() {         # file size-mib data-mib
    rm -f "$1"
    truncate -s "${2}M" "$1"
    dd if="$WORK/data.bin" of="$1" bs=1M count="$3" conv=notrunc status=none
}
IMG=$WORK/read.img
mkimg "$IMG" "$DISK_MIB" "$MIB"
mkimg "$WORK/p-small.img" "$SMALL_MIB" "$PACK_MIB"
mkimg "$WORK/p-big.img" "$DISK_MIB" "$PACK_MIB"
# The guest's hash: FNV-1a over the 64-bit words of 4 KiB at i MiB + (i % 256) * 4 KiB.
img_hash() {
    $PY - "$1" "$2" <<'PY'
import struct, sys
h, f = 0xcbf29ce484222325, open(sys.argv[1], "rb")
for i in range(int(sys.argv[2])):
    f.seek((i << 20) + (i % 256) * 4096)
    for (w,) in struct.iter_unpack("<Q", f.read(4096)):
        h = ((h ^ w) * 0x100000001b3) & (2**64 - 1)
print("%x" % h)
PY
}
HASH_READ=$(img_hash "$IMG" "$MIB")
HASH_PACK=$(img_hash "$WORK/p-big.img" "$PACK_MIB")
[ "$HASH_PACK" = "$(img_hash "$WORK/p-small.img" "$PACK_MIB")" ] || die "the two pack images differ"

READ_ARGS="blkread=$MIB blkread4k=$K4"
PACK_ARGS="blkread=$PACK_MIB blkread4k=500 blkwait=1 blkhold=1"
script() {        # name cmdline disk-options
    cat > "$WORK/$1.lua" <<LUA
machine {
  name = "dbench-$1", cpus = 1, memory = "64M", kernel = "$ELF", cmdline = "$2",
  devices = { { type = "uart" }, { type = "virtio-blk", $3 } },
}
LUA
}
script raw "$READ_ARGS blkwait=1" "path = \"$IMG\", readonly = true"
script b-ro "$READ_ARGS blkwait=1" "path = \"$IMG\", readonly = true"
script b-ov "$READ_ARGS blkwait=1" "path = \"$IMG\", overlay = \"$WORK/read.cow\""
for size in small big; do
    script "p-$size-ro" "$PACK_ARGS" "path = \"$WORK/p-$size.img\", readonly = true"
    script "p-$size-ov" "$PACK_ARGS" "path = \"$WORK/p-$size.img\", overlay = \"$WORK/p-$size.cow\""
done

load_begin
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
SHA=$(sha256sum "$SMOLVM" | cut -c1-16)
HAS_FLAT=0
"$SMOLVM" run --help 2>&1 | grep -q -- '--flat' && HAS_FLAT=1

done_marks=(--mark done='^virtio: done' --mark-err cl='^smolvm: cmdline: ')
# raw file and QEMU: the same guest command line (blkwait=1), the byte at once
wait_marks=(--mark wait='^blkread: waiting' --send-after wait=x)
# pack NAME OUT-BUNDLE RAW-NAME
pack() {
    rm -f "$2" "$WORK/$1.cow"
    tsrun --timeout 180 --mark ready='^blkread: waiting' --mark-err saved='^smolvm: saved ' -- \
        env SMOLVM_CACHE_DIR="$PACK_CACHE" "$SMOLVM" pack "$WORK/$1.lua" --ready "blkread: waiting" \
        -v -o "$2" > "$RAW/$3.json"
    stat -c %s "$2" > "$RAW/$3.size" 2>/dev/null || echo 0 > "$RAW/$3.size"
}
# restore BUNDLE CACHE RAW-NAME [run options]: the byte the guest waits for
# goes in once smolvm says "restored"; a held guest (blkhold) gets another at
# "holding" (or, when a save is asked for, SIGUSR1 then and the byte once saved)
restore() {
    local b=$1 c=$2 name=$3
    shift 3
    tsrun --timeout 120 "${done_marks[@]}" --mark run='^' --mark-err restored='^smolvm: restored ' \
        --send-after restored=x "$@" -- \
        env SMOLVM_CACHE_DIR="$c" "$SMOLVM" run -p -v "$b" "${RUN_OPTS[@]}" > "$RAW/$name.json"
}
read_run() {      # config index
    local out=$RAW/read-$1-$2.json
    case "$1" in
        raw) tsrun --timeout 120 "${done_marks[@]}" "${wait_marks[@]}" -- \
                 "$SMOLVM" boot "$WORK/raw.lua" -v > "$out" ;;
        qemu) tsrun --timeout 120 "${done_marks[@]}" "${wait_marks[@]}" -- \
                  "${QEMU_BASE[@]}" -append "$QEMU_CL" \
                  -drive id=d0,file="$IMG",format=raw,if=none,readonly=on \
                  -device virtio-blk-device,drive=d0 > "$out" ;;
        first) rm -rf "$WORK/cache-first"
               restore "$WORK/b-ro.smolmachine" "$WORK/cache-first" "read-$1-$2"
               rm -rf "$WORK/cache-first" ;;
        cached) restore "$WORK/b-ro.smolmachine" "$WORK/cache-warm" "read-$1-$2" ;;
        overlay) restore "$WORK/b-ov.smolmachine" "$WORK/cache-warm" "read-$1-$2" ;;
    esac
}
# QEMU's command line: smolvm's, less its virtio_mmio.device= (microvm adds its own)
qemu_cmdline() {
    $PY -c '
import json, sys
for e in json.load(open(sys.argv[1]))["err"]:
    if e[1].startswith("smolvm: cmdline: "):
        print(" ".join(w for w in e[1][len("smolvm: cmdline: "):].split()
                       if not w.startswith("virtio_mmio.device=") and w != "smolvm.tty=0")); break
else:
    sys.exit("disk.sh: smolvm -v printed no cmdline")' "$1"
}

# ---- read throughput ----------------------------------------------------------
RUN_OPTS=()
log "read: packing the two bundles ($DISK_MIB MiB disk, $MIB MiB data; readonly / overlay)"
pack b-ro "$WORK/b-ro.smolmachine" pack-read-ro
pack b-ov "$WORK/b-ov.smolmachine" pack-read-ov
[ -s "$WORK/b-ro.smolmachine" ] && [ -s "$WORK/b-ov.smolmachine" ] ||
    die "smolvm pack wrote no bundle (see $RAW/pack-read-*.json)"
log "read: warm-up (not counted)"
read_run raw 0
QEMU_CL=$(qemu_cmdline "$RAW/read-raw-0.json")
log "QEMU cmdline: $QEMU_CL"
for c in qemu first cached overlay; do read_run "$c" 0; done
for i in $(seq 1 "$RUNS"); do
    log "read: run $i/$RUNS"
    for c in raw qemu first cached overlay; do read_run "$c" "$i"; done
done

# ---- pack and restore: small vs big disk ----------------------------------------
pack_round() {    # index
    local kind size n
    for kind in ro ov; do
        for size in small big; do
            n=$size-$kind-$1
            pack "p-$size-$kind" "$WORK/p-$size-$kind.smolmachine" "pack-$n"
            rm -rf "$WORK/cache-first"
            restore "$WORK/p-$size-$kind.smolmachine" "$WORK/cache-first" "first-$n" \
                --mark hold='^blkread: holding' --send-after hold=y
            du -k -s "$WORK"/cache-first/disk-* 2>/dev/null | awk '{s += $1} END {print s + 0}' \
                > "$RAW/first-$n.cache-kib"
            restore "$WORK/p-$size-$kind.smolmachine" "$WORK/cache-first" "cached-$n" \
                --mark hold='^blkread: holding' --send-after hold=y
            rm -rf "$WORK/cache-first"
        done
    done
}
log "pack: warm-up (not counted)"
pack_round 0
for i in $(seq 1 "$RUNS"); do
    log "pack: run $i/$RUNS"
    pack_round "$i"
done

# ---- a save after a small change --------------------------------------------------
save_run() {      # name index [run options]
    local name=$1 i=$2
    shift 2
    rm -f "$WORK/saved.smolmachine"
    RUN_OPTS=(-o "$WORK/saved.smolmachine" "$@")
    restore "$WORK/p-big-ov.smolmachine" "$WORK/cache-warm" "save-$name-$i" \
        --mark hold='^blkread: holding' --signal-after hold=USR1 \
        --mark-err saved='^smolvm: saved ' --send-after saved=y
    RUN_OPTS=()
    stat -c %s "$WORK/saved.smolmachine" > "$RAW/save-$name-$i.size" 2>/dev/null || echo 0 > "$RAW/save-$name-$i.size"
}
log "save after a small change: $RUNS runs$([ $HAS_FLAT = 1 ] && echo ' each, child and --flat')"
for i in $(seq 0 "$RUNS"); do
    save_run default "$i"
    [ $HAS_FLAT = 1 ] && save_run flat "$i" --flat
done
rm -f "$RAW"/*-0.json "$RAW"/*-0.size "$RAW"/*-0.cache-kib
stat -c %s "$WORK/p-big-ov.smolmachine" > "$RAW/save-parent.size"

load_end
cat > "$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "runs": $RUNS, "mib": $MIB, "disk_mib": $DISK_MIB,
 "small_mib": $SMALL_MIB, "pack_mib": $PACK_MIB, "k4": $K4, "has_flat": $HAS_FLAT,
 "hash_read": "$HASH_READ", "hash_pack": "$HASH_PACK",
 "host": {"kernel": "$(uname -r)", "cpus": $(nproc),
          "cpu": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
          "kvm": "$(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'kvm_pvm (software nested)'; fi)",
          "fs": $(jstr "$(df -T "$WORK" | awk 'NR==2{print $2" "$1}')"),
          "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$LOAD_AFTER",
          "other_load_cpus": $OTHER_LOAD, "bench_seconds": $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')},
 "smolvm": {"git": "$GIT_REV", "sha256_16": "$SHA"},
 "qemu": {"version": "$("$QEMU" --version | head -1)"},
 "cmdline": {"read": $(jstr "$QEMU_CL")}}
EOF

# ---- report ---------------------------------------------------------------------
OUT=$RES/disk-latest.json
$PY - "$RAW" "$OUT" "$JSON" "$BENCH" <<'PY'
import glob, json, os, re, sys
raw, out_path, as_json, bench = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
sys.path.insert(0, bench)
from report import stats   # median/min/max/n/values, as run.sh's report

meta = json.load(open(os.path.join(raw, "meta.json")))
notes = []
def load(pat):
    runs = []
    for p in sorted(glob.glob(os.path.join(raw, pat)), key=lambda p: int(re.findall(r"\d+", p)[-1])):
        r = json.load(open(p))
        r["_path"] = p
        runs.append(r)
    return runs
def side(r, suffix):
    try:
        return open(r["_path"][:-len(".json")] + suffix).read().strip()
    except OSError:
        return None
def line(r, rx, stream="out"):
    for e in r[stream]:
        if re.search(rx, e[1]):
            return e
    return None
def num(r, rx, stream="err"):
    e = line(r, rx, stream)
    return float(re.search(rx, e[1]).group(1)) if e else None
def name(r):
    return os.path.basename(r["_path"])
def guest_ok(r, want_hash):
    h = line(r, r"^blkread: hash ")
    ok = r["rc"] == 0 and "done" in r["marks"] and line(r, r"^FAIL") is None
    if ok and (not h or h[1].split()[2] != want_hash):
        notes.append("%s: the guest's hash is %s, the image's %s"
                     % (name(r), h and h[1].split()[2], want_hash))
        return False
    if not ok:
        notes.append("%s: exit %s, %s" % (name(r), r["rc"], "no 'virtio: done'" if "done" not in r["marks"]
                                          else "a FAIL line"))
    return ok
def running(r):
    """Time and CPU time of the first console output after the restore: the
    newline that ends the 'blkread: waiting' the guest was saved in."""
    o = r["out"]
    if not o:
        return None, None
    if o[0][1] != "":
        notes.append("%s: first console output after the restore is %r, not the end of the "
                     "'blkread: waiting' line" % (name(r), o[0][1]))
    return o[0][0], r["marks_cpu"].get("run")
ms = lambda x: None if x is None else x * 1e3
mib = lambda x: None if x is None else x / 1048576

metrics = {}
def add(key, label, unit, vals):
    metrics[key] = {"label": label, "unit": unit, "stats": stats(list(vals))}
    return metrics[key]["stats"]

# read throughput
CONFIGS = [("raw", "smolvm, raw file (readonly)"),
           ("first", "smolvm, bundle: first restore (disk unpacked into a fresh cache)"),
           ("cached", "smolvm, bundle: cached restore"),
           ("overlay", "smolvm, bundle with overlay: cached restore"),
           ("qemu", "QEMU, raw file (readonly)")]
RX = r"^blkread: read ([\d.]+) MB/s 4k-read (\d+) req/s"
for c, label in CONFIGS:
    runs = load("read-%s-*.json" % c)
    seq, k4 = [], []
    for r in runs:
        ok = guest_ok(r, meta["hash_read"])
        e = line(r, RX)
        m = re.search(RX, e[1]) if e and ok else None
        seq.append(float(m.group(1)) if m else None)
        k4.append(float(m.group(2)) if m else None)
    add("read_%s_mbs" % c, label + ": sequential read", "MB/s", seq)
    add("read_%s_4k" % c, label + ": random 4 KiB reads", "req/s", k4)
    if c in ("first", "cached", "overlay"):
        add("read_%s_restored_ms" % c, label + ": smolvm 'restored in'", "ms",
            [num(r, r"^smolvm: restored \S+ in ([\d.]+) ms") for r in runs])

# pack and restore
for kind in ("ro", "ov"):
    for size in ("small", "big"):
        n = "%s-%s" % (size, kind)
        packs, firsts, cached = load("pack-%s-*.json" % n), load("first-%s-*.json" % n), load("cached-%s-*.json" % n)
        for r in packs:
            if r["rc"] != 0 or "saved" not in r["marks"]:
                notes.append("%s: pack failed (exit %s)" % (name(r), r["rc"]))
        k = "%s_%s_" % (kind, size)
        add(k + "pack_ms", "pack: start to exit", "ms",
            [ms(r["exit_s"]) if r["rc"] == 0 else None for r in packs])
        add(k + "pack_cpu_ms", "pack: CPU time", "ms", [ms(r["cpu_s"]) if r["rc"] == 0 else None for r in packs])
        add(k + "pack_paused_ms", "pack: VM paused while saving", "ms",
            [num(r, r"paused ([\d.]+) ms") for r in packs])
        add(k + "bundle_mib", "bundle size", "MiB", [mib(int(side(r, ".size") or 0)) or None for r in packs])
        ok_f = [guest_ok(r, meta["hash_pack"]) for r in firsts]
        ok_c = [guest_ok(r, meta["hash_pack"]) for r in cached]
        rf = [running(r) for r in firsts]
        rc = [running(r) for r in cached]
        add(k + "first_running_ms", "first restore (fresh cache): start to guest running", "ms",
            [ms(t) if ok else None for (t, _), ok in zip(rf, ok_f)])
        add(k + "first_cpu_ms", "  CPU time to guest running (10 ms ticks)", "ms",
            [ms(c) if ok else None for (_, c), ok in zip(rf, ok_f)])
        add(k + "first_unpack_ms", "  smolvm 'unpacked ... in'", "ms",
            [num(r, r"^smolvm: unpacked .* in ([\d.]+) ms") for r in firsts])
        add(k + "first_restored_ms", "  smolvm 'restored in' (unpack included)", "ms",
            [num(r, r"^smolvm: restored \S+ in ([\d.]+) ms") for r in firsts])
        add(k + "cache_mib", "  cache: the disk file's disk use (sparse)", "MiB",
            [int(side(r, ".cache-kib") or 0) / 1024 for r in firsts])
        add(k + "cached_running_ms", "cached restore: start to guest running", "ms",
            [ms(t) if ok else None for (t, _), ok in zip(rc, ok_c)])
        add(k + "cached_restored_ms", "  smolvm 'restored in'", "ms",
            [num(r, r"^smolvm: restored \S+ in ([\d.]+) ms") for r in cached])
        for r in cached:
            if line(r, r"^smolvm: unpacked", "err"):
                notes.append("%s: a cached restore unpacked the disk again" % name(r))

# save after a small change
parent = int(open(os.path.join(raw, "save-parent.size")).read())
for how in (("default", "flat") if meta["has_flat"] else ("default",)):
    runs = load("save-%s-*.json" % how)
    for r in runs:
        if "saved" not in r["marks"] or not guest_ok(r, meta["hash_pack"]):
            notes.append("%s: the save did not go as expected" % name(r))
    add("save_%s_mib" % how, "size", "MiB", [mib(int(side(r, ".size") or 0)) or None for r in runs])
    add("save_%s_paused_ms" % how, "VM paused while saving", "ms",
        [num(r, r"paused ([\d.]+) ms") for r in runs])
    add("save_%s_line" % how, "", "", [])
    metrics["save_%s_line" % how]["text"] = [l[1] for r in runs[:1] for l in r["err"]
                                             if l[1].startswith("smolvm: saved ")]

if meta["host"]["other_load_cpus"] > 0.2:
    notes.append("the host was not idle: other processes used %.2f of %d CPUs on average "
                 "during the benchmark; times are inflated and noisy"
                 % (meta["host"]["other_load_cpus"], meta["host"]["cpus"]))
summary = {"meta": meta, "metrics": metrics, "parent_bundle_bytes": parent, "notes": notes}
with open(out_path, "w") as f:
    json.dump(summary, f, indent=1)
    f.write("\n")
if as_json:
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    sys.exit(0)

def fmt(s, unit):
    if not s:
        return "-"
    d = 0 if unit in ("req/s", "ms") and s["median"] >= 100 else 1
    if unit == "MiB":
        d = 2 if s["median"] < 10 else 1
    if s["n"] == 1 or s["min"] == s["max"]:
        return "%.*f" % (d, s["median"])
    return "%.*f [%.*f..%.*f]" % (d, s["median"], d, s["min"], d, s["max"])
def med(key):
    s = metrics[key]["stats"]
    return s["median"] if s else None
def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"
h = meta["host"]
print("disks in bundles (issue 13): virtio test guest, 1 vCPU, 64 MiB, virtio-mmio; vs %s"
      % meta["qemu"]["version"])
print("%s UTC, host %s, %d CPUs (%s), kernel %s, files on %s; smolvm %s"
      % (meta["date"].replace("T", " ").rstrip("Z"), h["kvm"], h["cpus"], h["cpu"], h["kernel"],
         h["fs"], meta["smolvm"]["git"]))
print("each: median [min..max] of %d runs; %.0f s; other processes used %.2f CPUs "
      "meanwhile (load average before %s, after %s)"
      % (meta["runs"], h["bench_seconds"], h["other_load_cpus"], h["loadavg_before"], h["loadavg_after"]))
print()
print("1. read throughput: %d MiB sparse disk, %d MiB of random data at its start; guest blkread=%d: "
      "sequential 64 KiB QD8, then %d random 4 KiB QD1 (hash checked: %s)"
      % (meta["disk_mib"], meta["mib"], meta["mib"], meta["k4"], meta["hash_read"]))
w = max(len(l) for _, l in CONFIGS)
print("%-*s  %-26s  %-26s  %-15s  %s" % (w, "disk", "sequential read (MB/s)", "random 4 KiB (req/s)",
                                         "vs raw seq/4k", "vs QEMU seq/4k"))
print("-" * (w + 100))
for c, label in CONFIGS:
    s, k = metrics["read_%s_mbs" % c], metrics["read_%s_4k" % c]
    print("%-*s  %-26s  %-26s  %-15s  %s"
          % (w, label, fmt(s["stats"], "MB/s"), fmt(k["stats"], "req/s"),
             "%s / %s" % (ratio(med("read_%s_mbs" % c), med("read_raw_mbs")),
                          ratio(med("read_%s_4k" % c), med("read_raw_4k"))),
             "%s / %s" % (ratio(med("read_%s_mbs" % c), med("read_qemu_mbs")),
                          ratio(med("read_%s_4k" % c), med("read_qemu_4k")))))
print("smolvm 'restored in' before these reads: first %s ms (unpack of %d MiB included), cached %s ms, "
      "overlay %s ms" % (fmt(metrics["read_first_restored_ms"]["stats"], "ms"), meta["mib"],
                         fmt(metrics["read_cached_restored_ms"]["stats"], "ms"),
                         fmt(metrics["read_overlay_restored_ms"]["stats"], "ms")))
print()
print("2. pack and restore: the same %d MiB of random data at the start of a %d MiB and a %d MiB "
      "sparse disk" % (meta["pack_mib"], meta["small_mib"], meta["disk_mib"]))
cols = ("%d MiB disk" % meta["small_mib"], "%d MiB disk" % meta["disk_mib"])
keys = [k[len("ro_small_"):] for k in metrics if k.startswith("ro_small_")]
w = max(len(metrics["ro_small_" + k]["label"]) + len(metrics["ro_small_" + k]["unit"]) + 5 for k in keys)
print("%-*s  %-26s  %-26s  %s" % (w, "metric", cols[0], cols[1], "big/small"))
print("-" * (w + 70))
for kind, title in (("ro", "readonly disk { path = IMG, readonly = true }"),
                    ("ov", "disk with overlay { path = IMG, overlay = COW }")):
    print(title + ":")
    for k in keys:
        a, b = metrics["%s_small_%s" % (kind, k)], metrics["%s_big_%s" % (kind, k)]
        print("  %-*s  %-26s  %-26s  %s" % (w - 2, "%s (%s)" % (a["label"], a["unit"]), fmt(a["stats"], a["unit"]),
                                           fmt(b["stats"], b["unit"]),
                                           ratio(b["stats"] and b["stats"]["median"],
                                                 a["stats"] and a["stats"]["median"])))
print()
print("3. save after a small change: the %d MiB overlay bundle (%.2f MiB) restored with -o, "
      "SIGUSR1 after the guest's %d MiB of reads"
      % (meta["disk_mib"], parent / 1048576, meta["pack_mib"]))
if meta["has_flat"]:
    for how, label in (("default", "child bundle (run -o)"), ("flat", "full bundle (run --flat -o)")):
        print("  %-34s  size %s MiB (%.1f%% of the parent), paused %s ms"
              % (label, fmt(metrics["save_%s_mib" % how]["stats"], "MiB"),
                 100 * (med("save_%s_mib" % how) or 0) * 1048576 / parent,
                 fmt(metrics["save_%s_paused_ms" % how]["stats"], "ms")))
else:
    print("  %-34s  size %s MiB, paused %s ms" % ("saved bundle (run -o, full)",
          fmt(metrics["save_default_mib"]["stats"], "MiB"),
          fmt(metrics["save_default_paused_ms"]["stats"], "ms")))
    print("  %-34s  PLACEHOLDER: this smolvm has no child bundles (`run --help` has no --flat)"
          % "child bundle after a small change")
for t in metrics["save_default_line"].get("text", []):
    print("  (%s)" % t)
print()
print("QEMU kernel command line: %s" % meta["cmdline"]["read"])
for n in notes:
    print("NOTE: %s" % n)
print("\nsummary: %s; per-run data and console transcripts: %s/"
      % (os.path.relpath(out_path), os.path.relpath(raw)))
PY
cp "$OUT" "$RES/disk-$(date -u +%Y%m%dT%H%M%SZ).json"
