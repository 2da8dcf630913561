#!/usr/bin/env bash
# bench/run.sh [--runs N] [--linux] [--json] [--wait-idle S] — smolvm vs QEMU on the same guests.
#
# Measures (each the median of N runs, with min/max; QEMU/smolvm ratios):
#   ticker  time to the first console line, to `tick 0`, and the wall time of a
#           whole `ticks=1` run (process start to exit);
#   memory  peak RSS of the VMM during a `ticks=20` run, split into the guest
#           RAM the guest touched and the VMM's own overhead;
#   linux   (--linux) the default Linux guest: smolvm's time to the first
#           console line, `smolvm guest ready`, the shell's answer to a
#           command sent then, and the exit after end of input (^D); QEMU's
#           time to its last console line before KVM's first emulation
#           failure stops it (bounded at 120 s), and that line.
# Both VMMs get the same kernel command line: the full one smolvm uses (read
# from `smolvm -v`, host-specific flags included).
#
# Needs: build/smolvm and its plugins (`make all`), build/guest/ticker.elf
# (`make test-guests` / `make guest`), for --linux build/guest/vmlinux and
# build/guest/initramfs.cpio (`make guest`), qemu-system-x86_64, python3.
# Output: a table on stdout, bench/results/latest.json (the whole summary),
# bench/results/raw/ (one JSON per run, console transcripts included; the
# previous run's are replaced), a copy of the summary as results/run-DATE.json.
# --json prints the summary JSON on stdout instead of the table.
# --wait-idle S: first wait (at most S seconds) until the host's CPUs have been
# idle for 5 s (shared machines: other people's builds distort every figure).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=5
LINUX=0
JSON=0
WAIT_IDLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --linux) LINUX=1; shift ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs wants a positive number" >&2; exit 2; }

ROOT=$(dirname "$BENCH")
cd "$ROOT"
SMOLVM=$ROOT/build/smolvm
TICKER=$ROOT/build/guest/ticker.elf
VMLINUX=$ROOT/build/guest/vmlinux
INITRD=$ROOT/build/guest/initramfs.cpio
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
TSRUN=tsrun
RES=$BENCH/results
RAW=$RES/raw

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x "$SMOLVM" ] || die "$SMOLVM missing: run 'make all'"
[ -f "$TICKER" ] || die "$TICKER missing: run 'make test-guests' (or 'make guest')"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"
if [ "$LINUX" = 1 ]; then
    [ -f "$VMLINUX" ] && [ -f "$INITRD" ] || die "$VMLINUX / $INITRD missing: run 'make guest'"
fi

rm -rf "$RAW" "$RES/inputs"
mkdir -p "$RAW"
# Snapshot what is measured: others may rebuild build/ while this runs, and
# both VMMs must boot the very same bytes.
SNAP=$RES/inputs
mkdir -p "$SNAP/plugins"
cp "$SMOLVM" "$SNAP/smolvm"
cp "$ROOT"/build/plugins/*.so "$SNAP/plugins/"
cp "$TICKER" "$SNAP/ticker.elf"
cp scripts/ticker.lua "$SNAP/ticker.lua"
if [ "$LINUX" = 1 ]; then
    cp "$VMLINUX" "$SNAP/vmlinux"
    cp "$INITRD" "$SNAP/initramfs.cpio"
    cp scripts/linux.lua "$SNAP/linux.lua"
fi
SMOLVM=$SNAP/smolvm
TICKER=$SNAP/ticker.elf
VMLINUX=$SNAP/vmlinux
INITRD=$SNAP/initramfs.cpio
QEMU_BASE=("$QEMU" -M microvm -enable-kvm -cpu host,-arch-capabilities -nographic -no-reboot)
# the machine scripts (uart console, their command line), with the guest
# paths, vCPUs and memory given explicitly: the same for both VMMs
TICKER_SCRIPT=("$SNAP/ticker.lua" --kernel "$TICKER" --cpus 1 --memory 64M)
LINUX_SCRIPT=("$SNAP/linux.lua" --kernel "$VMLINUX" --initrd "$INITRD" --cpus 1 --memory 256M)
# earlyprintk: the QEMU command line this comparison is defined with; smolvm
# gets it too, so both print the same early messages.
LINUX_APPEND="earlyprintk=serial"

# smolvm's full kernel command line (script + host flags + --append): boot
# with -v and stop as soon as it has printed it.
smolvm_cmdline() {
    $TSRUN --timeout 30 --mark-err cl='^smolvm: cmdline: ' --stop-after cl:0 -- \
        "$SMOLVM" boot "$@" -v > "$RAW/cmdline.json"
    $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
for e in d["err"]:
    l = e[1]
    if l.startswith("smolvm: cmdline: "):
        print(l[len("smolvm: cmdline: "):]); break
else:
    sys.exit("run.sh: smolvm -v printed no cmdline: %r" % (d["err"],))' "$RAW/cmdline.json"
}

# kill nothing but what we started: tsrun.py kills its own process group;
# here we only make sure a helper interrupted with us does not linger
cleanup() { local j; for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null || true; done; wait; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU time the rest of the host used while we ran (other people's builds and
# tests share these 2 CPUs): all busy time from /proc/stat minus our children's
[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"
load_begin

STAMP_BEFORE=$(sha256sum "$SMOLVM" | cut -c1-16)
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)

# ---- ticker: latency and wall time ----------------------------------------
TICK_CL=$(smolvm_cmdline "${TICKER_SCRIPT[@]}" --append ticks=1)
TICK_MEM_CL=$(smolvm_cmdline "${TICKER_SCRIPT[@]}" --append ticks=20)
log "ticker cmdline (both VMMs): $TICK_CL"
tick_marks=(--mark start='^ticker: start' --mark tick0='^tick 0')
run_ticker() {   # vmm run-index
    local out=$RAW/ticker-$1-$2.json
    case "$1" in
        smolvm) $TSRUN --timeout 30 "${tick_marks[@]}" -- \
                    "$SMOLVM" boot "${TICKER_SCRIPT[@]}" --append ticks=1 > "$out" ;;
        qemu) $TSRUN --timeout 30 "${tick_marks[@]}" -- \
                    "${QEMU_BASE[@]}" -m 64M -kernel "$TICKER" -append "$TICK_CL" > "$out" ;;
    esac
}
run_ticker_mem() {
    local out=$RAW/tickmem-$1-$2.json
    local s=(--timeout 30 --sample-ms 50 --guest-mib 64 "${tick_marks[@]}")
    case "$1" in
        smolvm) $TSRUN "${s[@]}" -- "$SMOLVM" boot "${TICKER_SCRIPT[@]}" --append ticks=20 > "$out" ;;
        qemu) $TSRUN "${s[@]}" -- "${QEMU_BASE[@]}" -m 64M -kernel "$TICKER" \
                  -append "$TICK_MEM_CL" > "$out" ;;
    esac
}

log "warm-up (not counted)"
run_ticker smolvm 0; run_ticker qemu 0
for i in $(seq 1 "$RUNS"); do
    log "ticker run $i/$RUNS"
    run_ticker smolvm "$i"; run_ticker qemu "$i"
done
for i in $(seq 1 "$RUNS"); do
    log "ticker memory run $i/$RUNS (ticks=20, ~2 s each)"
    run_ticker_mem smolvm "$i"; run_ticker_mem qemu "$i"
done
rm -f "$RAW"/ticker-*-0.json

# ---- linux -----------------------------------------------------------------
LINUX_CL=""
if [ "$LINUX" = 1 ]; then
    LINUX_CL=$(smolvm_cmdline "${LINUX_SCRIPT[@]}" --append "$LINUX_APPEND")
    log "linux cmdline (both VMMs): $LINUX_CL"
    for i in $(seq 1 "$RUNS"); do
        log "linux run $i/$RUNS: smolvm (~40 s)"
        # stdin is a pipe, so the guest's shell runs without prompt or echo
        # (smolvm.tty=0): at "ready" we send it a command, and once its answer
        # is on the console, EOF: smolvm passes it on as ^D, the shell ends,
        # init resets the machine, smolvm exits
        $TSRUN --timeout 300 --sample-ms 250 --guest-mib 256 \
            --mark ready='smolvm guest ready' --send-after 'ready=echo shell-$((6*7))\n' \
            --mark answer='^shell-42\r?$' --close-stdin-after answer \
            -- "$SMOLVM" boot "${LINUX_SCRIPT[@]}" --append "$LINUX_APPEND" \
            > "$RAW/linux-smolvm-$i.json"
        log "linux run $i/$RUNS: qemu (until its first KVM internal error, at most 120 s)"
        # QEMU prints the failing state and pauses the VM for good: end it 2 s later
        $TSRUN --timeout 120 --sample-ms 250 --guest-mib 256 \
            --mark ready='smolvm guest ready' \
            --mark-err kvmerr='KVM internal error' --stop-after kvmerr:2 \
            -- "${QEMU_BASE[@]}" -m 256M -kernel "$VMLINUX" -initrd "$INITRD" \
            -append "$LINUX_CL" > "$RAW/linux-qemu-$i.json"
    done
fi

load_end

# ---- report ----------------------------------------------------------------
cat > "$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "runs": $RUNS, "linux": $LINUX,
 "host": {"kernel": "$(uname -r)", "cpus": $(nproc),
          "cpu": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
          "kvm": "$(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'kvm_pvm (software nested)'; fi)",
          "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$LOAD_AFTER",
          "other_load_cpus": $OTHER_LOAD, "bench_seconds": $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')},
 "smolvm": {"git": "$GIT_REV", "sha256_16": "$STAMP_BEFORE"},
 "qemu": {"version": "$("$QEMU" --version | head -1)"},
 "cmdline": {"ticker": $($PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$TICK_CL"),
             "linux": $($PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$LINUX_CL")}}
EOF
ARGS=("$RAW" "$RES/latest.json")
[ "$JSON" = 1 ] && ARGS+=(--json)
$PY "$BENCH/report.py" "${ARGS[@]}"
cp "$RES/latest.json" "$RES/run-$(date -u +%Y%m%dT%H%M%SZ)$([ "$LINUX" = 1 ] && echo -linux).json"
