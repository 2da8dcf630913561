#!/usr/bin/env bash
# bench/volumes.sh [--runs N] [--mib M] [--files K] [--wait-idle S] [--json]
#   shared folders: smolvm's virtio-9p against QEMU's virtio-9p-device on the
#   same host directory, from the virtio test guest (build/guest/virtio.elf).
#
# The guest's 9P2000.L client (tests/guests/virtio.c, test_9p) runs from
# guest user mode, one request at a time, msize 128 KiB:
#   write   M MiB (default 64) to a new file in 64 KiB Twrites, then Tfsync
#   read    the same M MiB back in 64 KiB Treads
#   create  K empty files (default 10000): Twalk (clone), Tlcreate, Tclunk
#   stat    each: Twalk, Tgetattr, Tclunk
#   remove  each: Tunlinkat
# as the guest reports them (MB/s, operations/s). smolvm: { type = "virtio-9p",
# path = DIR }; QEMU 7.2: -fsdev local,path=DIR,security_model=none
# -device virtio-9p-device (microvm, acpi=off, modern virtio-mmio). Both on a
# fresh empty directory in the same file system ($TMPDIR), 1 vCPU, 64 MiB.
# Median [min..max] of N runs (default 5), interleaved smolvm/QEMU, and the
# ratio smolvm/QEMU (> 1: smolvm better). --json prints the medians as JSON.
# --wait-idle S: first wait (at most S seconds) for an idle host.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=5
MIB=64
FILES=10000
JSON=0
WAIT_IDLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --mib) MIB=${2:?}; shift 2 ;;
        --files) FILES=${2:?}; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "volumes.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$RUNS" "$MIB" "$FILES"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "volumes.sh: numbers must be positive" >&2; exit 2; }
done

ROOT=$(dirname "$BENCH")
cd "$ROOT"
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
die() { echo "volumes.sh: $*" >&2; exit 1; }
[ -x build/smolvm ] && [ -f build/plugins/virtio-9p.so ] || die "run 'make all'"
[ -f build/guest/virtio.elf ] || die "build/guest/virtio.elf missing: run 'make test-guests'"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-volbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ELF=$(realpath build/guest/virtio.elf)
ARGS="p9bench=$MIB p9files=$FILES"
SHARE=$WORK/share
cat > "$WORK/p9.lua" <<LUA
machine {
  name = "volbench", cpus = 1, memory = "64M", kernel = "$ELF", cmdline = "$ARGS",
  devices = { { type = "uart" }, { type = "virtio-9p", path = "$SHARE", tag = "bench" } },
}
LUA

run_one() { # smolvm|qemu -> the two p9bench lines
    rm -rf "$SHARE" && mkdir -p "$SHARE"
    case "$1" in
        smolvm) timeout -k 5 600 build/smolvm boot "$WORK/p9.lua" ;;
        qemu) timeout -k 5 600 "$QEMU" -M microvm,acpi=off -enable-kvm -cpu host,-arch-capabilities \
                  -nographic -no-reboot -m 64M -global virtio-mmio.force-legacy=false \
                  -kernel "$ELF" -append "$ARGS" \
                  -fsdev local,id=fs0,path="$SHARE",security_model=none \
                  -device virtio-9p-device,fsdev=fs0,mount_tag=bench ;;
    esac < /dev/null 2>&1 | tr -d '\r' | grep -E '^(p9bench|FAIL)' || true
}

[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"
load_begin
: > "$WORK/smolvm.txt"
: > "$WORK/qemu.txt"
for i in $(seq 1 "$RUNS"); do
    log "run $i/$RUNS"
    run_one smolvm >> "$WORK/smolvm.txt"
    run_one qemu >> "$WORK/qemu.txt"
done
load_end
grep -h FAIL "$WORK/smolvm.txt" "$WORK/qemu.txt" >&2 && die "a run failed"

"$PY" - "$WORK/smolvm.txt" "$WORK/qemu.txt" "$JSON" "$RUNS" "$MIB" "$FILES" "$OTHER_LOAD" <<'PY'
import json, re, statistics, sys
def parse(path):
    m = {k: [] for k in ("write", "read", "create", "stat", "remove")}
    for line in open(path):
        for k, v in re.findall(r"(write|read|create|stat|remove) ([0-9.]+)", line):
            m[k].append(float(v))
    return m
s, q = parse(sys.argv[1]), parse(sys.argv[2])
units = {"write": "MB/s", "read": "MB/s", "create": "ops/s", "stat": "ops/s", "remove": "ops/s"}
out = {}
for k in units:
    if not s[k] or not q[k]:
        continue
    ms, mq = statistics.median(s[k]), statistics.median(q[k])
    out[k] = {"unit": units[k], "smolvm": ms, "qemu": mq, "ratio": ms / mq if mq else None,
              "smolvm_all": s[k], "qemu_all": q[k]}
meta = {"runs": int(sys.argv[4]), "mib": int(sys.argv[5]), "files": int(sys.argv[6]),
        "other_load_cpus": float(sys.argv[7])}
if sys.argv[3] == "1":
    print(json.dumps({"meta": meta, "results": out}, indent=1))
    sys.exit(0)
print("virtio-9p, %(runs)d runs, %(mib)d MiB, %(files)d files; other load on the host: "
      "%(other_load_cpus).2f CPUs" % meta)
print("%-8s %-6s %24s %24s %7s" % ("metric", "unit", "smolvm median [min..max]",
                                    "QEMU median [min..max]", "ratio"))
for k, r in out.items():
    f = lambda a: "%.0f [%.0f..%.0f]" % (statistics.median(a), min(a), max(a))
    print("%-8s %-6s %24s %24s %7.2f" % (k, r["unit"], f(r["smolvm_all"]), f(r["qemu_all"]),
                                         r["ratio"]))
PY
