# virtio-console (/dev/hvc0). Sourced by run.sh.

console_linux_ready() {
	[ -f "$GUEST/vmlinux" ] && [ -f "$GUEST/initramfs.cpio" ] && return 0
	echo "missing $GUEST/vmlinux or initramfs.cpio: run 'make guest'"
	return 1
}

# Options and the uart/virtio-console input arbitration, with the ticker
# guest (no virtio driver: this is about the VMM side, and it is fast).
t_console_input_options() {
	need_kvm || return
	local log=$WORK/con-opt.log s rc
	# uart first: it owns input, virtio-console is output only and says so.
	s=$(machine_script con-auto "$GUEST/ticker.elf" "" \
		'{ type = "uart" }, { type = "virtio-console" }')
	run "$log" 30 boot "$s" --append ticks=2
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^tick 1' "$log" ||
	   ! grep -q 'virtio-console0: warning: .*/dev/hvc0 is output only' "$log"; then
		echo "auto: exit $rc"; show "$log"; return 1
	fi
	# input = false: the same, silently.
	s=$(machine_script con-off "$GUEST/ticker.elf" "" \
		'{ type = "uart" }, { type = "virtio-console", input = false }')
	run "$log" 30 boot "$s" --append ticks=2
	rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^tick 1' "$log" || grep -q 'virtio-console' "$log"; then
		echo "input=false: exit $rc"; show "$log"; return 1
	fi
	# input = true when the uart has it: refused, with the reason.
	s=$(machine_script con-on "$GUEST/ticker.elf" "" \
		'{ type = "uart" }, { type = "virtio-console", input = true }')
	run "$log" 30 boot "$s"
	rc=$?
	if [ $rc -ne 1 ] || ! grep -q 'virtio-console0: the console is already attached' "$log"; then
		echo "input=true: exit $rc"; show "$log"; return 1
	fi
	s=$(machine_script con-bad "$GUEST/ticker.elf" "" \
		'{ type = "uart" }, { type = "virtio-console", input = "maybe" }')
	run "$log" 30 boot "$s"
	rc=$?
	if [ $rc -ne 1 ] || ! grep -qF 'con-bad.lua:7: devices[2].input: expected true or false, got "maybe"' "$log"; then
		echo "input=maybe: exit $rc"; show "$log"; return 1
	fi
}

# Linux with both consoles: the shell is on ttyS0, a line written to
# /dev/hvc0 reaches smolvm's stdout through the virtio console.
t_console_hvc_output() {
	need_kvm || return
	console_linux_ready || return 1
	local log=$WORK/con-out.log s
	s=$(machine_script con-out "$GUEST/vmlinux" \
		"console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on" \
		'{ type = "uart" }, { type = "virtio-console" }' "$GUEST/initramfs.cpio")
	# The computed text is not in the echoed command line.
	printf 'echo "hvc-$((6*7))-out" > /dev/hvc0 && echo "sent $?"\n' |
		timeout -k 5 300 "$SMOLVM" boot "$s" > "$log" 2>&1
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -qxE $'hvc-42-out\r?' "$log" || ! grep -q '^sent 0' "$log"; then
		echo "exit $rc"; show "$log" 30; return 1
	fi
}

# Linux with virtio-console as its only console (console=hvc0): boot log,
# shell input and output, the 80x25 size; packed at its shell prompt, it
# takes input through the restored device (queues, port state) and ends at
# ^D. One boot serves both (each boot of Linux costs minutes here).
t_console_hvc_snapshot() {
	need_kvm || return
	console_linux_ready || return 1
	local b=$WORK/con.smolmachine log=$WORK/con-run.log s
	s=$(machine_script con-snap "$GUEST/vmlinux" \
		"console=hvc0 reboot=k panic=-1 random.trust_bootloader=on" \
		'{ type = "virtio-console" }' "$GUEST/initramfs.cpio")
	# pack keeps the guest's input open at end of input: no ^D.
	printf 'echo $((6*7))\nstty size\nread -r c < /proc/consoles; echo "con: $c"\necho "hvc-$((2*3))-packed"\n' |
		SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 300 "$SMOLVM" pack "$s" \
		--ready "hvc-6-packed" -o "$b" > "$WORK/con-pack.log" 2>&1 ||
		{ show "$WORK/con-pack.log" 30; return 1; }
	grep -q 'Run /init as init process' "$WORK/con-pack.log" && grep -qxE $'42\r?' "$WORK/con-pack.log" &&
		grep -qxE $'25 80\r?' "$WORK/con-pack.log" && grep -q '^con: hvc0 ' "$WORK/con-pack.log" ||
		{ echo "the shell on hvc0 before the pack:"; show "$WORK/con-pack.log" 30; return 1; }
	printf 'echo $((6*7))\n' |
		SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 120 "$SMOLVM" run "$b" --pristine > "$log" 2>&1
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -qxE $'42\r?' "$log"; then
		echo "exit $rc"; show "$log" 30; return 1
	fi
}
