# Snapshots: pack, run, inspect; bad bundles refused; atomic writes.
# Sourced by run.sh.

# A packed ticker bundle, made once per test run.
ticker_bundle() {
	local b=$WORK/ticker.smolmachine
	if [ ! -f "$b" ]; then
		SMOLVM_CACHE_DIR=$WORK/cache timeout 30 "$SMOLVM" pack scripts/ticker.lua -o "$b" \
			> "$WORK/pack.log" 2>&1 < /dev/null || { show "$WORK/pack.log"; return 1; }
	fi
	echo "$b"
}

# run BUNDLE for a while; stdout+stderr to LOG.
run_bundle() { # log seconds bundle [args]
	local log=$1 t=$2
	shift 2
	SMOLVM_CACHE_DIR=$WORK/cache timeout -s TERM "$t" "$SMOLVM" run "$@" > "$log" 2>&1 < /dev/null
}

t_snapshot_ticker_continues() {
	need_kvm || return
	local b log=$WORK/run1.log first
	b=$(ticker_bundle) || return 1
	grep -q '^tick 5' "$WORK/pack.log" || { show "$WORK/pack.log"; return 1; }
	run_bundle "$log" 2 "$b" -v
	first=$(grep -m1 '^tick' "$log")
	# The guest resumes after the ready line: the next tick, never tick 0.
	if [ "$first" != "tick 6" ] || grep -q '^tick 0' "$log" || grep -q '^ticker: start' "$log"; then
		echo "first line after restore: '$first'"; show "$log"; return 1
	fi
	grep -m1 'restored' "$log"
}

t_snapshot_cache_second_restore() {
	need_kvm || return
	local b log=$WORK/run2.log
	b=$(ticker_bundle) || return 1
	run_bundle "$WORK/warm.log" 1 "$b" -v
	run_bundle "$log" 1 "$b" -v
	if ! grep -q 'memory mapped from the cache' "$log" || [ "$(grep -m1 '^tick' "$log")" != "tick 6" ]; then
		show "$log"; return 1
	fi
	grep -m1 'restored' "$log"
}

t_snapshot_two_at_once() {
	need_kvm || return
	local b
	b=$(ticker_bundle) || return 1
	run_bundle "$WORK/a.log" 2 "$b" --pristine & local pa=$!
	run_bundle "$WORK/b.log" 2 "$b" --pristine & local pb=$!
	wait $pa; wait $pb
	for l in a b; do
		if [ "$(grep -m1 '^tick' "$WORK/$l.log")" != "tick 6" ] || [ "$(grep -c '^tick' "$WORK/$l.log")" -lt 5 ]; then
			echo "instance $l:"; show "$WORK/$l.log"; return 1
		fi
	done
}

t_snapshot_smp_guest() {
	need_kvm || return
	local b=$WORK/smp.smolmachine s log=$WORK/smp-run.log
	s=$(guest_script smp "$GUEST/smp.elf")
	# Pack as soon as the second CPU is up, in the middle of the counting.
	timeout 30 "$SMOLVM" pack "$s" --cpus 2 --ready "cpu 1 up" -o "$b" > "$WORK/smp-pack.log" 2>&1 < /dev/null ||
		{ show "$WORK/smp-pack.log"; return 1; }
	run_bundle "$log" 20 "$b"
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^smp: 2 cpus, counter=200000' "$log" || ! grep -q '^smp: ok' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
}

t_snapshot_inspect() {
	need_kvm || return
	local b log=$WORK/inspect.log
	b=$(ticker_bundle) || return 1
	"$SMOLVM" inspect "$b" > "$log" 2>&1 || { show "$log"; return 1; }
	for want in '^\[machine\]' '^cpus = 1' '^\[device.uart0\]' '^memory +memory +zstd' '^cpu.0 ' '^ok: every hash and checksum' '^dev.uart0:$' '^  lcr = 3 \(0x3\)'; do
		grep -Eq "$want" "$log" || { echo "missing $want"; show "$log" 40; return 1; }
	done
}

# Every byte is covered by a checksum: flip one bit at many offsets (all of
# a small bundle's header and TOC, and a spread through the sections).
t_snapshot_bitflips_refused() {
	need_kvm || return
	local b size off bad=0 tried=0
	b=$(ticker_bundle) || return 1
	size=$(stat -c %s "$b")
	for off in $(seq 0 7 200) $(seq 200 997 $((size - 1))) $(seq $((size - 700)) 13 $((size - 1))); do
		[ "$off" -lt "$size" ] || continue
		cp "$b" "$WORK/flip.smolmachine"
		python3 -c "
import sys; p=sys.argv[1]; o=int(sys.argv[2])
d=bytearray(open(p,'rb').read()); d[o]^=0x10; open(p,'wb').write(d)" "$WORK/flip.smolmachine" "$off"
		tried=$((tried + 1))
		if "$SMOLVM" inspect "$WORK/flip.smolmachine" > "$WORK/flip.log" 2>&1; then
			echo "bit flip at offset $off not detected"; bad=1
		fi
		if ! grep -Eq 'checksum|hash|signature|magic|truncated|out of range|malformed|gap|name|version' "$WORK/flip.log"; then
			echo "offset $off: unclear message:"; show "$WORK/flip.log" 3; bad=1
		fi
	done
	# a signed copy: a flip in its signature block is caught too
	SMOLVM_CONFIG_DIR=$WORK/flip-config "$SMOLVM" key generate > /dev/null &&
		SMOLVM_CONFIG_DIR=$WORK/flip-config "$SMOLVM" sign -o "$WORK/signed.smolmachine" "$b" > /dev/null ||
		{ echo "cannot sign"; return 1; }
	size=$(stat -c %s "$WORK/signed.smolmachine")
	for off in $(seq $((size - 104)) 5 $((size - 1))); do
		cp "$WORK/signed.smolmachine" "$WORK/flip.smolmachine"
		python3 -c "
import sys; p=sys.argv[1]; o=int(sys.argv[2])
d=bytearray(open(p,'rb').read()); d[o]^=0x10; open(p,'wb').write(d)" "$WORK/flip.smolmachine" "$off"
		tried=$((tried + 1))
		if SMOLVM_CONFIG_DIR=$WORK/flip-config "$SMOLVM" inspect "$WORK/flip.smolmachine" > "$WORK/flip.log" 2>&1 ||
		   ! grep -Eq 'signature' "$WORK/flip.log"; then
			echo "signature flip at offset $off:"; show "$WORK/flip.log" 3; bad=1
		fi
	done
	echo "$tried flipped bundles refused"
	return $bad
}

t_snapshot_truncated_refused() {
	need_kvm || return
	local b size log=$WORK/trunc.log
	b=$(ticker_bundle) || return 1
	size=$(stat -c %s "$b")
	for n in 0 10 64 $((size / 2)) $((size - 1)); do
		head -c "$n" "$b" > "$WORK/trunc.smolmachine"
		if run_bundle "$log" 5 "$WORK/trunc.smolmachine"; then
			echo "a $n-byte prefix was accepted"; return 1
		fi
		grep -q 'smolvm: ' "$log" || { show "$log"; return 1; }
	done
	grep -m1 'smolvm' "$log"
}

# The golden bundles (tests/golden/README.md), packed once by an older
# smolvm and never regenerated: today's smolvm restores each, the ticker
# goes on from the tick after the one it was packed at, and --pristine
# leaves the file as it was; format 2's signature verifies (by a key this
# user does not trust, then by one they do). A host whose KVM lacks CPU
# features of the host that packed it refuses the vCPU state, naming
# them: a visible skip.
t_snapshot_golden() {
	need_kvm || return
	local v b log sum skipped=0 cfg=$WORK/golden-config
	for v in 1 2; do
		b=tests/golden/ticker-v$v.smolmachine log=$WORK/golden$v.log
		sum=$(sha256sum < "$b")
		run_bundle "$log" 2 "$b" --pristine -v
		if grep -q "KVM does not support" "$log"; then
			echo "format $v: the golden bundle needs CPU features this host's KVM lacks: $(grep -m1 "does not support" "$log")"
			skipped=$((skipped + 1))
			continue
		fi
		if [ "$(grep -m1 '^tick' "$log")" != "tick 6" ] || [ "$(grep -c '^tick' "$log")" -lt 5 ] ||
		   grep -q '^ticker: start' "$log"; then
			echo "format $v:"; show "$log"; return 1
		fi
		[ "$(sha256sum < "$b")" = "$sum" ] || { echo "run --pristine changed $b"; return 1; }
		echo "format $v: $(grep -m1 'restored' "$log")"
	done
	SMOLVM_CONFIG_DIR=$cfg "$SMOLVM" verify tests/golden/ticker-v2.smolmachine > "$WORK/gv.log" 2>&1
	[ $? -eq 1 ] && grep -q "valid, by a key you do not trust" "$WORK/gv.log" || { show "$WORK/gv.log"; return 1; }
	SMOLVM_CONFIG_DIR=$cfg "$SMOLVM" key trust tests/golden/golden.pub > /dev/null &&
		SMOLVM_CONFIG_DIR=$cfg "$SMOLVM" verify tests/golden/ticker-v2.smolmachine > "$WORK/gv.log" 2>&1 &&
		grep -q "trusted: signed by golden" "$WORK/gv.log" || { show "$WORK/gv.log"; return 1; }
	if [ $skipped -eq 2 ]; then
		echo "SKIP: the golden bundles need CPU features this host's KVM lacks"
		return 77
	fi
}

t_snapshot_not_a_bundle() {
	local log=$WORK/notb.log
	run_bundle "$log" 5 scripts/ticker.lua
	[ $? -eq 1 ] && grep -q 'not a smolvm bundle (bad magic)' "$log" || { show "$log"; return 1; }
}

# Killing pack while it writes leaves the previous bundle intact.
t_snapshot_kill_mid_write() {
	need_kvm || return
	local b=$WORK/keep.smolmachine sum1 sum2
	cp "$(ticker_bundle)" "$b" || return 1
	sum1=$(sha256sum < "$b")
	# A big machine takes a moment to write: kill it during the save.
	sed -e 's/memory = "64M"/memory = "1G"/' -e "s|\.\./build|$PWD/build|" scripts/ticker.lua > "$WORK/big.lua"
	SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" pack "$WORK/big.lua" -o "$b" > "$WORK/kill.log" 2>&1 < /dev/null &
	local pid=$! seen=0
	for _ in $(seq 1 400); do
		ls "$b".tmp-* > /dev/null 2>&1 && { seen=1; break; }
		sleep 0.02
	done
	kill -9 $pid 2> /dev/null
	wait $pid 2> /dev/null
	[ $seen = 1 ] || { echo "never caught pack while writing"; show "$WORK/kill.log"; return 1; }
	sum2=$(sha256sum < "$b")
	[ "$sum1" = "$sum2" ] || { echo "the bundle changed"; return 1; }
	"$SMOLVM" inspect "$b" > /dev/null || { echo "the old bundle no longer verifies"; return 1; }
	rm -f "$b".tmp-*
}

t_snapshot_pack_needs_ready() {
	local log=$WORK/noready.log
	printf 'machine { kernel = "%s" }\n' "$PWD/$GUEST/ticker.elf" > "$WORK/noready.lua"
	run "$log" 10 pack "$WORK/noready.lua" -o "$WORK/x.smolmachine"
	[ $? -eq 1 ] && grep -q 'no ready' "$log" || { show "$log"; return 1; }
}

# The default Linux guest: a shell loop counting, snapshotted half-way,
# continues from the next number after restore, twice from one bundle.
t_snapshot_linux_counter() {
	need_kvm || return
	linux_ready || return 1
	local b=$WORK/linux.smolmachine log=$WORK/lin-run.log
	sed -e "s|\.\./build|$PWD/build|" scripts/linux.lua > "$WORK/lin.lua"
	# After the loop: the guest's wall clock (brought forward on restore:
	# the run starts 6 s after the pack, so a guest living in the past
	# would be that far behind), a file opened before the snapshot, and a
	# background job started before it (a long sleep: the guest's monotonic
	# clock moves on by the host time between the pack and each restore).
	printf '%s\n' 'exec 3>/tmp/kept; echo kept-line >&3; sleep 3000 & bgpid=$!' \
		'i=0; while [ $i -lt 6 ]; do echo "count $i"; i=$((i+1)); sleep 1; done; echo loop-done' \
		'echo more >&3; cat /tmp/kept | tr "\n" " "; echo; kill -0 $bgpid && echo bg-alive' \
		'echo "guest-time $(date +%s)"' |
		SMOLVM_CACHE_DIR=$WORK/cache timeout 300 "$SMOLVM" pack "$WORK/lin.lua" --ready "count 2" -o "$b" \
		> "$WORK/lin-pack.log" 2>&1 || { show "$WORK/lin-pack.log"; return 1; }
	grep -q '^count 2' "$WORK/lin-pack.log" || { show "$WORK/lin-pack.log"; return 1; }
	sleep 6
	for n in 1 2; do
		local before after rc guest
		before=$(date +%s)
		SMOLVM_CACHE_DIR=$WORK/cache timeout 120 "$SMOLVM" run "$b" --pristine -v > "$log" 2>&1 < /dev/null
		rc=$?
		after=$(date +%s)
		guest=$(grep -a -o 'guest-time [0-9][0-9]*' "$log" | tail -1 | awk '{print $2}')
		if [ $rc -ne 0 ] || [ "$(grep -m1 '^count' "$log" | tr -d '\r')" != "count 3" ] ||
		   ! grep -q '^count 5' "$log" || ! grep -q '^loop-done' "$log" || grep -q '^count [012]' "$log" ||
		   ! grep -q '^kept-line more' "$log" || ! grep -q '^bg-alive' "$log" ||
		   [ -z "$guest" ] || [ "$guest" -lt $((before - 2)) ] || [ "$guest" -gt $((after + 1)) ]; then
			echo "restore $n: exit $rc, guest clock ${guest:-?}, host $before..$after"; show "$log" 30; return 1
		fi
	done
	echo "guest clock after restore: $guest, host during the run: $before..$after"
	grep -m1 'restored' "$log"
}

# A running machine saves itself on SIGUSR1 (boot -o), and goes on running.
t_snapshot_on_signal() {
	need_kvm || return
	local b=$WORK/sig.smolmachine log=$WORK/sig-boot.log
	SMOLVM_CACHE_DIR=$WORK/cache timeout -s TERM 3 "$SMOLVM" boot scripts/ticker.lua -o "$b" \
		> "$log" 2>&1 < /dev/null &
	local pid=$!
	sleep 1
	pkill -USR1 -P $pid smolvm 2> /dev/null || kill -USR1 "$(pgrep -P $pid)" 2> /dev/null
	wait $pid
	grep -q "saved $b" "$log" || { echo "no save on SIGUSR1"; show "$log"; return 1; }
	# It went on ticking after the save, and the bundle resumes after the
	# last tick printed before it.
	local last_before first_after
	last_before=$(sed -n "/saved/q;p" "$log" | grep '^tick' | tail -1 | awk '{print $2}')
	[ "$(sed -n '/saved/,$p' "$log" | grep -c '^tick')" -ge 3 ] || { echo "stopped after the save"; show "$log"; return 1; }
	run_bundle "$WORK/sig-run.log" 1 "$b" --pristine
	first_after=$(grep -m1 '^tick' "$WORK/sig-run.log" | awk '{print $2}')
	if [ -z "$first_after" ] || [ "$first_after" -ne $((last_before + 1)) ]; then
		echo "saved after tick $last_before, restored with tick ${first_after:-none}"; show "$WORK/sig-run.log"; return 1
	fi
	echo "saved after tick $last_before, restored at tick $first_after"
}
