# The cache is private and bounded: what another user could plant there is
# not mapped as guest memory, and it stays within SMOLVM_CACHE_MAX. The
# ticker test guest: a restore that maps someone else's bytes as its
# memory would not tick on to its end. Sourced by tests/integration/run.sh.

cache_bundle() {
	local b=$WORK/cticker.smolmachine
	if [ ! -f "$b" ]; then
		sed -e 's/cmdline = "",/cmdline = "ticks=8",/' -e "s|\.\./build|$PWD/build|" \
			scripts/ticker.lua > "$WORK/cticker.lua"
		SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/cticker.log" 30 pack "$WORK/cticker.lua" -o "$b" ||
			{ show "$WORK/cticker.log"; return 1; }
	fi
	echo "$b"
}

# sxc CACHE BUNDLE: a pristine run with the cache CACHE, eager restore (the
# cache entry is made before the machine runs); the ticks it printed
sxc() {
	SMOLVM_CACHE_DIR=$1 SMOLVM_RESTORE=eager timeout -k 5 60 "$SMOLVM" run --pristine "$2" < /dev/null
}

# ticks_on LOG: the restored ticker went on to its last tick
ticks_on() { grep -q "^tick 7" "$1"; }

t_sec_cache_planted() {
	need_kvm || return
	local b c=$WORK/pcache f out
	b=$(cache_bundle) || return 1
	rm -rf "$c"
	sxc "$c" "$b" > "$WORK/pc.log" 2>&1 && ticks_on "$WORK/pc.log" || { show "$WORK/pc.log"; return 1; }
	[ "$(stat -c %a "$c")" = 700 ] || { echo "cache mode $(stat -c %a "$c")"; return 1; }
	f=$(ls "$c"/mem-*.raw) && [ "$(stat -c %a "$f")" = 600 ] || { ls -la "$c"; return 1; }
	# another user's file, then one anybody may write, at the entry's name:
	# neither is mapped; the entry is made again, ours
	for how in owner mode; do
		head -c "$(stat -c %s "$f")" /dev/urandom > "$f.new" && mv "$f.new" "$f"
		if [ $how = owner ]; then
			[ "$(id -u)" = 0 ] || continue
			chown 65534:65534 "$f"
		else
			chmod 666 "$f"
		fi
		sxc "$c" "$b" > "$WORK/pc.log" 2>&1 && ticks_on "$WORK/pc.log" ||
			{ echo "$how:"; show "$WORK/pc.log"; return 1; }
		[ "$(stat -c %u:%a "$f")" = "$(id -u):600" ] || { echo "$how: $(stat -c %U:%a "$f")"; return 1; }
	done
	# a cache directory others may write is not used at all
	chmod 777 "$c"
	sxc "$c" "$b" > "$WORK/pc.log" 2>&1
	grep -q "may be written by others (mode 0777).*restoring without the cache" "$WORK/pc.log" &&
		ticks_on "$WORK/pc.log" || { show "$WORK/pc.log"; return 1; }
}

t_sec_cache_quota() {
	need_kvm || return
	local b c=$WORK/qcache out
	b=$(cache_bundle) || return 1
	rm -rf "$c" && mkdir -m 700 "$c"
	# an old entry (a memory image of some other bundle)
	head -c 3000000 /dev/urandom > "$c/mem-0000000000000000-3000000.raw"
	touch -a -d '2 days ago' "$c/mem-0000000000000000-3000000.raw"
	SMOLVM_CACHE_MAX=1M sxc "$c" "$b" > "$WORK/qc.log" 2>&1
	grep -q "1 least recently used entry removed" "$WORK/qc.log" && ticks_on "$WORK/qc.log" ||
		{ show "$WORK/qc.log"; return 1; }
	[ ! -e "$c/mem-0000000000000000-3000000.raw" ] && ls "$c"/mem-*.raw > /dev/null ||
		{ ls -la "$c"; return 1; }
	out=$(SMOLVM_CACHE_DIR=$c "$SMOLVM" cache list) &&
		echo "$out" | grep -q "^memory .*$c/mem-" && echo "$out" | grep -q "^1 entry" ||
		{ echo "$out"; return 1; }
	out=$(SMOLVM_CACHE_DIR=$c "$SMOLVM" cache prune --all) && [ "$out" = "removed 1 entry, $(echo "$out" | sed 's/.*entry, //')" ] &&
		! ls "$c"/mem-*.raw > /dev/null 2>&1 || { echo "$out"; ls -la "$c"; return 1; }
}
