# virtio-blk: raw images and copy-on-write overlays, in the default Linux
# guest. Sourced by run.sh. Two rounds of Linux boots in all (the first
# runs two machines at once), plus quick refusals that stop before booting.

blk_tools() {
	local t
	for t in mkfs.ext4 debugfs e2fsck sha256sum; do
		if ! command -v "$t" > /dev/null; then
			echo "SKIP: $t not found (apt-get install e2fsprogs)"
			return 77
		fi
	done
}

# blk_linux NAME DEVICE-LINE...: scripts/linux.lua as $WORK/NAME.lua, with
# the given device tables after the uart.
blk_linux() {
	local name=$1 lines="" d
	shift
	for d in "$@"; do
		lines+="    $d,\n"
	done
	sed -e "s|^\( *{ type = \"uart\" },\)\$|\1\n$lines|" \
	    scripts/linux.lua > "$WORK/$name.lua"
	echo "$WORK/$name.lua"
}

# A 16 MiB ext4 base image holding hello.txt, made on the host.
blk_base() {
	mkdir -p "$WORK/blk-root"
	echo from-base > "$WORK/blk-root/hello.txt"
	rm -f "$WORK/base.img"
	truncate -s 16M "$WORK/base.img"
	mkfs.ext4 -q -F -E nodiscard -d "$WORK/blk-root" "$WORK/base.img"
}

blk_has() { grep -qx "$2"$'\r\\?' "$1"; } # LOG LINE: the guest printed exactly LINE

# Bad options are refused before anything runs, each with its own message.
t_blk_refusals() {
	need_kvm || return
	blk_tools || return
	local k log=$WORK/blk-err.log fail=0
	k=$(realpath "$GUEST/ticker.elf")
	[ -f "$k" ] || { echo "missing $GUEST/ticker.elf: run 'make guest'"; return 1; }
	blk_base
	head -c 1000 /dev/zero > "$WORK/odd.img"
	truncate -s 8M "$WORK/small.img"
	# blk_expect DEVICE-OPTIONS MESSAGE
	blk_expect() {
		cat > "$WORK/blk-err.lua" <<LUA
machine { kernel = "$k", memory = "64M",
  devices = { { type = "uart" }, { type = "virtio-blk", $1 } } }
LUA
		run "$log" 20 boot "$WORK/blk-err.lua"
		local rc=$?
		if [ $rc -ne 1 ] || ! grep -qF -- "$2" "$log"; then
			echo "options { $1 }: exit $rc, expected 1 and: $2"
			show "$log" 5
			fail=1
		fi
	}
	blk_expect 'readonly = true' 'blk-err.lua:2: devices[2].path: missing (required: the raw disk image'
	blk_expect 'path = "nope.img"' "cannot open disk image $WORK/nope.img: No such file or directory"
	blk_expect 'path = "odd.img"' 'odd.img is 1000 bytes, not a positive multiple of 512'
	blk_expect 'path = "base.img", readonly = "maybe"' 'blk-err.lua:2: devices[2].readonly: expected true or false, got "maybe"'
	blk_expect 'path = "base.img", serial = "a-serial-of-21-chars!"' 'at most 20 characters'
	# An overlay made for base.img, then used over another base. The
	# ticker guest runs until the timeout; the overlay exists by then.
	cat > "$WORK/blk-mk.lua" <<LUA
machine { kernel = "$k", memory = "64M",
  devices = { { type = "uart" }, { type = "virtio-blk", path = "base.img", overlay = "mm.cow" } } }
LUA
	run "$WORK/blk-mk.log" 3 boot "$WORK/blk-mk.lua"
	if [ "$(head -c 7 "$WORK/mm.cow" 2>/dev/null)" != SMOLCOW ]; then
		echo "no overlay made"; show "$WORK/blk-mk.log" 5; return 1
	fi
	blk_expect 'path = "small.img", overlay = "mm.cow"' \
		"mm.cow was made for a base of 16777216 bytes, but $WORK/small.img has 8388608 bytes"
	printf 'garbage!' | dd of="$WORK/mm.cow" conv=notrunc status=none
	blk_expect 'path = "base.img", overlay = "mm.cow"' 'not a smolvm overlay (bad magic)'
	return $fail
}

# The copy-on-write round trip: two machines share one base at once, each
# writing its own overlay; a second boot sees its files again, a writable
# raw image is written in place, a readonly one refuses writes, and the
# base never changes.
t_blk_overlay() {
	need_kvm || return
	linux_ready || return 1
	blk_tools || return
	local sa sb base_sum head1m a_rc b_rc rc
	blk_base
	base_sum=$(sha256sum < "$WORK/base.img")
	rm -f "$WORK/a.cow" "$WORK/b.cow"
	sa=$(blk_linux blk-a '{ type = "virtio-blk", path = "base.img", overlay = "a.cow", serial = "vm-a" }')
	sb=$(blk_linux blk-b '{ type = "virtio-blk", path = "base.img", overlay = "b.cow" }')

	cat > "$WORK/blk-a.sh" <<'SH'
read -r s < /sys/block/vda/serial; echo "serial=$s"
mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt
echo data-from-a > /mnt/a.txt
cp /bin/busybox /mnt/big
sha256sum /mnt/big > /mnt/big.sha
sync && umount /mnt && echo a-done
SH
	cat > "$WORK/blk-b.sh" <<'SH'
read -r s < /sys/block/vda/serial; echo "serial=$s"
mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt
echo data-from-b > /mnt/b.txt
sync && umount /mnt && echo b-done
SH
	# One after the other: two emulated guests at once beside the other
	# test lane's oversubscribe the host's 2 CPUs (slower than in turn).
	local t0=$SECONDS
	timeout -k 5 400 "$SMOLVM" boot "$sa" < "$WORK/blk-a.sh" > "$WORK/blk-a.log" 2>&1
	a_rc=$?
	timeout -k 5 400 "$SMOLVM" boot "$sb" < "$WORK/blk-b.sh" > "$WORK/blk-b.log" 2>&1
	b_rc=$?
	if [ $a_rc -ne 0 ] || ! blk_has "$WORK/blk-a.log" a-done ||
	   ! blk_has "$WORK/blk-a.log" from-base || ! blk_has "$WORK/blk-a.log" serial=vm-a; then
		echo "machine A (overlay a.cow): exit $a_rc"; show "$WORK/blk-a.log" 25; return 1
	fi
	if [ $b_rc -ne 0 ] || ! blk_has "$WORK/blk-b.log" b-done ||
	   ! blk_has "$WORK/blk-b.log" from-base || ! blk_has "$WORK/blk-b.log" serial=smolvm0; then
		echo "machine B (overlay b.cow): exit $b_rc"; show "$WORK/blk-b.log" 25; return 1
	fi
	echo "two machines on one base ($((SECONDS - t0)) s): A and B wrote their overlays" \
	     "($(du -k "$WORK/a.cow" | cut -f1) KiB and $(du -k "$WORK/b.cow" | cut -f1) KiB on disk)"
	[ "$(sha256sum < "$WORK/base.img")" = "$base_sum" ] ||
		{ echo "base.img changed after the first boots"; return 1; }

	# Second boot: A's overlay again, a writable raw copy, the base readonly.
	cp "$WORK/base.img" "$WORK/raw.img"
	sa=$(blk_linux blk-a2 \
		'{ type = "virtio-blk", path = "base.img", overlay = "a.cow", serial = "vm-a" }' \
		'{ type = "virtio-blk", path = "raw.img", serial = "raw" }' \
		'{ type = "virtio-blk", path = "base.img", readonly = true, serial = "ro" }')
	cat > "$WORK/blk-a2.sh" <<'SH'
for d in /sys/block/vd*; do read -r s < $d/serial; read -r ro < $d/ro; echo "disk ${d##*/} $s ro=$ro"; case $s in vm-a) A=/dev/${d##*/};; raw) R=/dev/${d##*/};; ro) B=/dev/${d##*/};; esac; done
mount -t ext4 $A /mnt && cat /mnt/a.txt
[ -e /mnt/b.txt ] || echo no-b-here
sha256sum -c /mnt/big.sha
umount /mnt
mount -t ext4 $R /mnt && echo raw-data > /mnt/raw.txt && sync && umount /mnt && echo raw-done
dd if=/dev/zero of=$B bs=512 count=1 2>/dev/null || echo ro-refused
dd if=$B bs=64k count=16 2>/dev/null | sha256sum
SH
	t0=$SECONDS
	timeout -k 5 400 "$SMOLVM" boot "$sa" < "$WORK/blk-a2.sh" > "$WORK/blk-a2.log" 2>&1
	rc=$?
	echo "second boot: $((SECONDS - t0)) s"
	head1m=$(head -c 1M "$WORK/base.img" | sha256sum | cut -d' ' -f1)
	if [ $rc -ne 0 ] || ! blk_has "$WORK/blk-a2.log" data-from-a ||
	   ! blk_has "$WORK/blk-a2.log" no-b-here || ! blk_has "$WORK/blk-a2.log" '/mnt/big: OK' ||
	   ! blk_has "$WORK/blk-a2.log" raw-done || ! blk_has "$WORK/blk-a2.log" ro-refused ||
	   ! grep -q "disk vd. ro ro=1" "$WORK/blk-a2.log" ||
	   ! grep -q "^$head1m  -" "$WORK/blk-a2.log"; then
		echo "second boot: exit $rc"; show "$WORK/blk-a2.log" 30; return 1
	fi
	grep -a '^disk vd\|: OK' "$WORK/blk-a2.log" | tr -d '\r'
	[ "$(sha256sum < "$WORK/base.img")" = "$base_sum" ] ||
		{ echo "base.img changed"; return 1; }
	echo "base.img unchanged: sha256 $(echo "$base_sum" | cut -c1-16)..., its first MiB read back through the readonly disk"
	if [ "$(debugfs -R 'cat /raw.txt' "$WORK/raw.img" 2>/dev/null)" != raw-data ] ||
	   ! e2fsck -fn "$WORK/raw.img" > "$WORK/fsck.log" 2>&1; then
		echo "raw.img: raw.txt missing or the file system is damaged"
		show "$WORK/fsck.log" 10; return 1
	fi
	echo "raw.img written in place: raw.txt found by debugfs, e2fsck clean"
}

# Save and restore (pack, then run): the restored machine goes on using its
# disks where it left them; a disk whose size changed since is refused.
t_blk_snapshot() {
	need_kvm || return
	linux_ready || return 1
	blk_tools || return
	if ! "$SMOLVM" help pack > /dev/null 2>&1; then
		echo "SKIP: this smolvm has no pack command"
		return 77
	fi
	local s b=$WORK/blk.smolmachine log=$WORK/blk-snap.log rc
	blk_base
	cp "$WORK/base.img" "$WORK/snap-raw.img"
	rm -f "$WORK/snap.cow"
	s=$(blk_linux blk-snap \
		'{ type = "virtio-blk", path = "base.img", overlay = "snap.cow", serial = "cow" }' \
		'{ type = "virtio-blk", path = "snap-raw.img", readonly = true, serial = "raw" }')
	# The guest writes a file into its overlay before the pack (the ready
	# text is split in the command so the tty's echo of it does not match).
	if ! printf '%s\n' 'mount -t ext4 /dev/vda /mnt && echo written-before-pack > /mnt/before.txt && sync && umount /mnt && echo "pack""-now"' |
		timeout -k 5 300 "$SMOLVM" pack "$s" --ready pack-now -o "$b" > "$log" 2>&1; then
		echo "pack failed"; show "$log"; return 1
	fi
	# (the bundle carries its disks: a file given with --disk is checked)
	truncate -s 32M "$WORK/snap-raw.img"
	run "$log" 60 run -p "$b" --disk raw="$WORK/snap-raw.img:ro"
	rc=$?
	if [ $rc -ne 1 ] ||
	   ! grep -qF 'virtio-blk1: snapshot has a disk of 32768 sectors, this one has 65536' "$log"; then
		echo "restore with a resized disk: exit $rc"; show "$log" 5; return 1
	fi
	grep -F 'snapshot has a disk' "$log"
	truncate -s 16M "$WORK/snap-raw.img"
	rm -f "$WORK/snap.cow" # the bundle carries the overlay's content
	cat > "$WORK/blk-snap.sh" <<'SH'
read -r s < /sys/block/vda/serial; echo "serial=$s"
mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt /mnt/before.txt && echo restored > /mnt/r.txt && sync && umount /mnt && echo snap-done
SH
	timeout -k 5 300 "$SMOLVM" run -p "$b" < "$WORK/blk-snap.sh" > "$log" 2>&1
	rc=$?
	if [ $rc -ne 0 ] || ! blk_has "$log" serial=cow || ! blk_has "$log" from-base ||
	   ! blk_has "$log" written-before-pack || ! blk_has "$log" snap-done; then
		echo "restored machine: exit $rc"; show "$log" 20; return 1
	fi
	echo "restored machine read the file it wrote before the pack (configured overlay deleted), wrote and synced"
}

# Snapshots of the disk itself, with the fast virtio test guest: the bundle
# holds the overlay's content, so a restored machine does not depend on the
# configured overlay (changed by a later boot, or deleted) and two restores
# of one bundle run at once, each on its own private overlay. A writable raw
# disk refuses pack; a changed base given with --disk refuses run.
t_blk_snapshot_overlay() {
	need_kvm || return
	local k=$GUEST/virtio.elf b=$WORK/blkov.smolmachine log=$WORK/blkov.log ov_sum rc1 rc2 i
	[ -f "$k" ] || { echo "missing $k: run 'make test-guests'"; return 1; }
	k=$(realpath "$k")
	if ! "$SMOLVM" help pack > /dev/null 2>&1; then
		echo "SKIP: this smolvm has no pack command"
		return 77
	fi
	rm -f "$WORK/blkov.img" "$WORK/blkov.cow"
	truncate -s 16M "$WORK/blkov.img"
	# blkov_script NAME SEED DISK-OPTIONS
	blkov_script() {
		cat > "$WORK/$1.lua" <<LUA
machine { memory = "64M", kernel = "$k", cmdline = "blkseed=$2",
  devices = { { type = "uart" }, { type = "virtio-blk", $3 } } }
LUA
		echo "$WORK/$1.lua"
	}
	local s
	s=$(blkov_script blkov 11 'path = "blkov.img", overlay = "blkov.cow"')
	if ! timeout -k 5 60 "$SMOLVM" pack "$s" -o "$b" --ready "PASS: blk write/read/flush" \
		< /dev/null > "$log" 2>&1; then
		echo "pack failed"; show "$log"; return 1
	fi
	# A later boot rewrites the overlay (another pattern).
	s=$(blkov_script blkov-later 22 'path = "blkov.img", overlay = "blkov.cow"')
	run "$log" 60 boot "$s" || { echo "later boot failed"; show "$log"; return 1; }
	for round in changed deleted; do
		[ $round = deleted ] && rm -f "$WORK/blkov.cow"
		ov_sum=$(sha256sum 2>/dev/null < "$WORK/blkov.cow")
		timeout -k 5 60 "$SMOLVM" run -p "$b" < /dev/null > "$log.1" 2>&1 &
		i=$!
		timeout -k 5 60 "$SMOLVM" run -p "$b" < /dev/null > "$log.2" 2>&1
		rc2=$?
		wait $i
		rc1=$?
		for i in 1 2; do
			if [ "$(eval echo \$rc$i)" != 0 ] || ! grep -q '^virtio: done' "$log.$i" ||
			   grep -q '^FAIL' "$log.$i"; then
				echo "overlay $round, restore $i: exit $(eval echo \$rc$i)"
				show "$log.$i" 20; return 1
			fi
		done
		if [ $round = changed ] && [ "$(sha256sum < "$WORK/blkov.cow")" != "$ov_sum" ]; then
			echo "a restored machine wrote the configured overlay"; return 1
		fi
		echo "overlay $round after the pack: two restores at once both ran"
	done
	# A bundle that holds a writable raw disk cannot be made.
	cp "$WORK/blkov.img" "$WORK/blkov-raw.img"
	s=$(blkov_script blkov-raw 1 'path = "blkov-raw.img"')
	run "$log" 60 pack "$s" -o "$WORK/blkov-raw.smolmachine" --ready "PASS: blk write/read/flush"
	rc1=$?
	if [ $rc1 -eq 0 ] || ! grep -qF 'virtio-blk0: a writable disk without an overlay cannot be snapshotted (use readonly = true or an overlay)' "$log"; then
		echo "pack with a writable raw disk: exit $rc1"; show "$log" 5; return 1
	fi
	echo "writable raw disk: pack refused"
	# The bundle carries its base: the host's file changed or gone does
	# not matter...
	printf 'changed!' | dd of="$WORK/blkov.img" conv=notrunc status=none
	rm -f "$WORK/blkov.cow"
	run "$log" 60 run -p "$b" && grep -q '^virtio: done' "$log" && ! grep -q '^FAIL' "$log" ||
		{ echo "restore with its own disk, the host's base changed:"; show "$log" 5; return 1; }
	# ...but a base given with --disk whose first 64 KiB changed (same
	# size) is refused.
	run "$log" 60 run -p "$b" --disk virtio-blk0="$WORK/blkov.img"
	rc1=$?
	if [ $rc1 -eq 0 ] || ! grep -qF "disk image $WORK/blkov.img changed since the snapshot" "$log"; then
		echo "restore over a changed base: exit $rc1"; show "$log" 5; return 1
	fi
	grep -o 'disk image .*' "$log" | head -1
}

# A bundle carries its disks (issue: self-contained bundles): moved alone
# into an empty directory, its images deleted, a fresh cache, it runs; a
# second bundle of the same disk finds it in the cache; a corrupt disk
# chunk is refused before the guest reads anything.
t_blk_bundle_carries_disk() {
	need_kvm || return
	local k=$GUEST/virtio.elf d=$WORK/carry away=$WORK/carry-away log=$WORK/carry.log rc bin
	[ -f "$k" ] || { echo "missing $k: run 'make test-guests'"; return 1; }
	bin=$(realpath "$SMOLVM")
	rm -rf "$d" "$away" && mkdir -p "$d" "$away"
	truncate -s 48M "$d/base.img"
	head -c 3M /dev/urandom | dd of="$d/base.img" bs=1M seek=40 conv=notrunc status=none
	cat > "$d/m.lua" <<LUA
machine { memory = "64M", kernel = "guest:virtio.elf", cmdline = "blkseed=7",
  devices = { { type = "uart" }, { type = "virtio-blk", path = "base.img", overlay = "base.cow" } } }
LUA
	(cd "$d" && SMOLVM_CACHE_DIR=$d/cache timeout -k 5 60 "$bin" pack m.lua -o m.smolmachine \
		--ready "PASS: blk write/read/flush") < /dev/null > "$log" 2>&1 ||
		{ echo "pack:"; show "$log"; return 1; }
	grep -q 'disks: 48 chunks of 1 MiB (45 zero, 0 in the parent)' "$log" || { echo "the disk's chunks:"; show "$log" 3; return 1; }
	# inspect --json says what the disk costs
	"$SMOLVM" inspect --json "$d/m.smolmachine" > "$WORK/carry.json" &&
		python3 - "$WORK/carry.json" <<'PY' || { echo "inspect --json:"; head -40 "$WORK/carry.json"; return 1; }
import json, sys
j = json.load(open(sys.argv[1]))
d, = j["disks"]
assert j["ok"] is True and j["trust"] == "yours" and j["manifest"]["script"] == "m.lua", j
assert d["device"] == "virtio-blk0" and d["size"] == 48 << 20, d
assert d["chunks"] == 48 and d["zero_chunks"] == 45 and 3 << 20 < d["stored"] < 4 << 20, d
assert [s["type"] for s in j["sections"] if s["name"] == "disk.virtio-blk0"] == ["disk"]
PY
	mv "$d/m.smolmachine" "$away/" && cp "$away/m.smolmachine" "$away/m2.smolmachine" && rm -rf "$d"
	(cd "$away" && SMOLVM_CACHE_DIR=$away/cache SMOLVM_DATA_DIR=$away/data timeout -k 5 60 \
		"$bin" run -p -v m.smolmachine) < /dev/null > "$log" 2>&1
	rc=$?
	[ $rc = 0 ] && grep -q '^virtio: done' "$log" && ! grep -q '^FAIL' "$log" &&
		grep -q 'unpacked 1 disk of the bundle into the cache' "$log" ||
		{ echo "moved alone, run: exit $rc"; show "$log"; return 1; }
	# the cache holds it once, sparse: the zero chunks take no space
	local n used
	n=$(ls "$away/cache" | grep -c '^disk-')
	used=$(du -k "$away"/cache/disk-* | cut -f1)
	[ "$n" = 1 ] && [ "$used" -lt 8192 ] || { echo "$n disk images, $used KiB"; return 1; }
	(cd "$away" && SMOLVM_CACHE_DIR=$away/cache SMOLVM_DATA_DIR=$away/data timeout -k 5 60 \
		"$bin" run -p -v m2.smolmachine) < /dev/null > "$log" 2>&1 &&
		! grep -q 'unpacked' "$log" && [ "$(ls "$away/cache" | grep -c '^disk-')" = 1 ] ||
		{ echo "the second bundle of that disk:"; show "$log"; return 1; }
	# one byte of a stored disk chunk changed: refused, naming the disk
	python3 - "$away/m.smolmachine" <<'PY' || return 1
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
toc, n = struct.unpack_from("<QI", d, 16)
i = -1
for k in range(n):  # the TOC: 160-byte entries, the name first, the offset at 72
    e = toc + 160 * k
    if d[e:e + 64].rstrip(b"\0") == b"disk.virtio-blk0":
        i = struct.unpack_from("<Q", d, e + 72)[0]
assert i >= 0 and d[i:i + 4] == b"SMEM", "no disk section"
n = struct.unpack_from("<I", d, i + 20)[0]
for c in range(n):
    off = struct.unpack_from("<Q", d, i + 24 + 48 * c)[0]
    if off:
        d[i + off + 40] ^= 0xff
        break
open(p, "wb").write(d)
PY
	! "$SMOLVM" inspect --json "$away/m.smolmachine" > "$WORK/carry.json" &&
		grep -q '"ok": false' "$WORK/carry.json" || { echo "inspect --json of a corrupt disk"; return 1; }
	rm -rf "$away/cache"
	(cd "$away" && SMOLVM_CACHE_DIR=$away/cache SMOLVM_DATA_DIR=$away/data timeout -k 5 60 \
		"$bin" run -p m.smolmachine) < /dev/null > "$log" 2>&1
	rc=$?
	[ $rc != 0 ] && grep -q 'its disk virtio-blk0' "$log" && grep -q 'does not match its hash' "$log" &&
		! grep -q '^virtio:' "$log" && [ -z "$(ls "$away/cache" 2>/dev/null | grep '^disk-')" ] ||
		{ echo "a corrupt disk chunk: exit $rc"; show "$log"; return 1; }
}
