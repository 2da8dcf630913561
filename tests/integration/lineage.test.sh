# Child bundles (core/snapshot/lineage.h): a save from a restored machine
# names its bundle as its parent and stores only the chunks that changed;
# a child of a child restores; a missing, changed or corrupt parent is
# refused with a message; --flat and smolvm flatten make one file again;
# a disk that came out of the parent is not stored again. Sourced by
# run.sh; the ticker and virtio test guests.

LIN=
LIN_BIN=
# lin_setup: a directory of its own with a packed ticker (p.smolmachine),
# its cache and data dirs; sets LIN.
lin_setup() {
	LIN=$WORK/lineage
	LIN_BIN=$(realpath "$SMOLVM")
	[ -f "$LIN/p.smolmachine" ] && return 0
	rm -rf "$LIN" && mkdir -p "$LIN"
	sed "s|guest:ticker.elf|$(realpath "$GUEST/ticker.elf")|" scripts/ticker.lua > "$LIN/t.lua"
	(cd "$LIN" && lin_env timeout -k 5 30 "$LIN_BIN" pack t.lua -o p.smolmachine) \
		< /dev/null > "$LIN/pack.log" 2>&1 || { show "$LIN/pack.log"; return 1; }
}

lin_env() { SMOLVM_CACHE_DIR=${LIN_CACHE:-$LIN/cache} SMOLVM_DATA_DIR=$LIN/data "$@"; }

# lin_child IN OUT [ARGS]: runs IN (in $LIN), saves it into OUT on SIGUSR1
# after a second, then ends it; the log is OUT.log.
lin_child() {
	local in=$1 out=$2 pid
	shift 2
	(cd "$LIN" && lin_env exec timeout -s TERM 4 "$LIN_BIN" run "$in" \
		${out:+-o "$out"} "$@" -v) < /dev/null > "$LIN/${out:-$in}.log" 2>&1 &
	pid=$!
	sleep 1.5
	kill -USR1 "$(pgrep -P "$pid")" # (smolvm, under timeout)
	wait "$pid"
	grep -aq "saved " "$LIN/${out:-$in}.log" || { echo "no save of $in:"; show "$LIN/${out:-$in}.log"; return 1; }
}

# lin_json BUNDLE PYTHON: inspect --json BUNDLE, then the assertions in
# PYTHON over j (the object).
lin_json() {
	(cd "$LIN" && lin_env "$LIN_BIN" inspect --json "$1") > "$LIN/j.json"
	python3 -c "import json; j = json.load(open('$LIN/j.json')); $2" ||
		{ echo "inspect --json $1:"; head -c 3000 "$LIN/j.json"; return 1; }
}

# The first tick a restore of BUNDLE prints, in $LIN (cache as LIN_CACHE).
lin_first_tick() {
	(cd "$LIN" && lin_env timeout -s TERM 1.5 "$LIN_BIN" run -p "$1") \
		< /dev/null 2>&1 | tr -d '\r' | grep -am1 '^tick' | awk '{print $2}'
}

t_lineage_child_of_child() {
	need_kvm || return
	lin_setup || return 1
	lin_child p.smolmachine c1.smolmachine || return 1
	lin_child c1.smolmachine c2.smolmachine || return 1
	grep -aq "saved c2.smolmachine: .*chunks left in its parent c1.smolmachine" "$LIN/c2.smolmachine.log" ||
		{ show "$LIN/c2.smolmachine.log"; return 1; }
	# c2's memory: one chunk its own at most, the rest in c1 and p
	lin_json c2.smolmachine "
l = j['lineage']; g = j['memory']['generations']
assert [x['name'] for x in l] == ['c1.smolmachine', 'p.smolmachine'], l
assert [x['bundle'] for x in g] == ['c2.smolmachine', 'c1.smolmachine', 'p.smolmachine'], g
assert g[0]['chunks'] <= 2 and g[1]['chunks'] + g[2]['chunks'] >= 1, g
assert j['ok'] is True and j['memory']['stored'] < 64 << 10, j['memory']
assert any(s['name'] == 'parent' and s['type'] == 'parent' for s in j['sections'])
" || return 1
	# restores, after the last tick c2 was saved at (not c1's, not p's)
	local last first
	last=$(sed -n "/saved/q;p" "$LIN/c2.smolmachine.log" | tr -d '\r' | grep -a '^tick' | tail -1 | awk '{print $2}')
	first=$(lin_first_tick c2.smolmachine)
	[ -n "$last" ] && [ "$first" = $((last + 1)) ] ||
		{ echo "c2 saved after tick $last, resumed at ${first:-nothing}"; return 1; }
	(cd "$LIN" && lin_env "$LIN_BIN" verify c2.smolmachine) > "$LIN/v.log" 2>&1
	grep -q 'every section and memory chunk matches' "$LIN/v.log" || { show "$LIN/v.log"; return 1; }
}

t_lineage_parent_found_or_refused() {
	need_kvm || return
	lin_setup || return 1
	[ -f "$LIN/c2.smolmachine" ] || { lin_child p.smolmachine c1.smolmachine && lin_child c1.smolmachine c2.smolmachine; } || return 1
	local away=$LIN/away rc
	rm -rf "$away" && mkdir -p "$away" && cp "$LIN/c2.smolmachine" "$away/"
	# alone, with the cache its parents were kept in: found there
	[ -n "$(lin_first_tick away/c2.smolmachine)" ] || { echo "c2 alone, parents in the cache: no tick"; return 1; }
	# alone, with an empty cache: refused, naming the parent and what to do
	(cd "$LIN" && LIN_CACHE=$away/cache lin_env "$LIN_BIN" run -p away/c2.smolmachine) \
		< /dev/null > "$LIN/m.log" 2>&1
	rc=$?
	[ $rc != 0 ] && grep -q "its parent c1.smolmachine (identity [0-9a-f]*...) is neither next to it nor in the cache" "$LIN/m.log" &&
		grep -q 'flatten' "$LIN/m.log" && ! grep -q '^tick' "$LIN/m.log" ||
		{ echo "missing parent: exit $rc"; show "$LIN/m.log"; return 1; }
	# another bundle under the parent's name: changed, refused
	cp "$LIN/p.smolmachine" "$away/c1.smolmachine"
	(cd "$LIN" && LIN_CACHE=$away/cache lin_env "$LIN_BIN" run -p away/c2.smolmachine) \
		< /dev/null > "$LIN/m.log" 2>&1
	rc=$?
	[ $rc != 0 ] && grep -q "its parent away/c1.smolmachine changed since it was saved" "$LIN/m.log" ||
		{ echo "changed parent: exit $rc"; show "$LIN/m.log"; return 1; }
	# the real parents next to it, one byte of each stored memory frame of
	# p changed (its TOC, so its identity, untouched): refused on reading
	cp "$LIN/c1.smolmachine" "$LIN/p.smolmachine" "$away/"
	python3 - "$away/p.smolmachine" <<'PY' || return 1
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
i = d.find(b"SMEM")
n = struct.unpack_from("<I", d, i + 20)[0]
hit = 0
for c in range(n):
    off = struct.unpack_from("<Q", d, i + 24 + 48 * c)[0]
    if off:
        d[i + off + 20] ^= 0xff
        hit += 1
assert hit, "no stored frame"
open(p, "wb").write(d)
PY
	(cd "$LIN" && LIN_CACHE=$away/cache2 lin_env timeout -s TERM 5 "$LIN_BIN" run -p away/c2.smolmachine) \
		< /dev/null > "$LIN/m.log" 2>&1
	rc=$?
	[ $rc != 0 ] && grep -aq "does not match its hash" "$LIN/m.log" &&
		[ -z "$(ls "$away/cache2" 2>/dev/null | grep '^mem-')" ] ||
		{ echo "corrupt parent chunk: exit $rc"; show "$LIN/m.log"; return 1; }
	(cd "$LIN" && LIN_CACHE=$away/cache2 lin_env "$LIN_BIN" verify away/c2.smolmachine) \
		> "$LIN/m.log" 2>&1
	[ $? = 2 ] || { echo "verify of a child whose parent is corrupt:"; show "$LIN/m.log"; return 1; }
}

t_lineage_flat_and_flatten() {
	need_kvm || return
	lin_setup || return 1
	[ -f "$LIN/c2.smolmachine" ] || { lin_child p.smolmachine c1.smolmachine && lin_child c1.smolmachine c2.smolmachine; } || return 1
	local away=$LIN/flat-away rc
	(cd "$LIN" && lin_env "$LIN_BIN" flatten c2.smolmachine -o f.smolmachine) > "$LIN/f.log" 2>&1 &&
		grep -q 'c2.smolmachine and 2 parents in one bundle' "$LIN/f.log" || { show "$LIN/f.log"; return 1; }
	lin_json f.smolmachine "
assert j['lineage'] == [] and j['ok'] is True, j['lineage']
assert not any(s['name'] == 'parent' for s in j['sections'])
assert j['memory']['generations'][0]['chunks'] == 64 - j['memory']['zero_chunks'], j['memory']
" || return 1
	# it runs moved alone, with an empty cache, where c2 stopped
	rm -rf "$away" && mkdir -p "$away" && mv "$LIN/f.smolmachine" "$away/"
	[ "$(LIN_CACHE=$away/cache lin_first_tick flat-away/f.smolmachine)" = "$(lin_first_tick c2.smolmachine)" ] ||
		{ echo "the flattened bundle does not resume where c2 does"; return 1; }
	# --flat: a save with no parent
	lin_child c2.smolmachine c3.smolmachine --flat || return 1
	lin_json c3.smolmachine "assert j['lineage'] == [], j['lineage']" || return 1
	# flatten refuses what it cannot find, and leaves no file behind
	cp "$LIN/c2.smolmachine" "$away/"
	(cd "$away" && LIN_CACHE=$away/cache lin_env "$LIN_BIN" flatten c2.smolmachine -o g.smolmachine) \
		> "$LIN/f.log" 2>&1
	rc=$?
	[ $rc = 1 ] && grep -q 'neither next to it nor in the cache' "$LIN/f.log" && [ -z "$(ls "$away" | grep '^g\.')" ] ||
		{ echo "flatten of an orphan: exit $rc"; show "$LIN/f.log"; ls "$away"; return 1; }
}

# run without -o saves back into its bundle: a child saved over itself
# names its own parent (it cannot name the file it replaces).
t_lineage_save_over_itself() {
	need_kvm || return
	lin_setup || return 1
	[ -f "$LIN/c1.smolmachine" ] || lin_child p.smolmachine c1.smolmachine || return 1
	cp "$LIN/c1.smolmachine" "$LIN/s.smolmachine"
	lin_child s.smolmachine "" || return 1
	lin_json s.smolmachine "
assert [x['name'] for x in j['lineage']] == ['p.smolmachine'], j['lineage']
assert j['ok'] is True
" || return 1
	[ -n "$(lin_first_tick s.smolmachine)" ] || { echo "s.smolmachine does not restore"; return 1; }
	# a bundle without a parent saved over itself stays whole
	cp "$LIN/p.smolmachine" "$LIN/q.smolmachine"
	lin_child q.smolmachine "" || return 1
	lin_json q.smolmachine "assert j['lineage'] == [], j['lineage']" || return 1
}

# lin_disk_machine DIR MIB AT: in a fresh DIR, the virtio test guest with a
# 32 MiB disk holding MIB MiB of random data from MiB AT, packed into
# DIR/m.smolmachine (cache DIR/cache) once its disk test passed; the log is
# DIR.log.
lin_disk_machine() {
	local d=$1 k=$GUEST/virtio.elf bin
	bin=$(realpath "$SMOLVM")
	[ -f "$k" ] || { echo "missing $k: run 'make test-guests'"; return 1; }
	rm -rf "$d" && mkdir -p "$d"
	truncate -s 32M "$d/base.img"
	head -c "$2M" /dev/urandom | dd of="$d/base.img" bs=1M seek="$3" conv=notrunc status=none
	cat > "$d/m.lua" <<LUA
machine { memory = "64M", kernel = "guest:virtio.elf", cmdline = "blkseed=3",
  devices = { { type = "uart" }, { type = "virtio-blk", path = "base.img", overlay = "base.cow" } } }
LUA
	(cd "$d" && SMOLVM_CACHE_DIR=$d/cache SMOLVM_DATA_DIR=$d/data timeout -k 5 60 "$bin" \
		pack m.lua -o m.smolmachine --ready "PASS: blk write/read/flush") < /dev/null > "$d.log" 2>&1 ||
		{ echo "pack:"; show "$d.log"; return 1; }
}

# A disk that came out of the parent bundle is not stored again.
t_lineage_disk_in_parent() {
	need_kvm || return
	local d=$WORK/lin-disk away=$WORK/lin-disk-away log=$WORK/lin-disk.log rc bin
	bin=$(realpath "$SMOLVM")
	rm -rf "$away" && mkdir -p "$away"
	lin_disk_machine "$d" 2 20 || return 1
	echo 'function after_restore(vm) print("SNAP", vm:snapshot("c.smolmachine")) end' > "$d/snap.lua"
	(cd "$d" && SMOLVM_CACHE_DIR=$d/cache SMOLVM_DATA_DIR=$d/data timeout -k 5 60 "$bin" run m.smolmachine \
		-o out.smolmachine --hooks snap.lua) < /dev/null > "$log" 2>&1
	grep -q 'SNAP.*true' "$log" &&
		grep -aq 'saved c.smolmachine: .*disks: 32 chunks of 1 MiB (30 zero, 2 in the parent), 0.0 MiB stored' "$log" ||
		{ echo "the child's save:"; show "$log"; return 1; }
	# moved with its parent only (images gone), empty cache: it runs
	mv "$d/m.smolmachine" "$d/c.smolmachine" "$away/" && rm -rf "$d"
	(cd "$away" && SMOLVM_CACHE_DIR=$away/cache SMOLVM_DATA_DIR=$away/data timeout -k 5 60 \
		"$bin" run -p -v c.smolmachine) < /dev/null > "$log" 2>&1
	rc=$?
	[ $rc = 0 ] && grep -q '^virtio: done' "$log" && ! grep -q '^FAIL' "$log" &&
		grep -q 'unpacked 1 disk of the bundle' "$log" ||
		{ echo "the child, moved with its parent: exit $rc"; show "$log"; return 1; }
	# the parent's disk image in the cache is the child's too
	(cd "$away" && SMOLVM_CACHE_DIR=$away/cache SMOLVM_DATA_DIR=$away/data timeout -k 5 60 \
		"$bin" run -p -v m.smolmachine) < /dev/null > "$log" 2>&1
	[ "$(ls "$away/cache" | grep -c '^disk-')" = 1 ] && grep -q '^virtio: done' "$log" ||
		{ echo "parent and child share one disk image?"; ls -la "$away/cache"; show "$log"; return 1; }
}

# A disk that does not fit in the cache's file system is refused before
# anything is written there (filling a mapping on a full file system would
# kill smolvm with SIGBUS): a tmpfs of 8 MiB as the cache (needs root).
t_lineage_disk_cache_full() {
	need_kvm || return
	[ "$(id -u)" = 0 ] || { echo "SKIP: mounting a small tmpfs as the cache needs root"; return 77; }
	local d=$WORK/lin-full log=$WORK/lin-full.log rc bin
	bin=$(realpath "$SMOLVM")
	lin_disk_machine "$d" 4 8 || return 1
	mkdir -p "$d/small"
	mount -t tmpfs -o size=8m,mode=0700 smolvm-test "$d/small" || { echo "SKIP: cannot mount a tmpfs"; return 77; }
	(cd "$d" && SMOLVM_CACHE_DIR=$d/small/cache SMOLVM_DATA_DIR=$d/data timeout -k 5 60 "$bin" run -p \
		m.smolmachine) < /dev/null > "$log" 2>&1
	rc=$?
	local left
	left=$(ls "$d/small/cache" 2> /dev/null | grep -c '^disk-')
	umount "$d/small"
	[ $rc != 0 ] && grep -q 'its disk virtio-blk0: the cache .* MiB free, and disk.virtio-blk0 needs 4.0 MiB there' "$log" &&
		grep -q 'smolvm cache prune' "$log" && ! grep -q '^virtio:' "$log" && [ "$left" = 0 ] ||
		{ echo "a disk larger than the cache's room: exit $rc, $left images"; show "$log"; return 1; }
}

# Two bundles packed apart from one base image (different machines) keep
# one copy of it in the cache: images are named by what they hold.
t_lineage_two_bundles_one_base() {
	need_kvm || return
	local d=$WORK/lin-two log=$WORK/lin-two.log bin n
	bin=$(realpath "$SMOLVM")
	lin_disk_machine "$d" 3 4 || return 1
	sed 's/blkseed=3/blkseed=9/' "$d/m.lua" > "$d/other.lua"
	(cd "$d" && SMOLVM_CACHE_DIR=$d/cache SMOLVM_DATA_DIR=$d/data timeout -k 5 60 "$bin" pack other.lua \
		-o other.smolmachine --ready "PASS: blk write/read/flush") < /dev/null > "$log" 2>&1 ||
		{ echo "pack:"; show "$log"; return 1; }
	cmp -s "$d/m.smolmachine" "$d/other.smolmachine" && { echo "the two bundles are one"; return 1; }
	rm -rf "$d/cache"
	for b in m other; do
		(cd "$d" && SMOLVM_CACHE_DIR=$d/cache SMOLVM_DATA_DIR=$d/data timeout -k 5 60 "$bin" run -p -v \
			$b.smolmachine) < /dev/null > "$log" 2>&1 && grep -q '^virtio: done' "$log" ||
			{ echo "$b:"; show "$log"; return 1; }
	done
	n=$(ls "$d/cache" | grep -c '^disk-')
	# the second found the first's image: nothing unpacked
	[ "$n" = 1 ] && ! grep -q 'unpacked' "$log" ||
		{ echo "$n disk images in the cache for one base"; ls -la "$d/cache"; show "$log"; return 1; }
	[ "$(du -k "$d"/cache/disk-* | cut -f1)" -lt 6000 ] || { du -k "$d"/cache/disk-*; return 1; }
}
