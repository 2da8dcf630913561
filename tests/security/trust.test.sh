# Hooks by trust: a bundle packed by someone else (another data directory:
# another user's machine) does not run its hooks on this host unless the
# user says --trust; the user's own --hooks still run, in a state of their
# own. (A script cannot make a __gc finalizer, which no budget could stop:
# tests/unit/test_script.c.) Sourced by run.sh.

# The attacker's bundle: hooks that announce themselves and try to carry
# the user's --var values away.
trust_hostile_bundle() {
	local b=$WORK/hostile.smolmachine ticker
	if [ ! -f "$b" ]; then
		ticker=$(realpath "$GUEST/ticker.elf")
		cat > "$WORK/hostile.lua" <<LUA
machine {
  name = "hostile", memory = "16M", kernel = "$ticker", cmdline = "ticks=30",
  ready = "tick 2", devices = { { type = "uart" } },
}
function after_restore(vm) print("HOSTILE after_restore token=" .. tostring(vm.vars.TOKEN)) end
function on_exit(vm) print("HOSTILE on_exit") end
LUA
		SMOLVM_DATA_DIR=$WORK/attacker-data SMOLVM_CACHE_DIR=$WORK/cache \
			run "$WORK/hostile-pack.log" 60 pack "$WORK/hostile.lua" -o "$b" ||
			{ show "$WORK/hostile-pack.log"; return 1; }
	fi
	echo "$b"
}

t_sec_hooks_untrusted() {
	need_kvm || return
	local b
	b=$(trust_hostile_bundle) || return 1
	cat > "$WORK/mine.lua" <<'LUA'
function after_restore(vm) print("MINE after_restore token=" .. tostring(vm.vars.TOKEN)) end
LUA
	# the victim: its own data directory, which never recorded this bundle
	SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/u.log" 60 \
		run --pristine --var TOKEN=t0k3n --hooks "$WORK/mine.lua" "$b" ||
		{ show "$WORK/u.log"; return 1; }
	grep -q "was not packed by you on this host: its hooks do not run (--trust runs them)" "$WORK/u.log" &&
		! grep -q HOSTILE "$WORK/u.log" && grep -q "MINE after_restore token=t0k3n" "$WORK/u.log" &&
		grep -q "^tick 29" "$WORK/u.log" || { show "$WORK/u.log" 30; return 1; }
	# --trust: the user vouches for it; its hooks run
	SMOLVM_DATA_DIR=$WORK/victim-data SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/t.log" 60 \
		run --pristine --trust "$b" || { show "$WORK/t.log"; return 1; }
	grep -q "HOSTILE after_restore" "$WORK/t.log" && grep -q "HOSTILE on_exit" "$WORK/t.log" ||
		{ show "$WORK/t.log" 30; return 1; }
	# the attacker's own host trusts it: they packed it
	SMOLVM_DATA_DIR=$WORK/attacker-data SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/a.log" 60 \
		run --pristine "$b" || { show "$WORK/a.log"; return 1; }
	grep -q "HOSTILE after_restore" "$WORK/a.log" || { show "$WORK/a.log" 30; return 1; }
}

# Trust follows the bytes: a copy of a trusted bundle is trusted, a copy
# changed by one byte is not, and a save from an untrusted bundle does not
# make it trusted.
t_sec_trust_copies() {
	need_kvm || return
	local b mine=$WORK/mine.smolmachine copy=$WORK/copy.smolmachine d=$WORK/victim2-data
	b=$(hooks_bundle) || return 1
	# packed by "the victim" in its own data directory
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/p.log" 60 \
		pack "$(hooks_script)" -o "$mine" || { show "$WORK/p.log"; return 1; }
	cp "$mine" "$copy"
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/c.log" 60 run --pristine "$copy" ||
		{ show "$WORK/c.log"; return 1; }
	grep -q "hook after_restore" "$WORK/c.log" || { echo "the copy"; show "$WORK/c.log"; return 1; }
	# one byte changed: no longer what was packed (refused by its checksums
	# here; an attacker who fixes those gets a file of another hash)
	printf 'x' | dd of="$copy" bs=1 seek=$(($(stat -c %s "$copy") - 1)) conv=notrunc status=none
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/m.log" 60 run --pristine "$copy"
	! grep -q "hook after_restore" "$WORK/m.log" || { echo "the changed copy"; show "$WORK/m.log"; return 1; }
	echo "one byte changed: $(grep -m1 smolvm: "$WORK/m.log")"
	# a save of an untrusted bundle (exec --keep style: run -o) is not trusted
	cp "$(trust_hostile_bundle)" "$WORK/h2.smolmachine" || return 1
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" run "$WORK/h2.smolmachine" \
		< /dev/null > "$WORK/s.log" 2>&1 & # the guest ends after 30 ticks
	local pid=$!
	sleep 1
	kill -USR1 $pid 2>/dev/null
	wait $pid
	grep -q "smolvm: saved $WORK/h2.smolmachine" "$WORK/s.log" || { echo "no save"; show "$WORK/s.log"; return 1; }
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/s2.log" 60 run --pristine "$WORK/h2.smolmachine"
	grep -q "was not packed by you" "$WORK/s2.log" || { show "$WORK/s.log"; show "$WORK/s2.log"; return 1; }
}

# vm:snapshot from a restored machine writes only where the command may
# save: not under run --pristine (without -o) nor exec without --keep.
t_sec_snapshot_where_allowed() {
	need_kvm || return
	local ticker b=$WORK/snapper.smolmachine d=$WORK/victim3-data sm
	ticker=$(realpath "$GUEST/ticker.elf")
	sm=$(realpath "$SMOLVM")
	cat > "$WORK/snapper.lua" <<LUA
machine {
  name = "snapper", memory = "16M", kernel = "$ticker", cmdline = "ticks=20",
  ready = "tick 2", devices = { { type = "uart" } },
}
function after_restore(vm) print("SNAP", vm:snapshot("snapped.smolmachine")) end
LUA
	SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/sp.log" 60 \
		pack "$WORK/snapper.lua" -o "$b" || { show "$WORK/sp.log"; return 1; }
	mkdir -p "$WORK/snapdir" && rm -f "$WORK/snapdir/snapped.smolmachine"
	(cd "$WORK/snapdir" && SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache \
		timeout -k 5 60 "$sm" run --pristine "$b" < /dev/null > "$WORK/s1.log" 2>&1)
	grep -q "SNAP.*nil.*vm:snapshot: this command saves nothing" "$WORK/s1.log" &&
		[ ! -e "$WORK/snapdir/snapped.smolmachine" ] || { show "$WORK/s1.log"; return 1; }
	(cd "$WORK/snapdir" && SMOLVM_DATA_DIR=$d SMOLVM_CACHE_DIR=$WORK/cache \
		timeout -k 5 60 "$sm" run --pristine -o "$WORK/out.smolmachine" "$b" < /dev/null > "$WORK/s2.log" 2>&1)
	grep -q "SNAP.*true" "$WORK/s2.log" && [ -f "$WORK/snapdir/snapped.smolmachine" ] ||
		{ show "$WORK/s2.log"; return 1; }
}

# --hooks live in a state of their own: a bundle's script that swallows
# assignments to its globals cannot keep its own hook past the user's.
t_sec_user_hooks_apart() {
	need_kvm || return
	local ticker b=$WORK/swallow.smolmachine
	ticker=$(realpath "$GUEST/ticker.elf")
	cat > "$WORK/swallow.lua" <<LUA
machine {
  name = "swallow", memory = "16M", kernel = "$ticker", cmdline = "ticks=8",
  ready = "tick 2", devices = { { type = "uart" } },
}
function after_restore(vm) print("BUNDLE after_restore") end
setmetatable(_G, { __newindex = function() end })
LUA
	cat > "$WORK/user.lua" <<'LUA'
function after_restore(vm) print("USER after_restore") end
LUA
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/sw-pack.log" 60 pack "$WORK/swallow.lua" -o "$b" ||
		{ show "$WORK/sw-pack.log"; return 1; }
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/sw.log" 60 run --pristine --hooks "$WORK/user.lua" "$b" ||
		{ show "$WORK/sw.log"; return 1; }
	grep -q "USER after_restore" "$WORK/sw.log" && ! grep -q "BUNDLE after_restore" "$WORK/sw.log" ||
		{ show "$WORK/sw.log"; return 1; }
}
