# The default Linux guest, end to end. Sourced by run.sh.

# ---- the default Linux guest -------------------------------------------------

linux_ready() {
	[ -f "$GUEST/vmlinux" ] && [ -f "$GUEST/initramfs.cpio" ] && return 0
	echo "missing $GUEST/vmlinux or initramfs.cpio: run 'make guest'"
	return 1
}

# The shell round trip of the boot issue: 42 and 2, clean exit 0.
t_linux_shell_2cpus() {
	need_kvm || return
	linux_ready || return 1
	local log=$WORK/linux.log
	printf 'echo $((6*7))\nnproc\n' |
		timeout -k 5 300 "$SMOLVM" boot scripts/linux.lua --cpus 2 > "$log" 2>&1
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q 'Brought up 1 node, 2 CPUs' "$log" ||
	   ! grep -qE $'^42\r?$' "$log" || ! grep -qE $'^2\r?$' "$log"; then
		echo "exit $rc"; show "$log" 30; return 1
	fi
}

# Userspace for real: a pipeline, a background job and a hundred forks.
t_linux_processes() {
	need_kvm || return
	linux_ready || return 1
	local log=$WORK/linux-proc.log
	cat > "$WORK/proc.sh" <<'SH'
echo "pipe: $(echo a b c | wc -w)"
sleep 1 &
bg=$!
wait $bg && echo "bg: done $?"
i=0; while [ $i -lt 25 ]; do /bin/busybox true || echo fork-failed; i=$((i+1)); done
echo "forks: $i"
ls /proc | wc -l > /tmp/n && echo "procs: ok"
echo "hwrng: $(cat /sys/class/misc/hw_random/rng_current) $(head -c 16 /dev/hwrng | wc -c)"
SH
	# With a virtio-rng as well: /dev/hwrng in the default guest.
	sed -e "s|\.\./build|$PWD/build|" -e 's/{ type = "uart" },/{ type = "uart" }, { type = "virtio-rng" },/' \
		scripts/linux.lua > "$WORK/linux-rng.lua"
	timeout -k 5 600 "$SMOLVM" boot "$WORK/linux-rng.lua" < "$WORK/proc.sh" > "$log" 2>&1
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^pipe: 3' "$log" || ! grep -q '^bg: done 0' "$log" ||
	   ! grep -q '^forks: 25' "$log" || grep -q '^fork-failed\|Segmentation' "$log" ||
	   ! grep -q '^procs: ok' "$log" || ! grep -q '^hwrng: virtio_rng.0 16' "$log"; then
		echo "exit $rc"; show "$log" 30; return 1
	fi
}

