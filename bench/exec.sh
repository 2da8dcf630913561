#!/usr/bin/env bash
# bench/exec.sh [--runs N] [--boot-runs M] [--json] [--wait-idle S]
#   `smolvm exec app.smolmachine -- true` end to end, on the default Linux guest.
#
# Packs scripts/linux.lua once (its shell prompt, agent listening), warms the
# memory cache with one exec, then times N runs (default 10) of
# `smolvm exec -v BUNDLE -- true` from process start to exit, and splits each
# run with the figures smolvm -v prints:
#   restore   bundle opened, machine rebuilt, state applied (host work)
#   sync      agent connection + RNG reseed + clock set after the restore
#   command   EXEC sent until EXIT came back: the guest forks and runs `true`
#   rest      the remainder (process start, plugin loading, teardown)
# "sync" and "command" are almost all guest kernel work, which this host
# emulates (~1000x slower than hardware); "restore" and "rest" are the VMM's.
# For comparison, M cold boots (default 3) of the same machine running `true`
# at its shell: `smolvm boot scripts/linux.lua` with "true" on stdin, process
# start to exit. QEMU cannot run this Linux guest on this host (it stops at
# the guest's first int3, see bench/README.md), so there is no QEMU column;
# on a hardware-KVM host compare with QEMU -incoming plus a serial command.
# Each figure: median [min..max]. Output: the table on stdout and
# bench/results/exec-latest.json (--json prints that instead).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
PY=${PY:-python3}
JSON=0 RUNS=10 BOOT_RUNS=3 IDLE=0
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --boot-runs) BOOT_RUNS=$2; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) IDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

bench_setup exec
[ "$IDLE" = 0 ] || wait_idle "$IDLE"

sed -e "s|\.\./build|$ROOT/build|" "$ROOT/scripts/linux.lua" > "$WORK/app.lua"
B=$WORK/app.smolmachine
log "packing the default guest (a cold boot, ~30 s here)"
t0=$(now_s)
"$SMOLVM" pack "$WORK/app.lua" -o "$B" < /dev/null > "$WORK/pack.log" 2>&1 ||
    { tail "$WORK/pack.log" >&2; exit 1; }
PACK_S=$(awk -v a="$t0" -v b="$(now_s)" 'BEGIN{printf "%.1f", b-a}')
"$SMOLVM" exec "$B" -- true < /dev/null > /dev/null 2>&1 # warms the cache

load_begin
: > "$WORK/exec.tsv"
for i in $(seq "$RUNS"); do
    t0=$(now_s)
    "$SMOLVM" exec -v "$B" -- true < /dev/null > /dev/null 2> "$WORK/exec.log" ||
        { cat "$WORK/exec.log" >&2; exit 1; }
    t1=$(now_s)
    restore=$(grep -o 'restored .* in [0-9.]* ms' "$WORK/exec.log" | head -1 | grep -o '[0-9.]* ms' | head -1 | cut -d' ' -f1)
    sync=$(grep -o 'clock set in [0-9.]*' "$WORK/exec.log" | grep -o '[0-9.]*$')
    cmd=$(grep -o 'command [0-9.]* ms' "$WORK/exec.log" | grep -o '[0-9.]*')
    conn=$(grep -o 'agent connected in [0-9.]*' "$WORK/exec.log" | grep -o '[0-9.]*$')
    printf '%s\t%s\t%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)*1000}')" \
        "$restore" "${sync:-0}" "$(awk -v a="$conn" -v b="$cmd" 'BEGIN{print a+b}')" x >> "$WORK/exec.tsv"
    log "exec $i: $(tail -1 "$WORK/exec.tsv" | cut -f1) ms"
done
load_end

: > "$WORK/boot.tsv"
for i in $(seq "$BOOT_RUNS"); do
    t0=$(now_s)
    printf 'true\n' | "$SMOLVM" boot "$WORK/app.lua" > "$WORK/boot.log" 2>&1 ||
        { tail "$WORK/boot.log" >&2; exit 1; }
    t1=$(now_s)
    awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)*1000}' >> "$WORK/boot.tsv"
    log "cold boot $i: $(tail -1 "$WORK/boot.tsv") ms"
done

$PY - "$WORK/exec.tsv" "$WORK/boot.tsv" "$JSON" "$OUT/exec-latest.json" "$PACK_S" "$OTHER_LOAD" "$BENCH" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[7])
from execsplit import fig, line, print_split, split
s = split(sys.argv[1])
boots = [float(l) for l in open(sys.argv[2]).read().split() if l]
res = {"exec_true_ms": s["end_to_end_ms"], "restore_ms": s["restore_ms"],
       "agent_sync_ms": s["agent_sync_ms"], "command_ms": s["command_ms"],
       "vmm_rest_ms": s["vmm_rest_ms"], "cold_boot_true_ms": fig(boots),
       "pack_s": float(sys.argv[5]), "other_load_cpus": float(sys.argv[6])}
res["cold_boot_over_exec"] = res["cold_boot_true_ms"]["median"] / res["exec_true_ms"]["median"]
res["host_side_ms"] = s["host_ms"]
json.dump(res, open(sys.argv[4], "w"), indent=1)
if sys.argv[3] == "1":
    print(json.dumps(res, indent=1)); sys.exit()
print(f"smolvm exec BUNDLE -- true, default Linux guest, {s['runs']} runs (other load {res['other_load_cpus']} CPUs)")
print_split(s, "end to end", "connect + command (guest kernel)")
line("cold boot + true, for comparison", res["cold_boot_true_ms"], f"({res['cold_boot_over_exec']:.1f}x the exec)")
print(f"  host-side share of an exec: {res['host_side_ms']:.1f} ms (restore + rest); pack took {res['pack_s']} s")
PY
