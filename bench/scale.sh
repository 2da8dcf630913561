#!/usr/bin/env bash
# bench/scale.sh [--runs N] [--sizes "64 1024 2560"] [--instances K] [--many-mib M]
#                [--json] [--wait-idle S] [--report-only]
#   snapshots and restores by guest memory size: smolvm bundles vs QEMU
#   migration files, on the fill guest.
#
# The fill guest (build/guest/fill.elf, tests/guests/fill.c) fills MIB MiB of
# its memory with a pattern that does not compress, prints "filled MIB MiB",
# waits for a byte on its serial port (wait=1: so QEMU, stopped a moment
# after that line, finds it where smolvm's pack does), reads all of its
# memory back, prints "verify ok MIB MiB round 1" and holds. Each restore
# sends it the byte as soon as it runs (smolvm: its first console output;
# QEMU: the vm_state_notify trace).
# Per size (default 64, 1024 and 2560 MiB filled; guest RAM 128 MiB, or the
# size + 256 MiB), 1 vCPU, same ELF and kernel command line (smolvm's full
# one) in both VMMs, saved at "filled": smolvm pack --ready filled; QEMU gets
# a QMP `stop` the moment "filled" is on its console, then `migrate` to a
# file (bench/qmpsave.py, max-bandwidth raised: QEMU 7.2 caps a migration
# at 128 MiB/s by default). Each figure is the median [min..max] of N runs
# (default 3; one warm-up each, not counted) with the ratio QEMU/smolvm (> 1:
# smolvm is faster or smaller):
#   snapshot  pack's "paused X ms"; QEMU stop + migrate until completed;
#             bundle / migration file size
#   restore   process start to the guest running again (smolvm: its first
#             console byte, the rest of the "filled" line; QEMU: the
#             vm_state_notify trace) and to "verify ok" (the guest has read
#             all its memory back), for smolvm `run --pristine` from a cold
#             cache (a fresh SMOLVM_CACHE_DIR: the lazy first restore),
#             cold with SMOLVM_RESTORE=eager, and from the cache (warm); QEMU
#             `-incoming "exec:cat FILE"`
#   many      K instances (default 50) of the 1024 MiB bundle (--many-mib: one
#             of the sizes) at once (warm
#             cache): time until all run and all printed "verify ok", total
#             RSS and PSS (bench/multi.sh). QEMU runs as many instances as
#             this host's memory holds (each loads its own copy of the guest
#             memory), said in the output. --instances 0 skips this part.
# The largest size: guest RAM ends below the 32-bit MMIO hole (3 GiB,
# core/arch/x86/board.h), so 2560 MiB filled in 2816 MiB; the issue's 4 GiB
# needs RAM above 4 GiB, which the board does not support yet.
#
# Needs: build/smolvm + plugins (`make all`), build/guest/fill.elf (`make
# test-guests`), qemu-system-x86_64, python3, timeout, and free disk for a
# bundle, a migration file and a cache image of the largest size.
# Output: the table on stdout, bench/results/scale-latest.json, a dated copy
# scale-DATE.json, and bench/results/scale-raw/ (every run's tsrun.py JSON).
# --json prints the summary JSON instead of the table. --wait-idle S: first
# wait (at most S seconds) until the host's CPUs have been idle for 5 s.
# --report-only: no measuring, the report of what bench/results/scale-raw/
# holds.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=3
SIZES="64 1024 2560"
K=50
MANY_MIB=1024
JSON=0
WAIT_IDLE=0
REPORT_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --sizes) SIZES=${2:?--sizes needs a list of MiB}; shift 2 ;;
        --instances) K=${2:?--instances needs a number}; shift 2 ;;
        --many-mib) MANY_MIB=${2:?--many-mib needs one of the sizes}; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        --report-only) REPORT_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: --runs wants a positive number" >&2; exit 2; }
[[ "$K" =~ ^[0-9]+$ ]] && [ "$K" -le 200 ] || { echo "scale.sh: --instances wants 0-200" >&2; exit 2; }
for s in $SIZES; do
    [[ "$s" =~ ^[1-9][0-9]*$ ]] && [ "$s" -le 2560 ] ||
        { echo "scale.sh: sizes are MiB from 1 to 2560 (guest RAM ends below 3 GiB)" >&2; exit 2; }
done
mem_mib() { if [ "$1" -le 64 ]; then echo 128; else echo $(($1 + 256)); fi; }

ROOT=$(dirname "$BENCH")
cd "$ROOT"
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
RES=$BENCH/results
RAW=$RES/scale-raw
die() { echo "scale.sh: $*" >&2; exit 1; }
if [ "$REPORT_ONLY" = 1 ]; then
    [ -f "$RAW/meta.json" ] || die "no $RAW/meta.json: nothing measured yet"
else   # the measuring, up to meta.json (not indented: it holds here-documents)
[ -x build/smolvm ] || die "build/smolvm missing: run 'make all'"
[ -f build/guest/fill.elf ] || die "build/guest/fill.elf missing: run 'make test-guests'"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-scalebench.XXXXXX")
cleanup() {
    local j
    set +e
    for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null || true; done
    wait
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

big=0
for s in $SIZES; do [ "$s" -gt "$big" ] && big=$s; done
need_kib=$(( (big * 3 + 512) * 1024 ))   # bundle, migration file, cache image
have_kib=$(df -k --output=avail "$WORK" | tail -1)
[ "$have_kib" -gt "$need_kib" ] || die "$WORK: $((have_kib / 1024)) MiB free, needs ~$((need_kib / 1024))"

rm -rf "$RAW"
mkdir -p "$RAW" "$WORK/plugins"
# What is measured is a copy (others may rebuild build/ meanwhile).
cp build/smolvm "$WORK/smolvm"
cp build/plugins/*.so "$WORK/plugins/"
cp build/guest/fill.elf "$WORK/fill.elf"
SMOLVM=$WORK/smolvm
FILL=$WORK/fill.elf
BUNDLE=$WORK/fill.smolmachine
MIG=$WORK/fill.mig
QEMU_BASE=("$QEMU" -M microvm -enable-kvm -cpu host,-arch-capabilities -nographic -no-reboot
           -kernel "$FILL")
QEMU_BW=$((64 << 30))   # migrate-set-parameters max-bandwidth, bytes/s

[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"
load_begin
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
SHA=$(sha256sum "$SMOLVM" | cut -c1-16)
CMDLINE=
QEMU_K=0
QEMU_K_WHY=

# ---- per size ------------------------------------------------------------------
pack_smolvm() {   # size mem index
    # stdin a pipe left open (nothing sent): at end of input smolvm would
    # give the guest a ^D, the byte it waits for
    tsrun --timeout 600 --mark filled='^filled' --send-after filled= \
        --mark-err cl='^smolvm: cmdline: ' --mark-err saved='^smolvm: saved ' -- \
        env SMOLVM_CACHE_DIR="$WORK/cache-pack" "$SMOLVM" pack "$WORK/fill.lua" \
        --ready filled -v -o "$BUNDLE" > "$RAW/$1-pack-smolvm-$3.json"
    stat -c %s "$BUNDLE" > "$RAW/$1-pack-smolvm-$3.size"
}
save_qemu() {     # size mem index
    rm -f "$MIG" "$WORK/qmp.sock"
    tsrun --timeout 600 --mark filled='^filled' --close-stdin-after filled \
        --mark-err saved='^qmpsave: ' -- \
        "$PY" "$BENCH/qmpsave.py" "$WORK/qmp.sock" "$MIG" --max-bandwidth "$QEMU_BW" -- \
        "${QEMU_BASE[@]}" -m "${2}M" -append "$CMDLINE" > "$RAW/$1-save-qemu-$3.json"
}
# The guest gets its byte once it runs; every restore ends 50 ms after
# "verify ok" (the guest then holds).
restore_marks=(--mark verify='^verify ok' --stop-after verify:0.05 --send-after go=g)
smolvm_go=(--mark go='.')   # its first console byte
restore() {       # kind size mem index
    local out=$RAW/$2-restore-$1-$4.json
    case "$1" in
        lazy|eager)
            rm -rf "$WORK/cache-cold"
            tsrun --timeout 600 "${restore_marks[@]}" "${smolvm_go[@]}" \
                --mark-err restored='^smolvm: restored ' -- \
                env SMOLVM_CACHE_DIR="$WORK/cache-cold" SMOLVM_RESTORE="$1" \
                "$SMOLVM" run "$BUNDLE" -v --pristine > "$out"
            rm -rf "$WORK/cache-cold" ;;
        warm)
            # run 0 (not counted) fills the cache, eagerly: published
            # before the guest runs, so ending the run cannot lose it
            tsrun --timeout 600 "${restore_marks[@]}" "${smolvm_go[@]}" \
                --mark-err restored='^smolvm: restored ' -- \
                env SMOLVM_CACHE_DIR="$WORK/cache-warm" SMOLVM_RESTORE="$([ "$4" = 0 ] && echo eager || echo lazy)" \
                "$SMOLVM" run "$BUNDLE" -v --pristine > "$out" ;;
        qemu)
            tsrun --timeout 600 "${restore_marks[@]}" --mark-err go='^vm_state_notify running 1' \
                --mark-err load='^loadvm_state_setup' --mark-err loaded='^qemu_loadvm_state_post_main' -- \
                "${QEMU_BASE[@]}" -m "${3}M" -append "$CMDLINE" -incoming "exec:cat $MIG" \
                -trace vm_state_notify -trace loadvm_state_setup -trace qemu_loadvm_state_post_main \
                > "$out" ;;
    esac
}
many() {          # vmm size mem instances index
    local marks=() j
    for j in $(seq 1 "$4"); do
        marks+=(--mark "verify$j=^$j: verify ok")
        case "$1" in
            smolvm) marks+=(--mark "run$j=^$j: ") ;;
            qemu) marks+=(--mark-err "run$j=^$j: vm_state_notify running 1") ;;
        esac
    done
    rm -rf "$WORK/multi"
    case "$1" in
        smolvm) tsrun --timeout 900 --max-lines 20000 "${marks[@]}" -- \
                    env SMOLVM_CACHE_DIR="$WORK/cache-warm" \
                    bash "$BENCH/multi.sh" "$4" "$WORK/multi" '^verify ok' 600 \
                    --go '^ [0-9]+ MiB$' g "$SMOLVM" run "$BUNDLE" --pristine > "$RAW/many-smolvm-$5.json" ;;
        qemu) tsrun --timeout 900 --max-lines 20000 "${marks[@]}" -- \
                  bash "$BENCH/multi.sh" "$4" "$WORK/multi" '^verify ok' 600 \
                  --go '^vm_state_notify running 1' g "${QEMU_BASE[@]}" -m "${3}M" -append "$CMDLINE" -incoming "exec:cat $MIG" \
                  -trace vm_state_notify > "$RAW/many-qemu-$5.json" ;;
    esac
}

for size in $SIZES; do
    mem=$(mem_mib "$size")
    cat > "$WORK/fill.lua" <<LUA
machine {
  name = "fill",
  memory = "${mem}M",
  kernel = "$FILL",
  cmdline = "fill=$size cpus=1 rounds=1 hold=1 wait=1",
  devices = { { type = "uart" } },
}
LUA
    log "$size MiB filled ($mem MiB RAM): pack / migrate, warm-up + $RUNS runs each"
    rm -rf "$WORK/cache-warm"
    pack_smolvm "$size" "$mem" 0
    CMDLINE=$($PY -c '
import json, sys
for e in json.load(open(sys.argv[1]))["err"]:
    if e[1].startswith("smolvm: cmdline: "):
        print(e[1][len("smolvm: cmdline: "):]); break
else:
    sys.exit("scale.sh: smolvm pack -v printed no cmdline")' "$RAW/$size-pack-smolvm-0.json")
    save_qemu "$size" "$mem" 0
    for i in $(seq 1 "$RUNS"); do
        pack_smolvm "$size" "$mem" "$i"; save_qemu "$size" "$mem" "$i"
    done
    [ -s "$BUNDLE" ] || die "smolvm pack wrote no bundle (see $RAW/$size-pack-smolvm-$RUNS.json)"
    [ -s "$MIG" ] || die "QEMU wrote no migration file (see $RAW/$size-save-qemu-$RUNS.json)"
    mkdir -p "$RAW/warmup"   # not counted; their CPU time is, in the host load
    mv "$RAW/$size"-pack-smolvm-0.* "$RAW/$size"-save-qemu-0.* "$RAW/warmup/"

    log "$size MiB: restore, warm-up + $RUNS runs each of smolvm lazy, eager, cached, QEMU"
    for i in $(seq 0 "$RUNS"); do
        for kind in lazy eager warm qemu; do restore "$kind" "$size" "$mem" "$i"; done
    done
    mv "$RAW/$size"-restore-*-0.json "$RAW/warmup/"

    if [ "$size" = "$MANY_MIB" ] && [ "$K" -gt 0 ]; then
        # QEMU: each instance holds the guest memory it loaded (anonymous);
        # as many as fit in what is available now, keeping 4 GiB spare.
        avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
        QEMU_K=$(( (avail - 4096) / (size + 128) ))
        [ "$QEMU_K" -gt "$K" ] && QEMU_K=$K
        [ "$QEMU_K" -lt 0 ] && QEMU_K=0
        [ "$QEMU_K" -lt "$K" ] && QEMU_K_WHY="each QEMU instance loads its own copy of the $size MiB into anonymous memory: $K would need ~$(( K * (size + 128) / 1024 )) GiB, this host had $((avail / 1024)) GiB available, so $QEMU_K (4 GiB kept spare)"
        log "many: $K smolvm instances of the $size MiB bundle at once, $QEMU_K QEMU instances; $RUNS runs each"
        for i in $(seq 1 "$RUNS"); do
            many smolvm "$size" "$mem" "$K" "$i"
            [ "$QEMU_K" -gt 0 ] && many qemu "$size" "$mem" "$QEMU_K" "$i"
        done
    fi
    rm -rf "$BUNDLE" "$MIG" "$WORK/cache-warm" "$WORK/cache-pack"
done

load_end
cat > "$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "runs": $RUNS, "sizes": [$(echo $SIZES | tr ' ' ,)],
 "mems": [$(for s in $SIZES; do mem_mib "$s"; done | paste -sd,)], "many_mib": $MANY_MIB,
 "instances": $K, "qemu_instances": $QEMU_K, "qemu_instances_why": $(jstr "$QEMU_K_WHY"),
 "host": {"kernel": "$(uname -r)", "cpus": $(nproc),
          "cpu": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
          "mem_gib": $(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo),
          "kvm": "$(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'kvm_pvm (software nested)'; fi)",
          "thp": "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)",
          "fs": $(jstr "$(df -T "$WORK" | awk 'NR==2{print $2" "$1}')"),
          "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$LOAD_AFTER",
          "other_load_cpus": $OTHER_LOAD, "bench_seconds": $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')},
 "smolvm": {"git": "$GIT_REV", "sha256_16": "$SHA"},
 "qemu": {"version": "$("$QEMU" --version | head -1)", "max_bandwidth": $QEMU_BW},
 "cmdline": $(jstr "$CMDLINE")}
EOF
fi

# ---- report ----------------------------------------------------------------------
OUT=$RES/scale-latest.json
$PY - "$RAW" "$OUT" "$JSON" "$BENCH" <<'PY'
import glob, json, os, re, sys
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
def add(key, label, unit, smolvm=(), qemu=(), ratio=True):
    m = {"label": label, "unit": unit, "smolvm": stats(list(smolvm)), "qemu": stats(list(qemu))}
    s, q = m["smolvm"], m["qemu"]
    m["ratio_qemu_over_smolvm"] = q["median"] / s["median"] if ratio and s and q and s["median"] else None
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
def verified(r, size):
    return any(e[1] == "verify ok %d MiB round 1" % size for e in r["out"])

for size, mem in zip(meta["sizes"], meta["mems"]):
    p = "%d MiB: " % size
    packs, saves = load("%d-pack-smolvm-*.json" % size), load("%d-save-qemu-*.json" % size)
    check(p + "smolvm pack", packs, lambda r: r["rc"] == 0 and "saved" in r["marks"])
    pause = []
    for r in packs:
        m = re.search(r"paused ([\d.]+) ms", err_line(r, "smolvm: saved ") or "")
        pause.append(float(m.group(1)) if m else None)
    qs = []
    for r in saves:
        l = err_line(r, "qmpsave: ")
        q = json.loads(l[len("qmpsave: "):]) if l else None
        qs.append(q if q and q["status"] == "completed" else None)
    check(p + "QEMU save", saves, lambda r: '"completed"' in (err_line(r, "qmpsave: ") or ""))
    add("s%d_pause_ms" % size, p + "snapshot: VM paused (pack: paused; QEMU: stop + migrate)", "ms",
        pause, [q and q["stop_ms"] + q["migrate_ms"] for q in qs])
    add("s%d_size_mib" % size, p + "bundle / migration file size", "MiB",
        [int(side(r["_path"], ".size")) / 2**20 for r in packs if side(r["_path"], ".size")],
        [q and q["size"] / 2**20 for q in qs])
    add("s%d_qemu_stop_ms" % size, p + "  QEMU: of it the stop command", "ms",
        (), [q and q["stop_ms"] for q in qs])
    runs = {k: load("%d-restore-%s-*.json" % (size, k)) for k in ("lazy", "eager", "warm", "qemu")}
    for k, rs in runs.items():
        check(p + "restore " + k, rs, lambda r: "verify" in r["marks"] and verified(r, size))
    def running(r):
        # smolvm: the rest of the "filled" line, the guest's first output
        o = r["out"]
        if not o:
            return None
        if o[0][1] != " %d MiB" % size:
            notes.append("%s: first console output after restore is %r, not the end of the "
                         "'filled' line" % (os.path.basename(r["_path"]), o[0][1]))
        return o[0][0]
    qrun = [ms(r["marks"].get("go")) for r in runs["qemu"]]
    qver = [ms(r["marks"].get("verify")) for r in runs["qemu"]]
    names = {"lazy": "first restore, cold cache (lazy)", "eager": "first restore, cold cache, SMOLVM_RESTORE=eager",
             "warm": "cached restore"}
    for k in ("lazy", "eager", "warm"):
        add("s%d_%s_running_ms" % (size, k), p + names[k] + " -> guest running", "ms",
            [ms(running(r)) for r in runs[k]], qrun)
    for k in ("lazy", "eager", "warm"):
        add("s%d_%s_verify_ms" % (size, k), p + names[k] + " -> all memory read back", "ms",
            [ms(r["marks"].get("verify")) for r in runs[k]], qver)
    def self_ms(r):
        m = re.search(r" in ([\d.]+) ms", err_line(r, "smolvm: restored ") or "")
        return float(m.group(1)) if m else None
    for k in ("lazy", "eager", "warm"):
        add("s%d_%s_self_ms" % (size, k), p + "  smolvm -v 'restored in', " + k, "ms",
            [self_ms(r) for r in runs[k]])
    add("s%d_qemu_load_ms" % size, p + "  QEMU loading the migration (trace)", "ms", (),
        [ms(r["marks"]["loaded"] - r["marks"]["load"]) if "loaded" in r["marks"] and "load" in r["marks"]
         else None for r in runs["qemu"]])
    want = {"lazy": "filled on demand", "eager": "decompressed into the cache", "warm": "mapped from the cache"}
    for k in ("lazy", "eager", "warm"):
        for r in runs[k]:
            if want[k] not in (err_line(r, "smolvm: restored ") or ""):
                notes.append("%s: the restore did not say its memory was %s"
                             % (os.path.basename(r["_path"]), want[k]))

# many instances
if meta["instances"]:
    size, k, kq = meta["many_mib"], meta["instances"], meta["qemu_instances"]
    res = {}
    for vmm, n in (("smolvm", k), ("qemu", kq)):
        out = {"running": [], "verify": [], "rss": [], "pss": [], "pss1": []}
        for r in load("many-%s-*.json" % vmm) if n else []:
            run = [r["marks"].get("run%d" % j) for j in range(1, n + 1)]
            ver = [r["marks"].get("verify%d" % j) for j in range(1, n + 1)]
            mem = [l[1].split() for l in r["out"] if l[1].startswith("mem ")]
            comm = "smolvm" if vmm == "smolvm" else "qemu-system-x86"
            mem = [x for x in mem if len(x) == 9 and x[8].startswith(comm)]
            ok = None not in ver and len(mem) == n
            if not ok:
                notes.append("%s: %d of %d instances printed verify ok, memory of %d"
                             % (os.path.basename(r["_path"]), n - ver.count(None), n, len(mem)))
            out["running"].append(ms(max(run)) if None not in run else None)
            out["verify"].append(ms(max(ver)) if ok else None)
            out["rss"].append(sum(int(x[3]) for x in mem) / 1024 if ok else None)
            out["pss"].append(sum(int(x[4]) for x in mem) / 1024 if ok else None)
            out["pss1"].append(sum(int(x[4]) for x in mem) / 1024 / n if ok else None)
        res[vmm] = out
    s, q = res["smolvm"], res["qemu"]
    same = k == kq
    lab = "%d MiB x %d at once (warm cache)%s: " % (size, k, "" if same else "; QEMU: %d at once" % kq)
    add("many_running_ms", lab + "all guests running", "ms", s["running"], q["running"], same)
    add("many_verify_ms", lab + "all read their memory back", "ms", s["verify"], q["verify"], same)
    add("many_rss_mib", lab + "total RSS", "MiB", s["rss"], q["rss"], same)
    add("many_pss_mib", lab + "total PSS", "MiB", s["pss"], q["pss"], same)
    add("many_pss1_mib", lab + "PSS per instance", "MiB", s["pss1"], q["pss1"])
    if meta["qemu_instances_why"]:
        notes.append("QEMU instances at once: " + meta["qemu_instances_why"])

# lib.sh's load_end counts as "other" the CPU time of VMMs that tsrun.py
# ended with SIGKILL (reaped by init, never by us): every restore here.
# tsrun.py read their CPU time just before: taken off again.
own = 0.0
for p in glob.glob(os.path.join(raw, "**", "*.json"), recursive=True):
    if os.path.basename(p) != "meta.json":
        r = json.load(open(p))
        if r.get("stopped_by") and r.get("cpu_s"):
            own += r["cpu_s"]
h = meta["host"]
h["other_load_counted_cpus"] = h["other_load_cpus"]
h["other_load_cpus"] = round(max(0.0, h["other_load_cpus"] - own / h["bench_seconds"]), 2)
if h["other_load_cpus"] > 0.2:
    notes.append("the host was not idle: other processes used %.2f of %d CPUs on average "
                 "during the benchmark; times are inflated and noisy" % (h["other_load_cpus"], h["cpus"]))
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
    d = 1 if unit in ("ms", "MiB") else 2
    if s["n"] == 1:
        return "%.*f" % (d, s["median"])
    return "%.*f [%.*f..%.*f]" % (d, s["median"], d, s["min"], d, s["max"])
h = meta["host"]
print("smolvm vs %s by guest memory size, fill guest (1 vCPU)" % meta["qemu"]["version"])
print("%s UTC, host %s, %d CPUs (%s), %.1f GiB, kernel %s, %s, THP %s; smolvm %s"
      % (meta["date"].replace("T", " ").rstrip("Z"), h["kvm"], h["cpus"], h["cpu"], h["mem_gib"],
         h["kernel"], h["fs"], h["thp"], meta["smolvm"]["git"]))
print("each: median [min..max] of %d runs; %.0f s; other processes used %.2f CPUs "
      "meanwhile (load average before %s, after %s)"
      % (meta["runs"], h["bench_seconds"], h["other_load_cpus"], h["loadavg_before"], h["loadavg_after"]))
print("sizes: %s MiB filled in %s MiB of guest RAM; the largest the board allows (RAM below the "
      "3 GiB MMIO hole): the issue's 4 GiB needs RAM above 4 GiB, not supported yet"
      % ("/".join(map(str, meta["sizes"])), "/".join(map(str, meta["mems"]))))
print()
w = max(len(m["label"]) + len(m["unit"]) + 3 for m in metrics.values())
print("%-*s  %-28s  %-28s  %s" % (w, "metric", "smolvm", "qemu", "qemu/smolvm"))
print("-" * (w + 72))
for m in metrics.values():
    r = m["ratio_qemu_over_smolvm"]
    print("%-*s  %-28s  %-28s  %s" % (w, "%s (%s)" % (m["label"], m["unit"]), fmt(m["smolvm"], m["unit"]),
                                     fmt(m["qemu"], m["unit"]), "%.2fx" % r if r else "-"))
print()
print("kernel command line (both VMMs): %s" % meta["cmdline"])
print("smolvm's pack writes the bundle durably within its pause (fdatasync before the rename), as "
      "does an eager first restore with the cache image before the guest runs; QEMU's migrate "
      "to `cat > FILE` leaves the file in the page cache. QEMU's guest RAM is anonymous memory "
      "with MADV_HUGEPAGE (THP %s), mapped by KVM in 2 MiB pages; smolvm's is the cache image "
      "mapped MAP_PRIVATE (or anonymous, filled through userfaultfd, on a lazy first restore), "
      "in 4 KiB pages: reading all memory back costs a KVM fault per 4 KiB page."
      % h["thp"].split("[")[-1].split("]")[0])
for n in notes:
    print("NOTE: %s" % n)
print("\nsummary: %s; per-run data and console transcripts: %s/"
      % (os.path.relpath(out_path), os.path.relpath(raw)))
PY
[ "$REPORT_ONLY" = 1 ] || cp "$OUT" "$RES/scale-$(date -u +%Y%m%dT%H%M%SZ).json"
