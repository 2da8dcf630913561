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
