# Lazy first restore (core/snapshot/lazy.c) with the fill guest
# (tests/guests/fill.c), which checks every word of 64 MiB of its memory
# against a pattern: restores that fill memory on demand (cold cache), map
# the cache, or decompress eagerly (SMOLVM_RESTORE=eager), on 1 and 2
# vCPUs; a damaged chunk stops the machine; a save after a lazy restore
# holds the same memory as one after an eager restore. Every restore gets a
# cache directory of its own, so a first restore is a cold one.
# Sourced by run.sh.

# fill_bundle NAME CPUS ARGS: the fill guest (64 MiB filled in a 128 MiB
# machine, ARGS appended to its command line) packed at "filled"; made once
# per test run.
fill_bundle() {
	local name=$1 cpus=$2 args=$3 b=$WORK/$1.smolmachine
	if [ ! -f "$b" ]; then
		[ -f "$GUEST/fill.elf" ] || { echo "no $GUEST/fill.elf: run make test-guests" >&2; return 1; }
		cat > "$WORK/$name.lua" <<LUA
machine {
  name = "$name",
  memory = "128M",
  kernel = "$(realpath "$GUEST/fill.elf")",
  cmdline = "fill=64 cpus=$cpus $args",
  devices = { { type = "uart" } },
}
LUA
		SMOLVM_CACHE_DIR=$WORK/lazy-pack-cache timeout 60 "$SMOLVM" pack "$WORK/$name.lua" \
			--cpus "$cpus" --ready filled -o "$b" > "$WORK/$name-pack.log" 2>&1 < /dev/null ||
			{ show "$WORK/$name-pack.log" >&2; return 1; }
	fi
	echo "$b"
}

# lazy_restore LOG CACHE BUNDLE [ARGS]: run -vv --pristine with its own cache.
lazy_restore() {
	local log=$1 cache=$2
	shift 2
	SMOLVM_CACHE_DIR=$cache run "$log" 30 run "$@" --pristine -vv
}

# lazy_restore_ok LOG RC ROUNDS HOW: exit 0, every round verified, none
# bad, and the restore said HOW it got its memory.
lazy_restore_ok() {
	local log=$1 rc=$2 rounds=$3 how=$4
	if [ "$rc" -ne 0 ] || ! grep -q "^verify ok 64 MiB round $rounds\$" "$log" ||
	   grep -q 'verify BAD' "$log" || ! grep -q "restored .*(memory $how" "$log"; then
		echo "exit $rc, wanted 'memory $how' and 'verify ok ... round $rounds':"; show "$log"; return 1
	fi
}

# The same bundle three ways: lazily (cold cache), mapped from the cache the
# lazy restore completed, and eagerly (SMOLVM_RESTORE=eager, cold cache).
lazy_three_ways() { # cpus
	local b c=$WORK/lazy$1-cache log=$WORK/lazy$1 rc
	b=$(fill_bundle "fill$1" "$1" "rounds=2") || return 1
	grep -q '^filled' "$WORK/fill$1-pack.log" || { show "$WORK/fill$1-pack.log"; return 1; }
	rm -rf "$c"
	lazy_restore "$log-cold.log" "$c" "$b"; rc=$?
	if grep -q 'memory not filled on demand: userfaultfd' "$log-cold.log"; then
		echo "SKIP: $(grep -m1 'memory not filled on demand' "$log-cold.log")"
		return 77
	fi
	lazy_restore_ok "$log-cold.log" $rc 2 "filled on demand" || return 1
	grep -q 'memory on demand: .*complete (cached' "$log-cold.log" ||
		{ echo "the lazy restore did not complete the cache image"; show "$log-cold.log"; return 1; }
	lazy_restore "$log-warm.log" "$c" "$b"; rc=$?
	lazy_restore_ok "$log-warm.log" $rc 2 "mapped from the cache" || return 1
	rm -rf "$c"
	SMOLVM_RESTORE=eager lazy_restore "$log-eager.log" "$c" "$b"; rc=$?
	lazy_restore_ok "$log-eager.log" $rc 2 "decompressed into the cache" || return 1
	# -v says why it was eager.
	grep -q 'memory not filled on demand: SMOLVM_RESTORE=eager' "$log-eager.log" ||
		{ echo "-v did not say why the restore was eager"; show "$log-eager.log"; return 1; }
	grep -h 'restored\|memory on demand' "$log-cold.log" "$log-warm.log" "$log-eager.log"
}

t_lazy_fill_1cpu() {
	need_kvm || return
	lazy_three_ways 1
}

t_lazy_fill_2cpus() {
	need_kvm || return
	lazy_three_ways 2
}

# A chunk whose zstd frame is damaged, in a container whose checksums were
# made to match again, hashes too (tests/integration/corrupt_chunk.c). A lazy restore
# meets it on a vCPU's fault or in the background fill, whichever comes
# first (they race: -vv's counts hint which): either way the machine stops
# with a message naming the chunk, the guest never reports that memory as
# verified (nor as bad: it must not run on what was put there instead), and
# no cache image is published. Chunk 20 lies early in what the guest reads
# after the restore, chunk 79 last; on 1 and 2 vCPUs. The eager path
# refuses the bundle before the machine starts. A chunk changed with its
# hash left as it was ("stale") is caught by the hash before zstd sees it.
t_lazy_corrupt_chunk() {
	need_kvm || return
	local b bad c=$WORK/corrupt-cache log rc cpus chunk how stale want
	cc -O2 -Wall -Werror -o "$WORK/corrupt_chunk" tests/integration/corrupt_chunk.c -lxxhash -lsodium ||
		{ echo "cannot build tests/integration/corrupt_chunk.c (libxxhash-dev, libsodium-dev)"; return 1; }
	for cpus_chunk in 1:20 2:79 2:79:eager 1:20:lazy:stale; do
		IFS=: read -r cpus chunk how stale <<< "$cpus_chunk"
		how=${how:-lazy}
		want="chunk $chunk does not decompress"
		[ -z "$stale" ] || want="chunk $chunk does not match its hash"
		b=$(fill_bundle "fill$cpus" "$cpus" "rounds=2") || return 1
		bad=$WORK/corrupt$cpus-$chunk$stale.smolmachine
		if [ ! -f "$bad" ]; then
			cp "$b" "$bad"
			"$WORK/corrupt_chunk" "$bad" "$chunk" $stale || return 1
			# The container opens, its checksums match: only the chunk is bad.
			"$SMOLVM" inspect "$bad" > "$WORK/corrupt-inspect.log" 2>&1
			if grep -q 'checksum mismatch' "$WORK/corrupt-inspect.log" ||
			   ! grep -q "$want" "$WORK/corrupt-inspect.log"; then
				show "$WORK/corrupt-inspect.log"; return 1
			fi
		fi
		log=$WORK/corrupt$cpus-$chunk-$how$stale.log
		rm -rf "$c"
		if [ "$how" = eager ]; then
			SMOLVM_RESTORE=eager lazy_restore "$log" "$c" "$bad"; rc=$?
		else
			lazy_restore "$log" "$c" "$bad"; rc=$?
			grep -q 'restored .*(memory filled on demand' "$log" ||
				{ echo "not a lazy restore:"; show "$log"; return 1; }
		fi
		if [ $rc -eq 0 ] || [ $rc -ge 124 ] || ! grep -q "$want" "$log" ||
		   grep -q '^verify' "$log"; then
			echo "$cpus vCPUs, chunk $chunk, $how: exit $rc:"; show "$log"; return 1
		fi
		if ls "$c"/mem-* > /dev/null 2>&1; then
			echo "$how: a cache image was left:"; ls -l "$c"; return 1
		fi
		echo "$cpus vCPUs, chunk $chunk, $how${stale:+, stale hash}: exit $rc: $(grep -m1 "chunk $chunk" "$log")"
		grep -m1 -o 'memory on demand: [0-9]* chunks faulted in, [0-9]* filled' "$log" | sed 's/^/    /'
	done
}

# lazy_bg LOG ARGS...: smolvm ARGS in the background, output to LOG; its
# pid in LAZY_PID. lazy_wait LOG REGEX: until a line of LOG matches (at most
# 30 s, while it runs). lazy_end: TERM, KILL after 10 s, reaped.
lazy_bg() {
	local log=$1
	shift
	: > "$log"
	"$SMOLVM" "$@" > "$log" 2>&1 < /dev/null &
	LAZY_PID=$!
}
lazy_wait() {
	local i
	for i in $(seq 1 300); do
		grep -Eq "$2" "$1" && return 0
		kill -0 "$LAZY_PID" 2> /dev/null || break
		sleep 0.1
	done
	grep -Eq "$2" "$1"
}
lazy_end() {
	local i
	kill -TERM "$LAZY_PID" 2> /dev/null
	for i in $(seq 1 100); do
		kill -0 "$LAZY_PID" 2> /dev/null || break
		sleep 0.1
	done
	kill -KILL "$LAZY_PID" 2> /dev/null
	wait "$LAZY_PID" 2> /dev/null
}

# run_and_save LOG OUT BUNDLE LINE: restores BUNDLE (SMOLVM_RESTORE as the
# caller set it, a cold cache), waits for the console line LINE (a regex),
# saves the machine with SIGUSR1 into OUT at once, then ends it.
run_and_save() {
	local log=$1 out=$2 b=$3 line=$4 i
	rm -rf "$WORK/eq-cache"
	SMOLVM_CACHE_DIR=$WORK/eq-cache lazy_bg "$log" run "$b" --pristine -o "$out" -vv
	for i in $(seq 1 3000); do
		grep -Eq "$line" "$log" && break
		kill -0 "$LAZY_PID" 2> /dev/null || break
		sleep 0.01
	done
	if ! grep -Eq "$line" "$log"; then
		lazy_end; echo "no line $line:"; show "$log"; return 1
	fi
	kill -USR1 "$LAZY_PID"
	lazy_wait "$log" "saved $out"
	lazy_end
	grep -q "saved $out" "$log" || { echo "no save:"; show "$log"; return 1; }
}

# unpack_image BUNDLE DIR: prints the path of the bundle's guest memory,
# decompressed by an eager restore into the cache directory DIR (published
# whole before the machine runs; the guest, held, is then ended).
unpack_image() {
	rm -rf "$2"
	SMOLVM_RESTORE=eager SMOLVM_CACHE_DIR=$2 lazy_bg "$2.log" run "$1" --pristine -v
	lazy_wait "$2.log" '^smolvm: restored '
	lazy_end
	ls "$2"/mem-*.raw 2> /dev/null | head -1
}

# A save after a lazy restore holds the same memory as one after an eager
# restore. The guest (2 vCPUs, packed at "filled") verifies R times and then
# holds both CPUs, with nothing in memory that depends on timing, so saves
# taken after its last line must hold the same bytes, however they got
# their memory. R = 2: saved after both rounds read all of it back; R = 0:
# saved as soon as the guest runs, while the lazy restore is likely still
# filling memory, which the save then reads (through the same faults).
# Compared: the memory of both saved bundles, decompressed.
t_lazy_save_equals_eager() {
	need_kvm || return
	local b rounds line a e ia ie
	for rounds in 2 0; do
		b=$(fill_bundle "hold$rounds" 2 "rounds=$rounds hold=1") || return 1
		line='^verify ok 64 MiB round 2$'
		[ "$rounds" = 0 ] && line='^ 64 MiB$'
		a=$WORK/eq$rounds-lazy.smolmachine
		e=$WORK/eq$rounds-eager.smolmachine
		SMOLVM_RESTORE=lazy run_and_save "$WORK/eq$rounds-lazy.log" "$a" "$b" "$line" || return 1
		grep -q 'restored .*(memory filled on demand' "$WORK/eq$rounds-lazy.log" ||
			{ echo "not a lazy restore:"; show "$WORK/eq$rounds-lazy.log"; return 1; }
		SMOLVM_RESTORE=eager run_and_save "$WORK/eq$rounds-eager.log" "$e" "$b" "$line" || return 1
		grep -q 'restored .*(memory decompressed into the cache' "$WORK/eq$rounds-eager.log" ||
			{ echo "not an eager restore:"; show "$WORK/eq$rounds-eager.log"; return 1; }
		ia=$(unpack_image "$a" "$WORK/eq$rounds-img-lazy")
		ie=$(unpack_image "$e" "$WORK/eq$rounds-img-eager")
		if [ -z "$ia" ] || [ -z "$ie" ]; then
			echo "could not decompress the saves"
			show "$WORK/eq$rounds-img-lazy.log"; show "$WORK/eq$rounds-img-eager.log"; return 1
		fi
		[ "$(stat -c %s "$ia")" = $((128 << 20)) ] || { echo "$ia: not 128 MiB"; return 1; }
		# The saved memory holds the pattern (first and last word of the fill).
		python3 - "$ia" <<'PY' || return 1
import struct, sys
f = open(sys.argv[1], "rb")
for a in (16 << 20, (80 << 20) - 8):
    f.seek(a)
    got = struct.unpack("<Q", f.read(8))[0]
    x = a * 0x9e3779b97f4a7c15 % 2**64
    if got != x ^ (x >> 29):
        sys.exit("word at %#x: %#x, not the pattern" % (a, got))
PY
		cmp "$ia" "$ie" || { echo "rounds=$rounds: the saves after a lazy and an eager restore differ"; return 1; }
		echo "rounds=$rounds: memory of both saves equal (128 MiB, sha256 $(sha256sum < "$ia" | cut -c1-16));" \
			"lazy: $(grep -m1 -o 'memory on demand: .*' "$WORK/eq$rounds-lazy.log")"
		rm -rf "$WORK/eq$rounds-img-lazy" "$WORK/eq$rounds-img-eager" "$a" "$e"
	done
}
