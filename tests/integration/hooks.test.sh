# Lifecycle hooks on the ticker test guest (fast, no Linux): order across
# pack -> run, the vm object, user hooks replacing the bundle's, and hostile
# hook scripts each stopped with a message naming script, line and hook.
# Sourced by run.sh.

hooks_script() {
	local ticker
	ticker=$(realpath "$GUEST/ticker.elf")
	cat > "$WORK/hooks.lua" <<LUA
machine {
  name = "hooked", memory = "16M", kernel = "$ticker", cmdline = "ticks=12",
  ready = "tick 3", devices = { { type = "uart" } },
}
local seen = 0
function on_boot(vm)
  print("hook on_boot restored=" .. tostring(vm.restored) .. " name=" .. vm.name)
  local line = assert(vm:wait_console("^tick 1\$", 5))
  print("hook waited for " .. line)
end
function on_console(vm, line)
  if line:match("^tick") then seen = seen + 1 end
end
function before_snapshot(vm) print("hook before_snapshot after " .. seen .. " ticks") end
function after_restore(vm)
  print("hook after_restore restored=" .. tostring(vm.restored) .. " secret=" .. tostring(vm.vars.SECRET))
  print("hook waited for " .. assert(vm:wait_console("tick %d+", 5)))
  local none, why = vm:wait_console("never printed", 0.3)
  print("hook wait timeout " .. tostring(none) .. " " .. why:sub(1, 7))
end
function on_exit(vm, why) print("hook on_exit " .. why .. " seen=" .. seen) end
LUA
	echo "$WORK/hooks.lua"
}

hooks_bundle() {
	local b=$WORK/hooks.smolmachine
	if [ ! -f "$b" ]; then
		SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/hooks-pack.log" 30 pack "$(hooks_script)" -o "$b" ||
			{ show "$WORK/hooks-pack.log"; return 1; }
	fi
	echo "$b"
}

t_hooks_order_pack_run() {
	need_kvm || return
	local b order
	b=$(hooks_bundle) || return 1
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/hooks-run.log" 30 run --pristine --var SECRET=s3cr3t "$b" ||
		{ show "$WORK/hooks-run.log"; return 1; }
	order=$(cat "$WORK/hooks-pack.log" "$WORK/hooks-run.log" | grep -o 'hook [a-z_]*' | tr '\n' ' ')
	echo "order: $order"
	[ "$order" = "hook on_boot hook waited hook before_snapshot hook on_exit hook after_restore hook waited hook wait hook on_exit " ] ||
		{ show "$WORK/hooks-pack.log"; show "$WORK/hooks-run.log"; return 1; }
	grep -q 'hook on_boot restored=false name=hooked' "$WORK/hooks-pack.log" &&
	grep -q 'hook waited for tick 1' "$WORK/hooks-pack.log" &&
	grep -Eq 'hook before_snapshot after [3-9] ticks' "$WORK/hooks-pack.log" &&
	grep -q 'hook on_exit packed' "$WORK/hooks-pack.log" &&
	grep -q 'hook after_restore restored=true secret=s3cr3t' "$WORK/hooks-run.log" &&
	grep -Eq 'hook waited for tick ([4-9]|1[01])' "$WORK/hooks-run.log" &&
	grep -q 'hook wait timeout nil timeout' "$WORK/hooks-run.log" &&
	grep -q 'hook on_exit reset seen=' "$WORK/hooks-run.log" ||
		{ show "$WORK/hooks-pack.log"; show "$WORK/hooks-run.log"; return 1; }
}

t_hooks_user_override() {
	need_kvm || return
	local b log=$WORK/hooks-override.log
	b=$(hooks_bundle) || return 1
	printf 'function after_restore(vm)\n  print("mine " .. vm.vars.K)\n  vm:stop()\nend\n' > "$WORK/mine.lua"
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" 30 run --pristine --hooks "$WORK/mine.lua" --var K=v "$b" ||
		{ show "$log"; return 1; }
	# Replaced: the bundle's after_restore did not run; its on_exit still does.
	grep -q 'script: mine v' "$log" && ! grep -q 'hook after_restore' "$log" &&
		grep -q 'hook on_exit done' "$log" || { show "$log"; return 1; }
}

# hostile BODY EXPECT: an after_restore hook with BODY fails the run with
# exit status 1 and a message matching EXPECT.
hostile() {
	local b log=$WORK/hostile.log
	b=$(hooks_bundle) || return 1
	printf 'function after_restore(vm)\n  %s\nend\n' "$1" > "$WORK/bad.lua"
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" 30 run --pristine --hooks "$WORK/bad.lua" "$b"
	local rc=$?
	if [ $rc -ne 1 ] || ! grep -Eq "$2" "$log"; then
		echo "exit status $rc"; show "$log"; return 1
	fi
	grep -m1 'smolvm: ' "$log"
}

t_hooks_hostile_endless_loop() {
	need_kvm || return
	hostile 'while true do end' 'hook after_restore \(.*bad.lua:1\): .*bad.lua:2: instruction budget'
}

t_hooks_hostile_pcall_loop() {
	need_kvm || return
	# pcall cannot swallow the budget error and go on looping.
	hostile 'while true do pcall(function() while true do end end) end' 'instruction budget'
}

t_hooks_hostile_memory_bomb() {
	need_kvm || return
	hostile 'local t = {} while true do t[#t + 1] = string.rep("x", 1 << 20) end' \
		'hook after_restore \(.*bad.lua:1\): memory limit of [0-9]+ MiB reached'
}

t_hooks_hostile_missing_function() {
	need_kvm || return
	hostile 'no_such_function()' "bad.lua:2: attempt to call a nil value \(global 'no_such_function'\)"
}

t_hooks_hostile_io_os() {
	need_kvm || return
	hostile 'io.open("/etc/passwd")' "global 'io'" || return 1
	hostile 'os.execute("touch /tmp/smolvm-pwned")' "global 'os'" || return 1
	hostile 'require("os")' "global 'require'" || return 1
	hostile 'load(string.dump(print))' "attempt to call a nil value \(field 'dump'\)" || return 1
	[ ! -e /tmp/smolvm-pwned ]
}

t_hooks_hostile_bytecode() {
	need_kvm || return
	hostile 'assert(load("\27Lua"))' 'attempt to load a binary chunk'
}

t_hooks_hostile_syntax_error() {
	need_kvm || return
	local b log=$WORK/syntax.log
	b=$(hooks_bundle) || return 1
	printf 'function after_restore(vm)\n  if then\nend\n' > "$WORK/syntax.lua"
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" 30 run --pristine --hooks "$WORK/syntax.lua" "$b"
	[ $? -eq 1 ] && grep -q "syntax.lua:2: unexpected symbol near 'then'" "$log" || { show "$log"; return 1; }
	# A misspelled hook would never run: refused by name.
	printf 'function after_restor(vm) end\n' > "$WORK/typo.lua"
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" 30 run --pristine --hooks "$WORK/typo.lua" "$b"
	[ $? -eq 1 ] && grep -q 'after_restor looks like a hook but is not one' "$log" || { show "$log"; return 1; }
}

t_hooks_failing_before_snapshot_keeps_bundle() {
	need_kvm || return
	local b=$WORK/keep.smolmachine log=$WORK/keep.log sum
	cp "$(hooks_bundle)" "$b" || return 1
	sum=$(sha256sum < "$b")
	sed 's/^function before_snapshot(vm).*/function before_snapshot(vm) error("refusing") end/' \
		"$(hooks_script)" > "$WORK/failsnap.lua"
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" 30 pack "$WORK/failsnap.lua" -o "$b"
	[ $? -eq 1 ] && grep -q 'hook before_snapshot (.*failsnap.lua:[0-9]*): .*refusing' "$log" ||
		{ show "$log"; return 1; }
	# The failed pack replaced nothing.
	[ "$(sha256sum < "$b")" = "$sum" ] || { echo "bundle changed"; return 1; }
}

t_hooks_hostile_pattern_hang() {
	need_kvm || return
	# One C call (a pattern that backtracks for ages) is invisible to the
	# instruction budget; the CPU-time watchdog stops it.
	hostile 'string.find(string.rep("a", 100000), string.rep("a-", 30) .. "b")' \
		'hook after_restore: still running after [0-9]+ s of CPU time'
}

# vm:keep: values kept before the snapshot reach the restored machine's
# hooks as vm.kept (the script's globals do not: it runs afresh), travel
# on into a bundle saved from it, and can be dropped; a bad name or a
# value too large fails the hook with a message.
t_hooks_keep() {
	need_kvm || return
	local ticker b=$WORK/keep.smolmachine c=$WORK/keep2.smolmachine
	ticker=$(realpath "$GUEST/ticker.elf")
	cat > "$WORK/keep.lua" <<LUA
machine {
  name = "keeper", memory = "16M", kernel = "$ticker", cmdline = "ticks=40",
  ready = "tick 3", devices = { { type = "uart" } },
}
counter = 0
function before_snapshot(vm)
  counter = 7
  if vm.restored then return end -- (it runs before every save)
  vm:keep("last", vm:wait_line("^tick", 2) or "none")
  vm:keep("n", 42)
  vm:keep("gone", "soon")
end
function after_restore(vm)
  print("kept last=" .. tostring(vm.kept.last) .. " n=" .. tostring(vm.kept.n) ..
        " gone=" .. tostring(vm.kept.gone) .. " global=" .. counter)
  if vm.kept.gone then
    vm:keep("gone", nil)
    vm:keep("n", tonumber(vm.kept.n) + 1)
    print("now gone=" .. tostring(vm.kept.gone) .. " n=" .. vm.kept.n)
  end
  local ok, err = pcall(vm.keep, vm, "bad name!", "x")
  print("bad name: " .. tostring(ok) .. " " .. tostring(err))
  ok, err = pcall(vm.keep, vm, "big", string.rep("x", 5000))
  print("too big: " .. tostring(ok) .. " " .. tostring(err))
end
LUA
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/keep-pack.log" 30 pack "$WORK/keep.lua" -o "$b" ||
		{ show "$WORK/keep-pack.log"; return 1; }
	"$SMOLVM" inspect "$b" > "$WORK/keep-i.log" 2>&1
	grep -q '^  n = "42"' "$WORK/keep-i.log" || { show "$WORK/keep-i.log" 40; return 1; }
	# restored, then saved again (SIGUSR1 to -o) after the hook changed them
	SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" run "$b" -o "$c" < /dev/null > "$WORK/keep-run.log" 2>&1 &
	local pid=$! i
	for i in $(seq 50); do grep -q '^script: too big' "$WORK/keep-run.log" && break; sleep 0.1; done
	kill -USR1 $pid
	wait $pid
	grep -Eq '^script: kept last=tick [0-9]+ n=42 gone=soon global=0$' "$WORK/keep-run.log" &&
		grep -q '^script: now gone=nil n=43$' "$WORK/keep-run.log" &&
		grep -q '^script: bad name: false .*kept value name "bad name!": use 1 to 64 letters' "$WORK/keep-run.log" &&
		grep -q '^script: too big: false .*kept value big: 5000 bytes, at most 4096' "$WORK/keep-run.log" ||
		{ grep -v "^tick" "$WORK/keep-run.log"; return 1; }
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/keep-run2.log" 30 run --pristine "$c" ||
		{ show "$WORK/keep-run2.log"; return 1; }
	grep -Eq '^script: kept last=tick [0-9]+ n=43 gone=nil global=0$' "$WORK/keep-run2.log" ||
		{ show "$WORK/keep-run2.log" 30; return 1; }
}
