# The virtio test guest (build/guest/virtio.elf, tests/guests/virtio.c) on
# smolvm's virtio-mmio devices. Sourced by run.sh. A device whose plugin is
# not installed (not in `smolvm plugins`) is a visible SKIP.

VIRTIO_ELF=$GUEST/virtio.elf

# virtio_have TYPE: the plugin is installed.
virtio_have() {
	[ -z "${VIRTIO_PLUGINS+x}" ] &&
		VIRTIO_PLUGINS=$(timeout 10 "$SMOLVM" plugins 2>/dev/null | awk '{print $1}')
	grep -qx -- "$1" <<< "$VIRTIO_PLUGINS"
}

# virtio_need TYPE...: KVM, the guest and the plugins, or a SKIP (77).
virtio_need() {
	need_kvm || return
	[ -f "$VIRTIO_ELF" ] || { echo "missing $VIRTIO_ELF (make test-guests)"; return 1; }
	local t
	for t in "$@"; do
		virtio_have "$t" || {
			echo "SKIP: $t plugin not installed (not listed by '$SMOLVM plugins')"
			return 77
		}
	done
}

# virtio_script NAME CMDLINE DEVICES: a machine script in $WORK (uart first,
# so the guest's report goes to stdout).
virtio_script() {
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "64M",
  kernel = "$(realpath "$VIRTIO_ELF")",
  cmdline = "$2",
  devices = { { type = "uart" }, $3 },
}
LUA
	echo "$WORK/$1.lua"
}

# virtio_boot LOG SCRIPT: boots; the guest must finish ("virtio: done", exit
# 0) without any FAIL line or a device marked broken.
virtio_boot() {
	run "$1" 60 boot "$2"
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^virtio: done' "$1" || grep -q '^FAIL' "$1" ||
	   grep -q 'device needs reset' "$1"; then
		echo "exit $rc"; show "$1" 40; return 1
	fi
}

# virtio_expect LOG LINE...: each line is present (as a prefix).
virtio_expect() {
	local log=$1 l
	shift
	for l in "$@"; do
		grep -qF -- "$l" "$log" || { echo "missing '$l'"; show "$log" 40; return 1; }
	done
}

# A 16 MiB sparse image.
virtio_image() {
	rm -f "$1" && truncate -s 16M "$1"
}

# virtio_pattern_ok IMAGE SEED: the guest's 64 KiB pattern at sector 8, and
# zeros in the 4 KiB either side (tests/guests/virtio.c has the formula).
virtio_pattern_ok() {
	python3 - "$1" "$2" <<'PY'
import struct, sys
path, seed = sys.argv[1], int(sys.argv[2])
off, n = 8 * 512, 64 * 1024
with open(path, "rb") as f:
    data = f.read(off + n + 4096)
want = b"".join(struct.pack("<I", ((((off // 4 + i + seed) * 0x9e3779b1) & 0xffffffff) ^ 0x736d6f6c))
                for i in range(n // 4))
got = data[off:off + n]
if got != want:
    bad = next(i for i in range(n) if got[i:i + 1] != want[i:i + 1])
    sys.exit("pattern differs at image offset %d" % (off + bad))
if data[:off] != bytes(off) or data[off + n:] != bytes(4096):
    sys.exit("writes outside sectors 8..135")
PY
}

# virtio_udpecho PORTFILE: a UDP echo server on 127.0.0.1 (any free port,
# written to PORTFILE; ends by itself after 60 s idle). Prints its PID.
virtio_udpecho() {
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(60)
try:
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d, a)
except socket.timeout:
    pass
' "$1" > /dev/null 2>&1 < /dev/null &
	echo $!
	local i
	for i in $(seq 50); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

t_virtio_rng() {
	virtio_need virtio-rng || return
	local log=$WORK/vrng.log s
	s=$(virtio_script vrng "" '{ type = "virtio-rng" }')
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "PASS: rng" "PASS: virtio interrupts"
}

t_virtio_blk() {
	virtio_need virtio-blk || return
	local log=$WORK/vblk.log img=$WORK/vblk.img seed=$RANDOM s
	virtio_image "$img"
	s=$(virtio_script vblk "blkseed=$seed" "{ type = \"virtio-blk\", path = \"$img\" }")
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "blk: capacity 32768 sectors" "PASS: blk write/read/flush" \
		"PASS: blk read into a page read before from user mode" \
		"PASS: blk read into a page read before from kernel mode" \
		"PASS: blk read past the end fails" "PASS: virtio interrupts" || return 1
	virtio_pattern_ok "$img" "$seed" || { show "$log"; return 1; }
}

# The driver's bulk path in user mode, 8-deep, and small rings without
# EVENT_IDX; prints the figures (not checked: they depend on the host).
t_virtio_blkbench() {
	virtio_need virtio-blk || return
	local log=$WORK/vbench.log img=$WORK/vbench.img s
	virtio_image "$img"
	s=$(virtio_script vbench "blkbench=8 blkbench4k=1000" \
		"{ type = \"virtio-blk\", path = \"$img\" }")
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "blkbench: write " || return 1
	grep '^blkbench: write' "$log"
	s=$(virtio_script vbench2 "blkbench=2 blkbench4k=200 vqsize=4 noeventidx=1" \
		"{ type = \"virtio-blk\", path = \"$img\" }")
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "blkbench: write " "PASS: blk write/read/flush"
}

t_virtio_net() {
	virtio_need virtio-net || return
	command -v python3 > /dev/null || { echo "SKIP: no python3 for the UDP echo server"; return 77; }
	local log=$WORK/vnet.log pf=$WORK/vnet.port pid rc=0 s
	pid=$(virtio_udpecho "$pf") || { echo "UDP echo server did not start"; kill "$pid" 2>/dev/null; return 1; }
	s=$(virtio_script vnet "udpecho=$(cat "$pf")" '{ type = "virtio-net" }')
	virtio_boot "$log" "$s" &&
		virtio_expect "$log" "PASS: net arp" "PASS: net udp echo" "PASS: virtio interrupts" || rc=1
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return $rc
}

t_virtio_net_no_port() {
	virtio_need virtio-net || return
	local log=$WORK/vnet0.log s
	s=$(virtio_script vnet0 "" '{ type = "virtio-net" }')
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "PASS: net arp" "SKIP: net (no udpecho=)"
}

t_virtio_console() {
	virtio_need virtio-console || return
	local log=$WORK/vcon.log s
	s=$(virtio_script vcon "" '{ type = "virtio-console" }')
	virtio_boot "$log" "$s" || return 1
	virtio_expect "$log" "PASS: console tx" || return 1
	# The guest never prints the line itself: it came through the device.
	grep -qx 'hello from virtio-console' "$log" || { echo "console line missing"; show "$log"; return 1; }
}

# Every installed virtio device in one machine: discovery of several
# devices, their interrupt lines, and the same tests.
t_virtio_all() {
	need_kvm || return
	local devs="" want=() img=$WORK/vall.img log=$WORK/vall.log pid="" cmd="" seed=$RANDOM s rc=0
	[ -f "$VIRTIO_ELF" ] || { echo "missing $VIRTIO_ELF (make test-guests)"; return 1; }
	if virtio_have virtio-rng; then
		devs+='{ type = "virtio-rng" }, '
		want+=("PASS: rng")
	fi
	if virtio_have virtio-blk; then
		virtio_image "$img"
		devs+="{ type = \"virtio-blk\", path = \"$img\" }, "
		cmd+="blkseed=$seed "
		want+=("PASS: blk write/read/flush")
	fi
	if virtio_have virtio-net && command -v python3 > /dev/null; then
		pid=$(virtio_udpecho "$WORK/vall.port") || { kill "$pid" 2>/dev/null; return 1; }
		devs+='{ type = "virtio-net" }, '
		cmd+="udpecho=$(cat "$WORK/vall.port") "
		want+=("PASS: net udp echo")
	fi
	if virtio_have virtio-console; then
		devs+='{ type = "virtio-console" }, '
		want+=("PASS: console tx")
	fi
	[ ${#want[@]} -gt 0 ] || { echo "SKIP: no virtio device plugin installed"; return 77; }
	s=$(virtio_script vall "$cmd" "$devs")
	virtio_boot "$log" "$s" && virtio_expect "$log" "${want[@]}" "PASS: virtio interrupts" || rc=1
	if [ $rc -eq 0 ] && virtio_have virtio-blk; then
		virtio_pattern_ok "$img" "$seed" || rc=1
	fi
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	[ $rc -eq 0 ] && echo "devices: ${want[*]#PASS: }"
	return $rc
}
