# The syscall filters: a device gone bad (tests/plugins/escape.c: its thread
# starts a shell a moment after the machine starts, as code a guest took
# over would) is stopped before the program runs, with the call named; a
# device handler on a vCPU thread that opens a file (allowed to the process,
# not to a vCPU thread) is stopped before the file exists.
# Sourced by tests/integration/run.sh.

# escape_dir: a plugin directory holding only the escape test plugin.
escape_dir() {
	local dir=$WORK/escape-plugins
	[ -f build/tests/plugins/escape.so ] || { echo "missing escape.so (make test-plugins)"; return 1; }
	mkdir -p "$dir" && cp build/tests/plugins/escape.so "$dir/" && echo "$dir"
}

t_sec_syscall_filter() {
	need_kvm || return
	local ticker dir rc
	dir=$(escape_dir) || { echo "$dir"; return 1; }
	ticker=$(realpath "$GUEST/ticker.elf")
	cat > "$WORK/escape.lua" <<LUA
machine {
  name = "escape", memory = "16M", kernel = "$ticker", cmdline = "ticks=40",
  devices = { { type = "uart" }, { type = "escape-test", run = "touch $WORK/escaped" } },
}
LUA
	rm -f "$WORK/escaped"
	SMOLVM_PLUGIN_PATH=$dir run "$WORK/esc.log" 30 boot "$WORK/escape.lua"
	rc=$?
	[ $rc -eq 1 ] && grep -q "forbidden system call execve (59): stopped" "$WORK/esc.log" &&
		[ ! -e "$WORK/escaped" ] || { echo "exit $rc"; ls -la "$WORK"/escaped 2>&1; show "$WORK/esc.log"; return 1; }
	# without the filter the same plugin does start the program: the test
	# above could fail
	SMOLVM_SECCOMP=off SMOLVM_PLUGIN_PATH=$dir run "$WORK/esc2.log" 30 boot "$WORK/escape.lua"
	[ -e "$WORK/escaped" ] || { echo "the plugin did not go bad without the filter"; show "$WORK/esc2.log"; return 1; }
}

t_sec_syscall_filter_vcpu() {
	need_kvm || return
	local ticker dir rc
	dir=$(escape_dir) || { echo "$dir"; return 1; }
	ticker=$(realpath "$GUEST/ticker.elf")
	# the device sits where the uart would: the ticker's first write reaches it
	cat > "$WORK/escape-io.lua" <<LUA
machine {
  name = "escape", memory = "16M", kernel = "$ticker", cmdline = "ticks=40",
  devices = { { type = "escape-test", touch = "$WORK/opened" } },
}
LUA
	rm -f "$WORK/opened"
	SMOLVM_PLUGIN_PATH=$dir run "$WORK/io.log" 30 boot "$WORK/escape-io.lua"
	rc=$?
	[ $rc -eq 1 ] && grep -q "forbidden system call openat (257) on a vCPU thread: stopped" "$WORK/io.log" &&
		[ ! -e "$WORK/opened" ] || { echo "exit $rc"; ls -la "$WORK"/opened 2>&1; show "$WORK/io.log"; return 1; }
	# without the filter the handler does open it: the test above could fail
	SMOLVM_SECCOMP=off SMOLVM_PLUGIN_PATH=$dir run "$WORK/io2.log" 10 boot "$WORK/escape-io.lua"
	[ -e "$WORK/opened" ] || { echo "the handler did not open the file without the filter"; show "$WORK/io2.log"; return 1; }
	grep -m1 "forbidden" "$WORK/io.log"
}
