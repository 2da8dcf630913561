# Device options: plugins declare them, smolvm checks each device of a
# machine script against the declaration before anything starts (so no
# KVM is needed to be refused), and `plugins --options` prints them.
# Sourced by run.sh.

# opt_expect NAME DEVICES WANT: boot a machine with DEVICES (the Lua list's
# contents); it must fail with status 1 and print WANT (fixed text).
opt_expect() {
	local log=$WORK/$1.log
	printf 'machine { memory = "16M", kernel = "%s",\n  devices = { %s } }\n' \
		"$(realpath "$GUEST/ticker.elf")" "$2" > "$WORK/$1.lua"
	run "$log" 10 boot "$WORK/$1.lua"
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -qF -- "$3" "$log"; then
		echo "{ $2 }: exit $rc, expected 1 and: $3"; show "$log" 5; return 1
	fi
}

t_options_misspelt() {
	local fail=0
	opt_expect typo '{ type = "uart" }, { type = "uart", prot = 0x2f8, irq = 3 }' \
		'typo.lua:2: devices[2].prot: unknown option (did you mean port?)' || fail=1
	opt_expect typo2 '{ type = "virtio-net", perod_ms = 5 }' \
		'typo2.lua:2: devices[1].perod_ms: unknown option (known: mac, net, forward, mtu, egress, host_loopback)' || fail=1
	opt_expect typo3 '{ type = "uart" }, { type = "virtio-rng", seed = 1 }' \
		'typo3.lua:2: devices[2].seed: unknown option (this device takes none)' || fail=1
	# the line of the option, in a script that spreads its devices
	printf 'machine {\n  memory = "16M", kernel = "%s",\n  devices = {\n    { type = "uart" },\n    { type = "uart",\n      port = 0x2f8,\n      irq = 3, prot = 1 },\n  },\n}\n' \
		"$(realpath "$GUEST/ticker.elf")" > "$WORK/lines.lua"
	run "$WORK/lines.log" 10 boot "$WORK/lines.lua"
	grep -qF 'lines.lua:7: devices[2].prot: unknown option (did you mean port?)' "$WORK/lines.log" ||
		{ echo "the option's line:"; show "$WORK/lines.log" 5; fail=1; }
	return $fail
}

t_options_mistyped() {
	local fail=0
	opt_expect list4int '{ type = "uart", port = { 0x3f8, 0x2f8 } }' \
		'list4int.lua:2: devices[1].port: expected an integer, got a list' || fail=1
	opt_expect text4int '{ type = "uart", irq = "four" }' \
		'text4int.lua:2: devices[1].irq: expected an integer, got "four"' || fail=1
	opt_expect float4int '{ type = "uart" }, { type = "virtio-net", mtu = 1500.5 }' \
		'float4int.lua:2: devices[2].mtu: expected an integer, got "1500.5"' || fail=1
	opt_expect notbool '{ type = "uart" }, { type = "virtio-net", egress = 1 }' \
		'notbool.lua:2: devices[2].egress: expected true or false, got "1"' || fail=1
	opt_expect one4list '{ type = "uart" }, { type = "virtio-blk", path = { "a.img", "b.img" } }' \
		'one4list.lua:2: devices[2].path: expected a file name, got a list' || fail=1
	opt_expect required '{ type = "uart" }, { type = "virtio-blk", serial = "data" }' \
		'required.lua:2: devices[2].path: missing (required: the raw disk image' || fail=1
	return $fail
}

# A plugin that declares nothing (built for ABI 1.0) gets what the script
# gives, unchecked, as before.
t_options_undeclared_unchecked() {
	need_kvm || return
	local dir=$WORK/old-plugins log=$WORK/opt-old.log
	[ -f build/tests/plugins/old_minor.so ] || { echo "missing old_minor.so (make test-plugins)"; return 1; }
	mkdir -p "$dir" && cp build/tests/plugins/old_minor.so "$dir/"
	printf 'machine { memory = "16M", kernel = "%s", cmdline = "ticks=1",\n  devices = { { type = "uart" }, { type = "old-minor", anything = { 1, 2 }, goes = "x" } } }\n' \
		"$(realpath "$GUEST/ticker.elf")" > "$WORK/opt-old.lua"
	SMOLVM_PLUGIN_PATH=$dir run "$log" 20 boot "$WORK/opt-old.lua"
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^tick 0' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_options_listed() {
	local log=$WORK/opt-list.log
	run "$log" 10 plugins --options uart || { show "$log"; return 1; }
	if ! grep -Eq '^OPTION +TYPE +DEFAULT +HELP' "$log" ||
	   ! grep -Eq '^port +int +0x3f8 +the first of its 8 I/O ports' "$log" ||
	   ! grep -Eq '^irq +int +4 +its interrupt line' "$log"; then
		show "$log"; return 1
	fi
	run "$log" 10 plugins --options virtio-blk || { show "$log"; return 1; }
	grep -Eq '^path +path +required +the raw disk image' "$log" || { show "$log"; return 1; }
	run "$log" 10 plugins --options virtio-net || { show "$log"; return 1; }
	grep -Eq '^forward +list \(or one\) +- ' "$log" || { show "$log"; return 1; }
	run "$log" 10 plugins --options virtio-rng || { show "$log"; return 1; }
	grep -q '^takes no options' "$log" || { show "$log"; return 1; }
	run "$log" 10 plugins --options kvm || { show "$log"; return 1; }
	grep -q 'a backend plugin: it takes no device options' "$log" || { show "$log"; return 1; }
	run "$log" 10 plugins --options nosuch
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -q 'no plugin "nosuch" on the search path' "$log"; then
		echo "nosuch: exit $rc"; show "$log"; return 1
	fi
	[ -f build/tests/plugins/old_minor.so ] || { echo "missing old_minor.so (make test-plugins)"; return 1; }
	mkdir -p "$WORK/opt-old-list" && cp build/tests/plugins/old_minor.so "$WORK/opt-old-list/"
	SMOLVM_PLUGIN_PATH=$WORK/opt-old-list run "$log" 10 plugins --options old-minor ||
		{ show "$log"; return 1; }
	grep -q '^declares no options' "$log" || { show "$log"; return 1; }
}

# A device's file option (declared SMOLVM_OPT_PATH) at restore: the bundle
# names no path of the host that packed it; a restore here finds the file
# where the script was, --bind gives another (relative to where smolvm
# runs), and a bundle that is not yours needs --bind (or --trust, and then
# its relative paths start where you run it, never where it was packed).
t_options_bind_at_restore() {
	need_kvm || return
	local dir=$WORK/bind-plugins src=$WORK/bind-src away=$WORK/bind-away b log=$WORK/bind.log
	[ -f build/tests/plugins/hostfile.so ] || { echo "missing hostfile.so (make test-plugins)"; return 1; }
	rm -rf "$dir" "$src" "$away" && mkdir -p "$dir" "$src" "$away"
	cp build/tests/plugins/hostfile.so "$dir/"
	b=$src/m.smolmachine
	printf 'machine { name = "bind", memory = "16M", kernel = "guest:ticker.elf", cmdline = "ticks=4",\n  ready = "tick 1",\n  devices = { { type = "uart" },\n    { type = "hostfile-test", log = "first.log", label = "x" } } }\n' > "$src/m.lua"
	export SMOLVM_PLUGIN_PATH=$dir SMOLVM_DATA_DIR=$WORK/bind-data SMOLVM_CACHE_DIR=$WORK/cache
	local bin
	bin=$(realpath "$SMOLVM")
	bind_run() { # LOG DIR ARGS...: smolvm in DIR
		local l=$1 d=$2
		shift 2
		(cd "$d" && timeout -k 5 30 "$bin" "$@") > "$l" 2>&1 < /dev/null
	}
	local rc=0
	{
		bind_run "$log" "$src" pack m.lua -o "$b" || { echo "pack:"; show "$log"; return 1; }
		[ "$(cat "$src/first.log")" = created ] || { echo "first.log: $(cat "$src/first.log")"; return 1; }
		# no host path of the packing machine in the bundle
		! grep -qaF "$src" "$b" || { echo "the bundle names $src"; return 1; }
		"$SMOLVM" inspect "$b" | grep -qx 'script = m.lua' || { "$SMOLVM" inspect "$b" | head -20; return 1; }
		# yours, run from elsewhere: the file where the script was
		bind_run "$log" "$away" run --pristine "$b" && grep -q '^tick 3' "$log" &&
			[ "$(tail -1 "$src/first.log")" = restored ] && [ ! -e "$away/first.log" ] ||
			{ echo "run from elsewhere:"; show "$log"; ls "$away"; return 1; }
		# --bind: another file, relative to where smolvm runs
		bind_run "$log" "$away" run --pristine "$b" --bind hostfile-test0.log=second.log &&
			[ "$(cat "$away/second.log")" = restored ] && [ "$(grep -c restored "$src/first.log")" = 1 ] ||
			{ echo "--bind:"; show "$log"; return 1; }
		# its mistakes
		! bind_run "$log" "$away" run --pristine "$b" --bind hostfile-test0.label=x.txt &&
			grep -qF 'hostfile-test0 has no file option "label" (its plugin hostfile-test declares log as file options)' "$log" ||
			{ echo "--bind of a non-file option:"; show "$log"; return 1; }
		! bind_run "$log" "$away" run --pristine "$b" --bind tally0.log=x.txt &&
			grep -qF -- '--bind tally0.log=x.txt: its machine has no device tally0' "$log" ||
			{ echo "--bind of no device:"; show "$log"; return 1; }
		! bind_run "$log" "$away" run --pristine "$b" --bind hostfile-test0=x.txt &&
			grep -qF 'expected DEVICE.OPTION=PATH' "$log" || { echo "--bind syntax:"; show "$log"; return 1; }
		# not yours: the file must be granted, or the bundle trusted
		export SMOLVM_DATA_DIR=$WORK/bind-other
		! bind_run "$log" "$away" run --pristine "$b" &&
			grep -qF 'its device hostfile-test0 would use the host file' "$log" &&
			grep -qF -- '--bind hostfile-test0.log=PATH' "$log" ||
			{ echo "not yours, no --bind:"; show "$log"; return 1; }
		bind_run "$log" "$away" run --pristine "$b" --bind hostfile-test0.log=third.log &&
			[ "$(cat "$away/third.log")" = restored ] || { echo "not yours, --bind:"; show "$log"; return 1; }
		bind_run "$log" "$away" run --pristine "$b" --trust && [ "$(cat "$away/first.log")" = restored ] &&
			[ "$(grep -c restored "$src/first.log")" = 1 ] ||
			{ echo "not yours, --trust: relative to here"; show "$log"; return 1; }
	} || rc=1
	unset SMOLVM_PLUGIN_PATH SMOLVM_DATA_DIR SMOLVM_CACHE_DIR
	return $rc
}
