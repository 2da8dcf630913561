#!/usr/bin/env bash
# bench/virtio.sh [--runs N] [--mib M] [--json] [--wait-idle S]
#   the virtio test guest (build/guest/virtio.elf) under smolvm and QEMU.
#
# Both VMMs run the same ELF with the same kernel command line (smolvm's full
# one, host flags included; each VMM adds its own virtio_mmio.device=), 1 vCPU,
# 64 MiB, virtio-mmio version 2 (QEMU: -M microvm,acpi=off -global
# virtio-mmio.force-legacy=false). Median [min..max] of N runs (default 5),
# interleaved smolvm/QEMU:
#   blk  `blkbench=M` (default 64): M MiB sequential write (64 KiB requests,
#        queue depth 8, then FLUSH) and read, then `blkbench4k=4000` random
#        4 KiB reads at queue depth 1, as the guest reports them; on a fresh
#        sparse 80 MiB raw image (M + 16 MiB) in a temporary directory, the
#        same file system for both. smolvm: { type = "virtio-blk", path = IMG };
#        QEMU: -drive file=IMG,format=raw,if=none -device virtio-blk-device
#        (default cache=writeback: both write through the host page cache and
#        fdatasync on FLUSH). Plus the VMM's CPU time for the whole run.
#   net  user networking (libslirp in both: smolvm's virtio-net, QEMU
#        -netdev user): ARP for the gateway, then `udpecho=PORT`, one UDP
#        datagram to 10.0.2.2:PORT, answered by an echo server on the host's
#        127.0.0.1:PORT. The guest prints only PASS/FAIL, so the round trips
#        are timed on the console: from the line the guest prints just before
#        the request to the PASS line it prints after the answer. That
#        includes printing the PASS line (~40 us per character through the
#        uart, ~1.5-2 ms, about the same in both VMMs) and the latency of
#        tsrun.py reading the console: rough figures, noisy on a busy host.
# Ratios: smolvm/QEMU for throughput, QEMU/smolvm for times (> 1: smolvm better).
#
# Needs: build/smolvm + its virtio-blk, virtio-net plugins (`make all`),
# build/guest/virtio.elf (`make test-guests`), qemu-system-x86_64, python3.
# Output: the table on stdout, bench/results/virtio-latest.json (summary, in
# the format of run.sh's latest.json), a dated copy virtio-DATE.json, and
# bench/results/virtio-raw/ (one tsrun.py JSON per run, transcripts included).
# --json prints the summary JSON instead of the table. --wait-idle S: first
# wait (at most S seconds) until the host's CPUs have been idle for 5 s.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

RUNS=5
MIB=64
JSON=0
WAIT_IDLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --mib) MIB=${2:?--mib needs a number}; shift 2 ;;
        --json) JSON=1; shift ;;
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "virtio.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "virtio.sh: --runs wants a positive number" >&2; exit 2; }
[[ "$MIB" =~ ^[1-9][0-9]*$ ]] || { echo "virtio.sh: --mib wants a positive number" >&2; exit 2; }
K4=4000

ROOT=$(dirname "$BENCH")
cd "$ROOT"
QEMU=${QEMU:-qemu-system-x86_64}
PY=${PYTHON:-python3}
RES=$BENCH/results
RAW=$RES/virtio-raw
die() { echo "virtio.sh: $*" >&2; exit 1; }
[ -x build/smolvm ] || die "build/smolvm missing: run 'make all'"
[ -f build/guest/virtio.elf ] || die "build/guest/virtio.elf missing: run 'make test-guests'"
for p in virtio-blk virtio-net; do
    [ -f "build/plugins/$p.so" ] || die "build/plugins/$p.so missing: run 'make all'"
done
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
command -v "$PY" >/dev/null || die "python3 not found"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm not usable"

# tsrun.py: per-line timestamps; kills its process group at the end
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-virtiobench.XXXXXX")
ECHO_PID=""
cleanup() {
    local j
    set +e
    [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
    for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null || true; done
    wait
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$RAW"
mkdir -p "$RAW" "$WORK/plugins"
cp build/smolvm "$WORK/smolvm"
cp build/plugins/*.so "$WORK/plugins/"
cp build/guest/virtio.elf "$WORK/virtio.elf"
SMOLVM=$WORK/smolvm
ELF=$WORK/virtio.elf
IMG=$WORK/disk.img
QEMU_BASE=("$QEMU" -M microvm,acpi=off -enable-kvm -cpu host,-arch-capabilities -nographic -no-reboot
           -m 64M -global virtio-mmio.force-legacy=false -kernel "$ELF")

[ "$WAIT_IDLE" -gt 0 ] 2>/dev/null && wait_idle "$WAIT_IDLE"
# UDP echo server on 127.0.0.1 (any free port); counts the datagrams into
# WORK/echo.count; ends by itself after 120 s without one, or at our exit.
"$PY" -c '
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(120)
n = 0
try:
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d, a)
        n += 1
        open(sys.argv[2], "w").write("%d\n" % n)
except socket.timeout:
    pass
' "$WORK/echo.port" "$WORK/echo.count" > /dev/null 2>&1 < /dev/null &
ECHO_PID=$!
for _ in $(seq 50); do [ -s "$WORK/echo.port" ] && break; sleep 0.1; done
[ -s "$WORK/echo.port" ] || die "the UDP echo server did not start"
PORT=$(cat "$WORK/echo.port")

BLK_ARGS="blkbench=$MIB blkbench4k=$K4"
NET_ARGS="udpecho=$PORT"
cat > "$WORK/blk.lua" <<LUA
machine {
  name = "vbench-blk", cpus = 1, memory = "64M", kernel = "$ELF", cmdline = "$BLK_ARGS",
  devices = { { type = "uart" }, { type = "virtio-blk", path = "$IMG" } },
}
LUA
cat > "$WORK/net.lua" <<LUA
machine {
  name = "vbench-net", cpus = 1, memory = "64M", kernel = "$ELF", cmdline = "$NET_ARGS",
  devices = { { type = "uart" }, { type = "virtio-net" } },
}
LUA

load_begin
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
SHA=$(sha256sum "$SMOLVM" | cut -c1-16)

marks=(--mark done='^virtio: done' --mark-err cl='^smolvm: cmdline: ')
fresh_image() { rm -f "$IMG"; truncate -s $((MIB + 16))M "$IMG"; }
run_one() {       # vmm blk|net index
    local out=$RAW/$2-$1-$3.json n0 n1
    [ "$2" = blk ] && fresh_image
    n0=$(cat "$WORK/echo.count" 2>/dev/null || echo 0)
    case "$1" in
        smolvm) tsrun --timeout 120 "${marks[@]}" -- "$SMOLVM" boot "$WORK/$2.lua" -v > "$out" ;;
        qemu) if [ "$2" = blk ]; then
                  tsrun --timeout 120 "${marks[@]}" -- "${QEMU_BASE[@]}" -append "$BLK_CL" \
                      -drive id=d0,file="$IMG",format=raw,if=none -device virtio-blk-device,drive=d0 > "$out"
              else
                  tsrun --timeout 120 "${marks[@]}" -- "${QEMU_BASE[@]}" -append "$NET_CL" \
                      -netdev user,id=n0 -device virtio-net-device,netdev=n0 > "$out"
              fi ;;
    esac
    n1=$(cat "$WORK/echo.count" 2>/dev/null || echo 0)
    [ "$2" = net ] && echo $((n1 - n0)) > "$RAW/$2-$1-$3.datagrams"
    return 0
}
# QEMU's command line: smolvm's, less its virtio_mmio.device= (microvm adds its own)
qemu_cmdline() {
    $PY -c '
import json, sys
for e in json.load(open(sys.argv[1]))["err"]:
    if e[1].startswith("smolvm: cmdline: "):
        print(" ".join(w for w in e[1][len("smolvm: cmdline: "):].split()
                       if not w.startswith("virtio_mmio.device="))); break
else:
    sys.exit("virtio.sh: smolvm -v printed no cmdline")' "$1"
}

log "warm-up (not counted)"
run_one smolvm blk 0; run_one smolvm net 0
BLK_CL=$(qemu_cmdline "$RAW/blk-smolvm-0.json")
NET_CL=$(qemu_cmdline "$RAW/net-smolvm-0.json")
log "QEMU cmdline, blk: $BLK_CL"
log "QEMU cmdline, net: $NET_CL"
run_one qemu blk 0; run_one qemu net 0
for i in $(seq 1 "$RUNS"); do
    log "run $i/$RUNS"
    run_one smolvm blk "$i"; run_one qemu blk "$i"
    run_one smolvm net "$i"; run_one qemu net "$i"
done
rm -f "$RAW"/*-0.json "$RAW"/*-0.datagrams

load_end
cat > "$RAW/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "runs": $RUNS, "mib": $MIB, "k4": $K4,
 "host": {"kernel": "$(uname -r)", "cpus": $(nproc),
          "cpu": "$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
          "kvm": "$(if grep -qwE 'vmx|svm' /proc/cpuinfo; then echo hardware; else echo 'kvm_pvm (software nested)'; fi)",
          "fs": $(jstr "$(df -T "$WORK" | awk 'NR==2{print $2" "$1}')"),
          "loadavg_before": "$LOAD_BEFORE", "loadavg_after": "$LOAD_AFTER",
          "other_load_cpus": $OTHER_LOAD, "bench_seconds": $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')},
 "smolvm": {"git": "$GIT_REV", "sha256_16": "$SHA"},
 "qemu": {"version": "$("$QEMU" --version | head -1)"},
 "cmdline": {"blk": $(jstr "$BLK_CL"), "net": $(jstr "$NET_CL")}}
EOF

# ---- report (summary in the format of report.py's latest.json) --------------
OUT=$RES/virtio-latest.json
$PY - "$RAW" "$OUT" "$JSON" "$BENCH" <<'PY'
import glob, json, os, re, sys
raw, out_path, as_json, bench = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
sys.path.insert(0, bench)
from report import stats   # median/min/max/n/values, as run.sh's report

meta = json.load(open(os.path.join(raw, "meta.json")))
VMMS = ("smolvm", "qemu")
def load(case, vmm):
    runs = []
    for p in sorted(glob.glob(os.path.join(raw, "%s-%s-*.json" % (case, vmm))),
                    key=lambda p: int(re.findall(r"\d+", p)[-1])):
        r = json.load(open(p))
        r["_path"] = p
        runs.append(r)
    return runs
metrics, notes = {}, []
def add(key, label, unit, per_vmm, better):
    """better: "higher" (ratio smolvm/qemu) or "lower" (ratio qemu/smolvm)."""
    m = {"label": label, "unit": unit, "better": better}
    for v in VMMS:
        m[v] = stats(per_vmm.get(v, []))
    s, q = m["smolvm"], m["qemu"]
    if better == "higher":
        m["ratio_smolvm_over_qemu"] = s["median"] / q["median"] if s and q and q["median"] else None
    else:
        m["ratio_qemu_over_smolvm"] = q["median"] / s["median"] if s and q and s["median"] else None
    metrics[key] = m
def line(r, rx):
    for e in r["out"]:
        if re.search(rx, e[1]):
            return e
    return None
def guest_ok(r):
    return r["rc"] == 0 and "done" in r["marks"] and line(r, r"^FAIL") is None

blk = {v: load("blk", v) for v in VMMS}
net = {v: load("net", v) for v in VMMS}
for case, d in (("blk", blk), ("net", net)):
    for v in VMMS:
        bad = [os.path.basename(r["_path"]) for r in d[v] if not guest_ok(r)]
        if bad:
            notes.append("%s/%s: %d of %d runs failed or did not finish: %s"
                         % (case, v, len(bad), len(d[v]), " ".join(bad)))
BENCH_RX = r"^blkbench: write ([\d.]+) MB/s read ([\d.]+) MB/s 4k-read (\d+) req/s"
def bench(r, i):
    e = line(r, BENCH_RX)
    return float(re.search(BENCH_RX, e[1]).group(i)) if e and guest_ok(r) else None
add("blk_write_mbs", "blk: sequential write + FLUSH, %d MiB, 64 KiB QD8" % meta["mib"], "MB/s",
    {v: [bench(r, 1) for r in blk[v]] for v in VMMS}, "higher")
add("blk_read_mbs", "blk: sequential read, 64 KiB QD8", "MB/s",
    {v: [bench(r, 2) for r in blk[v]] for v in VMMS}, "higher")
add("blk_4k_reqs", "blk: random 4 KiB reads QD1", "req/s",
    {v: [bench(r, 3) for r in blk[v]] for v in VMMS}, "higher")
add("blk_cpu_ms", "blk: VMM CPU time (user+sys), whole run", "ms",
    {v: [r["cpu_s"] * 1e3 if guest_ok(r) else None for r in blk[v]] for v in VMMS}, "lower")
add("blk_wall_ms", "blk: whole run, process start to exit", "ms",
    {v: [r["exit_s"] * 1e3 if guest_ok(r) else None for r in blk[v]] for v in VMMS}, "lower")

# net: round trips from the console (see the script's header)
def interval_us(r, before_rx, after_rx):
    a, b = line(r, before_rx), line(r, after_rx)
    return (b[0] - a[0]) * 1e6 if a and b and guest_ok(r) else None
add("net_arp_us", "net: ARP to slirp's gateway, console interval", "us",
    {v: [interval_us(r, r"^net: mac ", r"^PASS: net arp") for r in net[v]] for v in VMMS}, "lower")
add("net_udp_us", "net: UDP echo via host 127.0.0.1, console interval", "us",
    {v: [interval_us(r, r"^PASS: net arp", r"^PASS: net udp echo") for r in net[v]] for v in VMMS}, "lower")
udp_pass = {v: "%d/%d" % (sum(1 for r in net[v] if line(r, r"^PASS: net udp echo")), len(net[v]))
            for v in VMMS}
# datagrams the echo server answered per run: 1 unless the guest retried (after 1 s)
for v in VMMS:
    for r in net[v]:
        try:
            n = int(open(r["_path"][:-len(".json")] + ".datagrams").read())
        except (OSError, ValueError):
            continue
        if n != 1:
            notes.append("%s: the echo server answered %d datagrams (1 expected)"
                         % (os.path.basename(r["_path"]), n))

if meta["host"]["other_load_cpus"] > 0.2:
    notes.append("the host was not idle: other processes used %.2f of %d CPUs on average "
                 "during the benchmark; times are inflated and noisy"
                 % (meta["host"]["other_load_cpus"], meta["host"]["cpus"]))
summary = {"meta": meta, "metrics": metrics, "udp_echo_pass": udp_pass, "notes": notes}
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
    d = 0 if unit in ("req/s", "runs", "ms", "us") else 1
    if s["n"] == 1:
        return "%.*f" % (d, s["median"])
    return "%.*f [%.*f..%.*f]" % (d, s["median"], d, s["min"], d, s["max"])
h = meta["host"]
print("smolvm vs %s, virtio test guest (1 vCPU, 64 MiB, virtio-mmio)" % meta["qemu"]["version"])
print("%s UTC, host %s, %d CPUs (%s), kernel %s, image on %s; smolvm %s"
      % (meta["date"].replace("T", " ").rstrip("Z"), h["kvm"], h["cpus"], h["cpu"], h["kernel"],
         h["fs"], meta["smolvm"]["git"]))
print("each: median [min..max] of %d runs; %.0f s; other processes used %.2f CPUs "
      "meanwhile (load average before %s, after %s)"
      % (meta["runs"], h["bench_seconds"], h["other_load_cpus"], h["loadavg_before"], h["loadavg_after"]))
print()
w = max(len(m["label"]) + len(m["unit"]) + 3 for m in metrics.values())
print("%-*s  %-24s  %-24s  %s" % (w, "metric", "smolvm", "qemu", "ratio (> 1: smolvm better)"))
print("-" * (w + 80))
for m in metrics.values():
    if m["better"] == "higher":
        r, how = m["ratio_smolvm_over_qemu"], "smolvm/qemu"
    else:
        r, how = m["ratio_qemu_over_smolvm"], "qemu/smolvm"
    print("%-*s  %-24s  %-24s  %s" % (w, "%s (%s)" % (m["label"], m["unit"]), fmt(m["smolvm"], m["unit"]),
                                     fmt(m["qemu"], m["unit"]), "%.2fx %s" % (r, how) if r else "-"))
print("%-*s  %-24s  %-24s" % (w, "net: UDP echo PASS (runs)", udp_pass["smolvm"], udp_pass["qemu"]))
print()
print("kernel command line, blk: %s" % meta["cmdline"]["blk"])
print("kernel command line, net: %s" % meta["cmdline"]["net"])
for n in notes:
    print("NOTE: %s" % n)
print("\nsummary: %s; per-run data and console transcripts: %s/"
      % (os.path.relpath(out_path), os.path.relpath(raw)))
PY
cp "$OUT" "$RES/virtio-$(date -u +%Y%m%dT%H%M%SZ).json"
