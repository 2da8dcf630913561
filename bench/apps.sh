#!/usr/bin/env bash
# bench/apps.sh [--app pyweb|postgres] [--runs N] [--cold-runs M] [--json]
#   The examples of scripts/examples/ as a user meets them.
#
# For the app (default pyweb: Debian's python3 and a web service; postgres:
# PostgreSQL 15 with a seeded table, slow here):
#   rootfs cold     `smolvm build`: the root filesystem built from nothing (a
#                   fresh cache: mmdebstrap downloads, copy, run, mke2fs)
#   rootfs cached   `smolvm build` again: its inputs hashed, the image found
#   pack            boot into it, start the service, wait until ready, save
#   bundle          the .smolmachine's size
#   exec query      `smolvm exec BUNDLE -- QUERY` end to end, N runs (default
#                   5) after one that warms the memory cache, split as
#                   bench/exec.sh does: restore (VMM), agent sync and the
#                   command (guest), the rest (VMM start and teardown)
#   cold query      the path without smolvm's snapshot: `smolvm boot` of the
#                   same machine whose start commands end with the same query
#                   (once the service answers) and a reset: boot, service
#                   start and query, M runs (default 1)
# QUERY: pyweb: wget of /item/7 (the kit's busybox); postgres: psql count(*).
# QEMU cannot boot this Linux guest on this host (bench/README.md), so the
# comparison is smolvm's restore against a cold boot of the same machine.
# Figures: median [min..max]. Output: the table and
# bench/results/apps-<app>-latest.json (--json prints that instead).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
PY=${PY:-python3}
JSON=0 RUNS=5 COLD_RUNS=1 APP=pyweb
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --app) APP=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --cold-runs) COLD_RUNS=$2; shift 2 ;;
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case $APP in
    pyweb) QUERY=(/run/smolvm/busybox wget -qO- http://127.0.0.1:8000/item/7)
           COLD_Q='until a=$(/run/smolvm/busybox wget -qO- http://127.0.0.1:8000/item/7); do sleep 0.5; done' ;;
    postgres) QUERY=(su postgres -c "psql -tAc 'select count(*) from items'")
              COLD_Q="until a=\$(su postgres -c 'psql -tAc \"select count(*) from items\"'); do sleep 0.5; done" ;;
    *) echo "bench/apps.sh: --app pyweb or postgres" >&2; exit 2 ;;
esac

bench_setup apps
SCRIPT=$ROOT/scripts/examples/$APP.lua
B=$WORK/app.smolmachine
ms_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN{printf "%.1f", (b-a)*1000}'; }

log "$APP: the root filesystem built from nothing (smolvm build)"
t0=$(now_s)
IMAGE=$("$SMOLVM" build "$SCRIPT" 2> "$WORK/build1.log") || { tail -30 "$WORK/build1.log" >&2; exit 1; }
ROOTFS_COLD_MS=$(ms_since "$t0")
t0=$(now_s)
"$SMOLVM" build "$SCRIPT" > /dev/null 2> "$WORK/build2.log" || { tail "$WORK/build2.log" >&2; exit 1; }
ROOTFS_CACHED_MS=$(ms_since "$t0")
log "$APP: pack (boot, start, ready, save)"
t0=$(now_s)
"$SMOLVM" pack -v "$SCRIPT" -o "$B" < /dev/null > "$WORK/pack.log" 2>&1 || { tail -30 "$WORK/pack.log" >&2; exit 1; }
PACK_MS=$(ms_since "$t0")
READY_S=$(grep -o 'ready after [0-9.]*' "$WORK/pack.log" | grep -o '[0-9.]*$')
BUNDLE=$(stat -c %s "$B")
IMAGE_BYTES=$(du -B1 "$IMAGE" | cut -f1)
"$SMOLVM" exec "$B" -- "${QUERY[@]}" < /dev/null > "$WORK/answer" 2>&1 # warms the cache
log "$APP: the answer: $(head -c 200 "$WORK/answer")"

: > "$WORK/exec.tsv"
for i in $(seq "$RUNS"); do
    t0=$(now_s)
    "$SMOLVM" exec -v "$B" -- "${QUERY[@]}" < /dev/null > /dev/null 2> "$WORK/exec.log" ||
        { cat "$WORK/exec.log" >&2; exit 1; }
    total=$(ms_since "$t0")
    restore=$(grep -o 'restored .* in [0-9.]* ms' "$WORK/exec.log" | head -1 | grep -o '[0-9.]* ms' | head -1 | cut -d' ' -f1)
    sync=$(grep -o 'clock set in [0-9.]*' "$WORK/exec.log" | grep -o '[0-9.]*$')
    cmd=$(grep -o 'command [0-9.]* ms' "$WORK/exec.log" | grep -o '[0-9.]*')
    printf '%s\t%s\t%s\t%s\n' "$total" "$restore" "${sync:-0}" "$cmd" >> "$WORK/exec.tsv"
    log "exec $i: $total ms"
done

# the same machine, cold: its last start command waits for the service and
# prints the query's answer on the console; timed until that line
COLD=$(dirname "$SCRIPT")/.bench-cold-$APP.lua
# (a Lua long string: the query's quotes stay as they are)
sed -e "s|^  start = { \(.*\) },|  start = { \1, [[$COLD_Q; echo cold-answer: \$a]] },|" \
    -e "s|^  ready = .*||" "$SCRIPT" > "$COLD"
grep -q cold-answer "$COLD" || { echo "bench/apps.sh: cannot add the query to $SCRIPT's start" >&2; exit 1; }
trap 'rm -rf "$WORK" "$COLD"' EXIT
: > "$WORK/cold.tsv"
for i in $(seq "$COLD_RUNS"); do
    t0=$(now_s)
    # stdin stays open: at its end the guest's console shell would end,
    # and the machine with it
    "$SMOLVM" boot "$COLD" < <(sleep 100000) > "$WORK/cold.log" 2>&1 & pid=$!
    until grep -q "^cold-answer: ." "$WORK/cold.log"; do
        kill -0 $pid 2> /dev/null || { tail -20 "$WORK/cold.log" >&2; exit 1; }
        sleep 0.2
    done
    ms_since "$t0" >> "$WORK/cold.tsv"
    echo >> "$WORK/cold.tsv"
    kill $pid; wait $pid || true
    log "cold boot + start + query $i: $(tail -2 "$WORK/cold.tsv" | head -1) ms ($(grep -a "^cold-answer" "$WORK/cold.log" | head -c 80))"
done

$PY - "$WORK/exec.tsv" "$WORK/cold.tsv" "$JSON" "$OUT/apps-$APP-latest.json" "$APP" \
    "$ROOTFS_COLD_MS" "$ROOTFS_CACHED_MS" "$PACK_MS" "$READY_S" "$BUNDLE" "$IMAGE_BYTES" "$BENCH" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[12])
from execsplit import fig, line, print_split, split
a = sys.argv
s = split(a[1])
cold = [float(l) for l in open(a[2]).read().split() if l]
res = {"app": a[5], "rootfs_cold_ms": float(a[6]), "rootfs_cached_ms": float(a[7]),
       "pack_ms": float(a[8]), "ready_after_s": float(a[9]),
       "bundle_bytes": int(a[10]), "image_bytes_on_disk": int(a[11]),
       "exec_query_ms": s["end_to_end_ms"], "restore_ms": s["restore_ms"],
       "agent_sync_ms": s["agent_sync_ms"], "command_ms": s["command_ms"],
       "vmm_rest_ms": s["vmm_rest_ms"], "cold_query_ms": fig(cold),
       "host_ms": s["host_ms"], "guest_ms": s["guest_ms"]}
res["cold_over_exec"] = res["cold_query_ms"]["median"] / res["exec_query_ms"]["median"]
json.dump(res, open(a[4], "w"), indent=1)
if a[3] == "1":
    print(json.dumps(res, indent=1)); sys.exit()
w = 36
print(f"scripts/examples/{res['app']}.lua, {s['runs']} exec runs, {len(cold)} cold runs")
print(f"  {'rootfs build, cold (smolvm build)':<{w}} {res['rootfs_cold_ms']/1000:10.1f} s")
print(f"  {'rootfs build, cached':<{w}} {res['rootfs_cached_ms']:10.1f} ms")
print(f"  {'pack, rootfs cached':<{w}} {res['pack_ms']/1000:10.1f} s   (ready after {res['ready_after_s']} s)")
print(f"  {'bundle':<{w}} {res['bundle_bytes']/1048576:10.1f} MiB (image {res['image_bytes_on_disk']/1048576:.0f} MiB on disk)")
print_split(s, "exec query, end to end", "command (guest)", w)
line("cold boot + start + query", res["cold_query_ms"], f"({res['cold_over_exec']:.1f}x the exec)", w)
print(f"  host {res['host_ms']:.1f} ms, guest {res['guest_ms']:.1f} ms of an exec (medians)")
PY
