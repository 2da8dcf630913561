#!/usr/bin/env bash
# bench/snapshot.sh [--runs N] [--instances "1 4 8"] [--json] [--wait-idle S]
#   smolvm bundles vs QEMU migration files, on the ticker guest.
#
# Both VMMs run the same ELF (build/guest/ticker.elf) with the same kernel
# command line (smolvm's full one, host flags included, plus ticks=50) and the
# same 1 vCPU / 64 MiB, and are saved at the same guest state: right after the
# guest printed "tick 5" (smolvm pack stops there by itself; QEMU gets a QMP
# `stop` the moment "tick 5" is on its console, then `migrate exec:cat > F`).
# Each figure is the median [min..max] of N runs (default 5) with the ratio
# QEMU/smolvm (> 1: smolvm is faster or smaller):
#   snapshot  smolvm pack's "paused X ms, wrote in Y ms"; QEMU stop + migrate
#             until query-migrate says completed; bundle / migration file size
#   restore   process start to the guest running again and to the first tick
#             line, for smolvm `run --pristine` with a cold memory cache (a
#             fresh SMOLVM_CACHE_DIR each run) and a warm one, and for QEMU
#             `-incoming "exec:cat F"` (resumes by itself once loaded)
#   many      K instances of one bundle / migration file started at once (warm
#             cache): time until all of them printed a tick line, and their
#             total RSS and PSS (/proc/PID/smaps_rollup: pages shared between
#             the instances count once in the PSS total)
#
# Needs: build/smolvm + plugins (`make all`), build/guest/ticker.elf
# (`make test-guests`), qemu-system-x86_64, python3, timeout.
# Output: the table on stdout, bench/results/snapshot-latest.json (summary, in
# the format of run.sh's latest.json), a dated copy snapshot-DATE.json, and
# bench/results/snapshot-raw/ (one tsrun.py JSON per run, transcripts included).
# --json prints the summary JSON instead of the table. --wait-idle S: first
# wait (at most S seconds) until the host's CPUs have been idle for 5 s.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=5
KS="1 4 8"
JSON=0
WAIT_IDLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --instances) KS=${2:?--instances needs a list}; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "snapshot.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "snapshot.sh: --runs wants a positive number" >&2; exit 2; }
for k in $KS; do
    [[ "$k" =~ ^[1-9][0-9]?$ ]] || { echo "snapshot.sh: --instances wants numbers 1-99" >&2; exit 2; }
done

ROOT=$(dirname "$BENCH")
cd "$ROOT"
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
RES=$BENCH/results
RAW=$RES/snapshot-raw
die() { echo "snapshot.sh: $*" >&2; exit 1; }
[ -x build/smolvm ] || die "build/smolvm missing: run 'make all'"
[ -f build/guest/ticker.elf ] || die "build/guest/ticker.elf missing: run 'make test-guests'"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-snapbench.XXXXXX")
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
# What is measured is a copy (others may rebuild build/ meanwhile); the
# plugins are found next to the binary.
cp build/smolvm "$WORK/smolvm"
cp build/plugins/*.so "$WORK/plugins/"
cp build/guest/ticker.elf "$WORK/ticker.elf"
cp scripts/ticker.lua "$WORK/ticker.lua"
SMOLVM=$WORK/smolvm
TICKER=$WORK/ticker.elf
BUNDLE=$WORK/ticker.smolmachine
MIG=$WORK/ticker.mig
QEMU_BASE=("$QEMU" -M microvm -enable-kvm -cpu host,-arch-capabilities -nographic -no-reboot -m 64M
           -kernel "$TICKER")
# ticks=50: instances end by themselves ~4.5 s after a restore
APPEND=ticks=50

# QEMU's save: bench/qmpsave.py (stop + migrate to the file once tsrun.py
# closes its stdin at "tick 5"). K instances at once: bench/multi.sh.

[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"
load_begin
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
SHA=$(sha256sum "$SMOLVM" | cut -c1-16)

# ---- snapshot: smolvm pack / QEMU stop+migrate ------------------------------
# run 0 is a warm-up, not counted; the last run's bundle and file are restored
pack_smolvm() {   # index
    tsrun --timeout 30 --mark-err cl='^smolvm: cmdline: ' --mark-err saved='^smolvm: saved ' -- \
        env SMOLVM_CACHE_DIR="$WORK/cache-pack" "$SMOLVM" pack "$WORK/ticker.lua" \
        --kernel "$TICKER" --cpus 1 --memory 64M --append "$APPEND" -v -o "$BUNDLE" \
        > "$RAW/pack-smolvm-$1.json"
    stat -c %s "$BUNDLE" > "$RAW/pack-smolvm-$1.size"
}
save_qemu() {     # index
    rm -f "$MIG" "$WORK/qmp.sock"
    tsrun --timeout 30 --mark t5='^tick 5$' --close-stdin-after t5 --mark-err saved='^qmpsave: ' -- \
        "$PY" "$BENCH/qmpsave.py" "$WORK/qmp.sock" "$MIG" -- "${QEMU_BASE[@]}" -append "$CMDLINE" \
        > "$RAW/save-qemu-$1.json"
}
log "snapshot: pack / migrate, warm-up + $RUNS runs each"
pack_smolvm 0
CMDLINE=$($PY -c '
import json, sys
for e in json.load(open(sys.argv[1]))["err"]:
    if e[1].startswith("smolvm: cmdline: "):
        print(e[1][len("smolvm: cmdline: "):]); break
else:
    sys.exit("snapshot.sh: smolvm pack -v printed no cmdline")' "$RAW/pack-smolvm-0.json")
log "cmdline (both VMMs): $CMDLINE"
save_qemu 0
for i in $(seq 1 "$RUNS"); do
    pack_smolvm "$i"; save_qemu "$i"
done
[ -s "$BUNDLE" ] || die "smolvm pack wrote no bundle (see $RAW/pack-smolvm-$RUNS.json)"
[ -s "$MIG" ] || die "QEMU wrote no migration file (see $RAW/save-qemu-$RUNS.json)"
rm -f "$RAW"/pack-smolvm-0.* "$RAW"/save-qemu-0.*

# ---- restore: process start to the guest running / first tick line ----------
# smolvm: the guest was stopped with "tick 5" printed but not its newline, so
# its first output after the restore (the newline) shows it runs again. QEMU:
# the vm_state_notify trace line (running 1) is printed as the loaded VM is
# started. Then both wait ~100 ms (10 PIT interrupts) for "tick 6".
restore_marks=(--mark tick='^tick ' --mark t7='^tick 7$' --stop-after t7:0.05)
restore() {       # kind index
    case "$1" in
        cold) rm -rf "$WORK/cache-cold"
              tsrun --timeout 20 "${restore_marks[@]}" --mark-err restored='^smolvm: restored ' -- \
                  env SMOLVM_CACHE_DIR="$WORK/cache-cold" "$SMOLVM" run "$BUNDLE" -v --pristine \
                  > "$RAW/restore-cold-$2.json"
              du -k -s "$WORK/cache-cold" | cut -f1 > "$RAW/restore-cold-$2.cache-kib"
              rm -rf "$WORK/cache-cold" ;;
        warm) tsrun --timeout 20 "${restore_marks[@]}" --mark-err restored='^smolvm: restored ' -- \
                  env SMOLVM_CACHE_DIR="$WORK/cache-warm" "$SMOLVM" run "$BUNDLE" -v --pristine \
                  > "$RAW/restore-warm-$2.json" ;;
        qemu) tsrun --timeout 20 "${restore_marks[@]}" --mark-err running='^vm_state_notify running 1' \
                  --mark-err load='^loadvm_state_setup' --mark-err loaded='^qemu_loadvm_state_post_main' -- \
                  "${QEMU_BASE[@]}" -append "$CMDLINE" -incoming "exec:cat $MIG" \
                  -trace vm_state_notify -trace loadvm_state_setup -trace qemu_loadvm_state_post_main \
                  > "$RAW/restore-qemu-$2.json" ;;
    esac
}
log "restore: warm-up + $RUNS runs each of smolvm cold cache, smolvm warm cache, QEMU"
restore cold 0; restore warm 0; restore qemu 0   # warm 0 fills the warm cache
for i in $(seq 1 "$RUNS"); do
    restore cold "$i"; restore warm "$i"; restore qemu "$i"
done
rm -f "$RAW"/restore-*-0.*

# ---- many instances at once ------------------------------------------------
many() {          # vmm K index
    local marks=() j
    for j in $(seq 1 "$2"); do
        marks+=(--mark "tick$j=^$j: tick ")
        case "$1" in
            smolvm) marks+=(--mark "run$j=^$j: ") ;;
            qemu) marks+=(--mark-err "run$j=^$j: vm_state_notify running 1") ;;
        esac
    done
    rm -rf "$WORK/multi"
    case "$1" in
        smolvm) tsrun --timeout 60 "${marks[@]}" -- env SMOLVM_CACHE_DIR="$WORK/cache-warm" \
                    bash "$BENCH/multi.sh" "$2" "$WORK/multi" '^tick ' 30 "$SMOLVM" run "$BUNDLE" --pristine \
                    > "$RAW/many-smolvm-$2-$3.json" ;;
        qemu) tsrun --timeout 60 "${marks[@]}" -- \
                  bash "$BENCH/multi.sh" "$2" "$WORK/multi" '^tick ' 30 "${QEMU_BASE[@]}" -append "$CMDLINE" \
                  -incoming "exec:cat $MIG" -trace vm_state_notify \
                  > "$RAW/many-qemu-$2-$3.json" ;;
    esac
}
for k in $KS; do
    log "many: $k instances at once, $RUNS runs per VMM"
    for i in $(seq 1 "$RUNS"); do
        many smolvm "$k" "$i"; many qemu "$k" "$i"
    done
done

load_end
cat > "$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "runs": $RUNS, "instances": [$(echo $KS | tr ' ' ,)],
 "host": {"kernel": "$(uname -r)", "cpus": $(nproc),
          "cpu": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
          "kvm": "$(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'kvm_pvm (software nested)'; fi)",
          "fs": $(jstr "$(df -T "$WORK" | awk 'NR==2{print $2" "$1}')"),
          "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$LOAD_AFTER",
          "other_load_cpus": $OTHER_LOAD, "bench_seconds": $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')},
 "smolvm": {"git": "$GIT_REV", "sha256_16": "$SHA"},
 "qemu": {"version": "$("$QEMU" --version | head -1)"},
 "cmdline": {"ticker": $(jstr "$CMDLINE")}}
EOF

# ---- report (summary in the format of report.py's latest.json) --------------
OUT=$RES/snapshot-latest.json
$PY - "$RAW" "$OUT" "$JSON" "$BENCH" <<'PY'
import glob, json, os, re, statistics, sys
raw, out_path, as_json, bench = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
sys.path.insert(0, bench)
from report import stats   # median/min/max/n/values, as run.sh's report

meta = json.load(open(os.path.join(raw, "meta.json")))
def load(pat):
    runs = []
    for p in sorted(glob.glob(os.path.join(raw, pat)), key=lambda p: int(re.findall(r"\d+", p)[-1])):
        r = json.load(open(p))
        r["_path"] = p
        runs.append(r)
    return runs
def side(p, suffix):
    try:
        return open(p[:-len(".json")] + suffix).read().strip()
    except OSError:
        return None

metrics, notes = {}, []
def add(key, label, unit, smolvm=(), qemu=()):
    m = {"label": label, "unit": unit, "smolvm": stats(list(smolvm)), "qemu": stats(list(qemu))}
    s, q = m["smolvm"], m["qemu"]
    m["ratio_qemu_over_smolvm"] = q["median"] / s["median"] if s and q and s["median"] else None
    metrics[key] = m
ms = lambda x: None if x is None else x * 1e3
def err_line(r, prefix):
    for e in r["err"]:
        if e[1].startswith(prefix):
            return e[1]
    return None
def check(name, runs, ok):
    bad = [os.path.basename(r["_path"]) for r in runs if not ok(r)]
    if bad:
        notes.append("%s: %d of %d runs did not go as expected: %s" % (name, len(bad), len(runs), " ".join(bad)))

# snapshot
packs, saves = load("pack-smolvm-*.json"), load("save-qemu-*.json")
check("smolvm pack", packs, lambda r: r["rc"] == 0 and "saved" in r["marks"])
pause, wrote = [], []
for r in packs:
    m = re.search(r"paused ([\d.]+) ms, wrote in ([\d.]+) ms", err_line(r, "smolvm: saved ") or "")
    pause.append(float(m.group(1)) if m else None)
    wrote.append(float(m.group(2)) if m else None)
qs = []
for r in saves:
    l = err_line(r, "qmpsave: ")
    qs.append(json.loads(l[len("qmpsave: "):]) if l else None)
check("QEMU save", saves, lambda r: (err_line(r, "qmpsave: ") or "").find('"completed"') > 0)
qs = [q if q and q["status"] == "completed" else None for q in qs]
add("snap_pause_ms", "snapshot: VM paused (pack: paused; QEMU: stop + migrate)", "ms",
    pause, [q and q["stop_ms"] + q["migrate_ms"] for q in qs])
add("snap_write_ms", "snapshot: writing (pack: wrote in; QEMU: migrate cmd)", "ms",
    wrote, [q and q["migrate_ms"] for q in qs])
add("snap_qemu_total_ms", "  QEMU's own migration total-time", "ms", (), [q and q["total_time_ms"] for q in qs])
add("snap_size_kib", "bundle / migration file size", "KiB",
    [int(side(r["_path"], ".size")) / 1024 for r in packs if side(r["_path"], ".size")],
    [q and q["size"] / 1024 for q in qs])

# restore
cold, warm, qemu = load("restore-cold-*.json"), load("restore-warm-*.json"), load("restore-qemu-*.json")
def first_tick_is_6(r):
    for e in r["out"]:
        if e[1].startswith("tick "):
            return e[1] == "tick 6"
    return False
for name, runs in (("smolvm cold", cold), ("smolvm warm", warm), ("QEMU", qemu)):
    check("restore " + name, runs, lambda r: "t7" in r["marks"] and first_tick_is_6(r))
def smolvm_running(r):
    # the newline that ends the "tick 5" the guest was stopped in
    o = r["out"]
    return o[0][0] if o and o[0][1] == "" else None
for r in cold + warm:
    if r["out"] and smolvm_running(r) is None:
        notes.append("%s: first console output after restore is %r, not the end of the "
                     "'tick 5' line" % (os.path.basename(r["_path"]), r["out"][0][1]))
qrun = [r["marks"].get("running") for r in qemu]
add("restore_running_cold_ms", "restore, cold cache: process start to guest running", "ms",
    [ms(smolvm_running(r)) for r in cold], [ms(x) for x in qrun])
add("restore_running_warm_ms", "restore, warm cache: process start to guest running", "ms",
    [ms(smolvm_running(r)) for r in warm], [ms(x) for x in qrun])
add("restore_tick_cold_ms", "restore, cold cache: to the first tick line", "ms",
    [ms(r["marks"].get("tick")) for r in cold], [ms(r["marks"].get("tick")) for r in qemu])
add("restore_tick_warm_ms", "restore, warm cache: to the first tick line", "ms",
    [ms(r["marks"].get("tick")) for r in warm], [ms(r["marks"].get("tick")) for r in qemu])
def self_ms(r):
    m = re.search(r" in ([\d.]+) ms", err_line(r, "smolvm: restored ") or "")
    return float(m.group(1)) if m else None
def decomp_ms(r):
    m = re.search(r"decompressed into the cache in ([\d.]+) ms", err_line(r, "smolvm: restored ") or "")
    return float(m.group(1)) if m else None
add("restore_self_cold_ms", "  smolvm -v 'restored in' (cold)", "ms", [self_ms(r) for r in cold])
add("restore_decomp_cold_ms", "    of which decompressing into the cache", "ms", [decomp_ms(r) for r in cold])
add("restore_self_warm_ms", "  smolvm -v 'restored in' (warm)", "ms", [self_ms(r) for r in warm])
add("restore_qemu_load_ms", "  QEMU loading the migration (trace)", "ms", (),
    [ms(r["marks"]["loaded"] - r["marks"]["load"]) if "loaded" in r["marks"] and "load" in r["marks"]
     else None for r in qemu])
cache_kib = [int(side(r["_path"], ".cache-kib")) for r in cold if side(r["_path"], ".cache-kib")]
add("restore_cache_disk_kib", "  smolvm cache file, disk use (sparse)", "KiB", cache_kib)
if any("cache" not in (err_line(r, "smolvm: restored ") or "") for r in cold + warm):
    notes.append("a smolvm restore did not say how it got its memory")
for r in warm:
    if "mapped from the cache" not in (err_line(r, "smolvm: restored ") or ""):
        notes.append("%s: warm restore did not map the cache" % os.path.basename(r["_path"]))

# many instances
many = {}
for k in meta["instances"]:
    for vmm in ("smolvm", "qemu"):
        runs = load("many-%s-%d-*.json" % (vmm, k))
        res = {"all_running": [], "all_tick": [], "rss": [], "pss": [], "pss_anon": [], "pss_file": []}
        for r in runs:
            run = [r["marks"].get("run%d" % j) for j in range(1, k + 1)]
            tick = [r["marks"].get("tick%d" % j) for j in range(1, k + 1)]
            mem = [l[1].split() for l in r["out"] if l[1].startswith("mem ")]
            want = "smolvm" if vmm == "smolvm" else "qemu-system-x86"
            mem = [x for x in mem if len(x) == 9 and x[8].startswith(want)]
            ok = None not in tick and len(mem) == k
            if not ok:
                notes.append("%s: %d of %d instances printed a tick line, memory of %d"
                             % (os.path.basename(r["_path"]), k - tick.count(None), k, len(mem)))
            res["all_running"].append(ms(max(run)) if None not in run else None)
            res["all_tick"].append(ms(max(tick)) if ok else None)
            for key, col in (("rss", 3), ("pss", 4), ("pss_anon", 5), ("pss_file", 6)):
                res[key].append(sum(int(x[col]) for x in mem) / 1024 if ok else None)
        many[(vmm, k)] = res
for k in meta["instances"]:
    s, q = many[("smolvm", k)], many[("qemu", k)]
    add("many%d_all_running_ms" % k, "%d at once: all guests running" % k, "ms",
        s["all_running"], q["all_running"])
    add("many%d_all_tick_ms" % k, "%d at once: all printed their first tick line" % k, "ms",
        s["all_tick"], q["all_tick"])
    add("many%d_rss_mib" % k, "%d at once: total RSS" % k, "MiB", s["rss"], q["rss"])
    add("many%d_pss_mib" % k, "%d at once: total PSS" % k, "MiB", s["pss"], q["pss"])
    add("many%d_pss_anon_mib" % k, "  PSS anonymous", "MiB", s["pss_anon"], q["pss_anon"])
    add("many%d_pss_file_mib" % k, "  PSS file-backed", "MiB", s["pss_file"], q["pss_file"])

if meta["host"]["other_load_cpus"] > 0.2:
    notes.append("the host was not idle: other processes used %.2f of %d CPUs on average "
                 "during the benchmark; times are inflated and noisy"
                 % (meta["host"]["other_load_cpus"], meta["host"]["cpus"]))
summary = {"meta": meta, "metrics": metrics, "notes": notes}
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
    d = 1 if unit in ("ms", "KiB") else 2
    if s["n"] == 1:
        return "%.*f" % (d, s["median"])
    return "%.*f [%.*f..%.*f]" % (d, s["median"], d, s["min"], d, s["max"])
h = meta["host"]
print("smolvm snapshots vs %s migration, ticker guest (1 vCPU, 64 MiB)" % meta["qemu"]["version"])
print("%s UTC, host %s, %d CPUs (%s), kernel %s, %s; smolvm %s"
      % (meta["date"].replace("T", " ").rstrip("Z"), h["kvm"], h["cpus"], h["cpu"], h["kernel"],
         h["fs"], meta["smolvm"]["git"]))
print("each: median [min..max] of %d runs; %.0f s; other processes used %.2f CPUs "
      "meanwhile (load average before %s, after %s)"
      % (meta["runs"], h["bench_seconds"], h["other_load_cpus"], h["loadavg_before"], h["loadavg_after"]))
print()
w = max(len(m["label"]) + len(m["unit"]) + 3 for m in metrics.values())
print("%-*s  %-26s  %-26s  %s" % (w, "metric", "smolvm", "qemu", "qemu/smolvm"))
print("-" * (w + 68))
for m in metrics.values():
    r = m["ratio_qemu_over_smolvm"]
    print("%-*s  %-26s  %-26s  %s" % (w, "%s (%s)" % (m["label"], m["unit"]), fmt(m["smolvm"], m["unit"]),
                                     fmt(m["qemu"], m["unit"]), "%.2fx" % r if r else "-"))
print()
print("kernel command line (both VMMs): %s" % meta["cmdline"]["ticker"])
for n in notes:
    print("NOTE: %s" % n)
print("\nsummary: %s; per-run data and console transcripts: %s/"
      % (os.path.relpath(out_path), os.path.relpath(raw)))
PY
cp "$OUT" "$RES/snapshot-$(date -u +%Y%m%dT%H%M%SZ).json"
