# Shared helpers of the bench scripts (sourced). Expects PY, BENCH, JSON.

# The header comment of the calling script, as its --help.
usage() { sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; }
log() { [ "$JSON" = 1 ] || echo "$*" >&2; }
# tsrun.py (per-line timestamps, kills its process group at the end) runs as
# a background job we wait for, so a signal interrupts the wait and the
# script's cleanup ends the helper, which kills its VMMs.
tsrun() { "$PY" "$BENCH/tsrun.py" "$@" & wait $!; }
jstr() { $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

cpu_busy_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2+$3+$4+$7+$8+$9)/hz; exit}' /proc/stat; }
children_cpu_s() { times | tail -1 | awk '{ split($1,a,/[ms]/); split($2,b,/[ms]/); print a[1]*60+a[2]+b[1]*60+b[2] }'; }
now_s() { date +%s.%N; }

# Waits (at most $1 seconds) until the host's CPUs were idle for 5 s.
wait_idle() {
    local deadline=$(( $(date +%s) + $1 )) b0 b1 busy
    while :; do
        b0=$(cpu_busy_s); sleep 5; b1=$(cpu_busy_s)
        busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.2f", (b-a)/5}')
        awk -v x="$busy" 'BEGIN{exit !(x < 0.15)}' && { log "host idle (${busy} CPUs busy)"; break; }
        [ "$(date +%s)" -lt "$deadline" ] || { log "host still busy (${busy} CPUs); measuring anyway"; break; }
        log "waiting for an idle host (${busy} CPUs busy)"
    done
}

# How much CPU the rest of the host used while we measured: call load_begin
# before and load_end after; load_end sets OTHER_LOAD (CPUs), LOAD_AFTER and T1.
load_begin() {
    BUSY0=$(cpu_busy_s); KIDS0=$(children_cpu_s); T0=$(now_s)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
}
load_end() {
    local busy1 kids1
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    busy1=$(cpu_busy_s); kids1=$(children_cpu_s); T1=$(now_s)
    OTHER_LOAD=$(awk -v b0="$BUSY0" -v b1="$busy1" -v k0="$KIDS0" -v k1="$kids1" -v t0="$T0" -v t1="$T1" \
        'BEGIN { v = ((b1 - b0) - (k1 - k0)) / (t1 - t0); if (v < 0) v = 0; printf "%.2f", v }')
}

# bench_setup NAME: SMOLVM, OUT, WORK (removed at exit) and a private cache
# for bench/NAME.sh, which needs the build and the default guest.
bench_setup() {
    SMOLVM=$ROOT/build/smolvm
    OUT=$BENCH/results
    WORK=$(mktemp -d "/tmp/smolvm-bench-$1.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    export SMOLVM_CACHE_DIR=$WORK/cache
    mkdir -p "$OUT"
    [ -x "$SMOLVM" ] && [ -f "$ROOT/build/guest/vmlinux" ] ||
        { echo "bench/$1.sh: needs build/smolvm and the guest (make all guest)" >&2; exit 1; }
}
