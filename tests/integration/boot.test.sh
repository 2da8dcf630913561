# Boot machinery with the test guests; errors; plugins. Sourced by run.sh.

# ---- test guests -------------------------------------------------------------

t_ticker() {
	need_kvm || return
	local log=$WORK/ticker.log
	run "$log" 30 boot scripts/ticker.lua --append ticks=5
	local rc=$?
	local ticks
	ticks=$(grep -o '^tick [0-9]*' "$log" | tr '\n' ' ')
	if [ $rc -ne 0 ] || [ "$ticks" != "tick 0 tick 1 tick 2 tick 3 tick 4 " ]; then
		echo "exit $rc, ticks: '$ticks'"; show "$log"; return 1
	fi
}

t_smp_2cpus() {
	need_kvm || return
	local log=$WORK/smp2.log s
	s=$(guest_script smp "$GUEST/smp.elf")
	run "$log" 60 boot "$s" --cpus 2
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^smp: 2 cpus, counter=200000' "$log" ||
	   ! grep -q '^smp: ok' "$log" || ! grep -q '^cpu 1 up' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_smp_4cpus() {
	need_kvm || return
	local log=$WORK/smp4.log s
	s=$(guest_script smp "$GUEST/smp.elf")
	run "$log" 60 boot "$s" --cpus 4
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^smp: 4 cpus, counter=400000' "$log" ||
	   [ "$(grep -c '^cpu [123] up' "$log")" -ne 3 ]; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

# The host probe tells whether a guest `syscall` reaches CPL0; the KVM
# backend's own detection (host quirks on/off, shown with -v) must agree.
t_host_probe() {
	need_kvm || return
	local log=$WORK/probe.log s
	s=$(guest_script probe "$GUEST/probe.elf")
	run "$log" 30 boot "$s" -v
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^probe: user mode ok' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
	if grep -q '^probe: syscall stays at CPL3 (host defect)' "$log"; then
		grep -q 'host quirks on' "$log" || { echo "defect seen but quirks off"; show "$log"; return 1; }
		echo "host: syscall defect present, quirks on"
	elif grep -q '^probe: syscall reaches CPL0' "$log"; then
		grep -q 'host quirks on' "$log" && { echo "no defect but quirks on"; show "$log"; return 1; }
		echo "host: syscall works, quirks off"
	else
		show "$log"; return 1
	fi
}

# reboot = "restart" boots the machine again; SIGTERM then ends it (143).
t_reboot_restart() {
	need_kvm || return
	local log=$WORK/restart.log
	sed -e 's/cmdline = "",/cmdline = "ticks=1", reboot = "restart",/' \
	    -e "s|\.\./build|$PWD/build|" scripts/ticker.lua > "$WORK/restart.lua"
	timeout -s TERM 3 "$SMOLVM" boot "$WORK/restart.lua" > "$log" 2>&1 < /dev/null &
	local pid=$!
	wait $pid
	local rc=$? starts
	starts=$(grep -c '^ticker: start' "$log")
	if [ $rc -ne 124 ] || [ "$starts" -lt 2 ]; then
		echo "exit $rc, $starts boots"; show "$log"; return 1
	fi
	echo "$starts boots in 3 s"
}

# ---- errors ----------------------------------------------------------------

t_bad_kernel_path() {
	local log=$WORK/badk.log
	run "$log" 10 boot scripts/ticker.lua --kernel /nonexistent/vmlinux
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -q 'kernel /nonexistent/vmlinux: No such file or directory' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_bad_script_field() {
	local log=$WORK/bads.log
	printf 'machine {\n  kernel = "x",\n  memory = "lots",\n}\n' > "$WORK/bad.lua"
	run "$log" 10 boot "$WORK/bad.lua"
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -q "bad.lua:3: machine.memory: expected a size" "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_unknown_device() {
	local log=$WORK/baddev.log
	printf 'machine { kernel = "x", devices = { { type = "nosuch" } } }\n' > "$WORK/baddev.lua"
	run "$log" 10 boot "$WORK/baddev.lua"
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -q 'no device plugin "nosuch"' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

# Two devices on one interrupt line: the second is refused, naming the
# first; on lines of their own both work (the second uart's port is
# silent: the ticker writes to the first).
t_irq_line_claimed() {
	need_kvm || return
	local log=$WORK/irq.log ticker rc
	ticker=$(realpath "$GUEST/ticker.elf")
	printf 'machine { memory = "16M", kernel = "%s", cmdline = "ticks=3",\n  devices = { { type = "uart" }, { type = "uart", port = 0x2f8 } } }\n' \
		"$ticker" > "$WORK/irq.lua"
	run "$log" 10 boot "$WORK/irq.lua"
	rc=$?
	[ $rc -eq 1 ] && grep -q "uart1: interrupt line 4 is uart0's already" "$log" ||
		{ echo "exit $rc"; show "$log"; return 1; }
	sed -i 's/port = 0x2f8 }/port = 0x2f8, irq = 3 }/' "$WORK/irq.lua"
	run "$log" 10 boot "$WORK/irq.lua" && grep -q "^tick 2" "$log" ||
		{ echo "irq = 3: exit $?"; show "$log"; return 1; }
}

# A kernel that faults at once with no IDT: a triple fault, reported with
# the registers, non-zero exit.
t_triple_fault() {
	need_kvm || return
	local log=$WORK/tf.log
	python3 - "$WORK/ud2.elf" <<'PY'
import struct, sys
code = b"\x0f\x0b"                      # ud2, and no IDT to take it
ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9,
                   2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 1, 0, 0, 0)
phdr = struct.pack("<IIQQQQQQ", 1, 5, 120, 0x100000, 0x100000, len(code), len(code), 0x1000)
open(sys.argv[1], "wb").write(ehdr + phdr + code)
PY
	local s
	s=$(guest_script tf "$WORK/ud2.elf")
	run "$log" 20 boot "$s"
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -q 'triple fault' "$log" || ! grep -q 'rip=0000000000100000' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_plugins_list() {
	local log=$WORK/plugins.log
	run "$log" 10 plugins
	if ! grep -Eq '^kvm +backend' "$log" || ! grep -Eq '^uart +device' "$log"; then
		show "$log"; return 1
	fi
}

t_plugins_refusals() {
	local dir=build/tests/plugins log=$WORK/refusals.log
	[ -d "$dir" ] || { echo "missing $dir (make test-plugins)"; return 1; }
	SMOLVM_PLUGIN_PATH=$dir run "$log" 10 plugins
	if ! grep -q 'refused .*: plugin ABI 2.0, host 1\.[0-9]*: different major' "$log" ||
	   ! grep -q 'refused .*no smolvm_plugin_v1 symbol' "$log"; then
		show "$log" 40; return 1
	fi
}

