# Saves from a restored machine store only the memory it wrote since the
# restore (core/snapshot/dirty.c) and take the rest from its bundle: on the
# ticker restored from the cache and restored lazily, SMOLVM_SAVE=check
# compares every chunk kept from the parent with the guest's memory (the
# save fails on a difference), and the child resumes right after the last
# tick printed before its save. Sourced by run.sh (ticker_bundle and
# run_bundle come from snapshot.test.sh).

# dirty_child TAG CACHE: restores the ticker bundle with the cache dir
# CACHE, saves it on SIGUSR1 into $WORK/TAG.smolmachine, and checks it.
dirty_child() {
	local tag=$1 cache=$2 b c=$WORK/$1.smolmachine log=$WORK/$1.log pid last first
	b=$(ticker_bundle) || return 1
	SMOLVM_CACHE_DIR=$cache SMOLVM_SAVE=check timeout -s TERM 3 "$SMOLVM" run "$b" -o "$c" -v \
		> "$log" 2>&1 < /dev/null &
	pid=$!
	sleep 1.5
	pkill -USR1 -P $pid smolvm 2> /dev/null || kill -USR1 "$(pgrep -P $pid)" 2> /dev/null
	wait $pid
	# "(61 zero, 63 unchanged)": chunks taken from the parent, none of
	# them different from the memory.
	grep -Eq "saved $c: .*\\([0-9]+ zero, [1-9][0-9]* unchanged\\)" "$log" ||
		{ echo "no save keeping chunks of its parent"; show "$log"; return 1; }
	last=$(sed -n "/saved/q;p" "$log" | grep '^tick' | tail -1 | awk '{print $2}')
	run_bundle "$WORK/$tag-child.log" 1 "$c" --pristine
	first=$(grep -m1 '^tick' "$WORK/$tag-child.log" | awk '{print $2}')
	if [ -z "$first" ] || [ -z "$last" ] || [ "$first" -ne $((last + 1)) ]; then
		echo "saved after tick $last, the child resumed at tick ${first:-none}"
		show "$WORK/$tag-child.log"; return 1
	fi
	grep -m1 restored "$log"
	grep -m1 saved "$log" | tr -d '\r'
}

t_dirty_save_after_cached_restore() {
	need_kvm || return
	local b
	b=$(ticker_bundle) || return 1
	run_bundle "$WORK/dirty-warm.log" 1 "$b" --pristine -v # the cache now holds its image
	grep -q 'restored' "$WORK/dirty-warm.log" || { show "$WORK/dirty-warm.log"; return 1; }
	dirty_child dirty-cached "$WORK/cache" || return 1
	grep -q 'mapped from the cache' "$WORK/dirty-cached.log" || { show "$WORK/dirty-cached.log"; return 1; }
}

t_dirty_save_after_lazy_restore() {
	need_kvm || return
	dirty_child dirty-lazy "$WORK/dirty-cold-cache" || return 1
	grep -q 'filled on demand' "$WORK/dirty-lazy.log" ||
		{ echo "SKIP: no lazy restore on this host:"; grep 'not filled on demand' "$WORK/dirty-lazy.log"; return 77; }
}

# SMOLVM_SAVE=full compresses everything: the same memory as a dirty-only
# save of the same restore would keep.
t_dirty_save_full_forced() {
	need_kvm || return
	local b c=$WORK/dirty-full.smolmachine log=$WORK/dirty-full.log pid
	b=$(ticker_bundle) || return 1
	SMOLVM_CACHE_DIR=$WORK/cache SMOLVM_SAVE=full timeout -s TERM 3 "$SMOLVM" run "$b" -o "$c" \
		> "$log" 2>&1 < /dev/null &
	pid=$!
	sleep 1.5
	pkill -USR1 -P $pid smolvm 2> /dev/null || kill -USR1 "$(pgrep -P $pid)" 2> /dev/null
	wait $pid
	grep -Eq "saved $c: .*\\([0-9]+ zero, 0 unchanged\\)" "$log" || { show "$log"; return 1; }
}
