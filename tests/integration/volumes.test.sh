# Shared folders (--volume, virtio-9p) on the default Linux guest: one pack
# (a bundle made without volumes, which smolvm gives volume slots), then
# execs that restore it with a host directory mounted, a snapshot with a
# file open in the volume restored from another host directory, and the
# refusals. Sourced by run.sh. The tests run in name order in one lane and
# share what the earlier ones left in $WORK.

vol_bundle() {
	local b=$WORK/vol.smolmachine
	if [ ! -f "$b" ]; then
		linux_ready >&2 || return 1
		sed -e "s|\.\./build|$PWD/build|" scripts/linux.lua > "$WORK/vol.lua"
		SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/vol-pack.log" 400 pack "$WORK/vol.lua" -o "$b" ||
			{ show "$WORK/vol-pack.log" >&2; return 1; }
	fi
	echo "$b"
}

vx() {
	SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 300 "$SMOLVM" exec "$@"
}

# Guest writes reach the host; a host edit made while the guest runs is
# seen by the guest at once.
t_volumes_1_both_ways() {
	need_kvm || return
	local b s=$WORK/share1 pid rc
	b=$(vol_bundle) || return 1
	rm -rf "$s" && mkdir -p "$s/sub"
	echo "from the host" > "$s/host.txt"
	echo v1 > "$s/live.txt"
	# the guest waits for the host's edit (flag file), then reads again
	vx "$b" --volume "$s:/work" -- sh -c '
		cat /work/host.txt; cat /work/live.txt
		echo "from the guest" > /work/sub/guest.txt && mkdir /work/gdir && ln -s host.txt /work/glink
		touch /work/ready
		i=0; while [ ! -e /work/flag ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
		cat /work/live.txt; ls /work | tr "\n" " "' \
		< /dev/null > "$WORK/v1.out" 2> "$WORK/v1.err" &
	pid=$!
	for _ in $(seq 1 1200); do [ -e "$s/ready" ] && break; sleep 0.2; done
	echo v2 > "$s/live.txt"
	touch "$s/flag"
	wait $pid
	rc=$?
	[ $rc -eq 0 ] || { echo "exit $rc"; show "$WORK/v1.out"; show "$WORK/v1.err"; return 1; }
	[ "$(sed -n 1p "$WORK/v1.out")" = "from the host" ] && [ "$(sed -n 2p "$WORK/v1.out")" = v1 ] &&
		[ "$(sed -n 3p "$WORK/v1.out")" = v2 ] || { echo "guest saw:"; show "$WORK/v1.out"; return 1; }
	grep -q "gdir" "$WORK/v1.out" || { show "$WORK/v1.out"; return 1; }
	[ "$(cat "$s/sub/guest.txt")" = "from the guest" ] && [ -d "$s/gdir" ] &&
		[ "$(readlink "$s/glink")" = host.txt ] || { ls -la "$s" "$s/sub"; return 1; }
	# what the guest made belongs to the user running smolvm
	[ "$(stat -c %u "$s/sub/guest.txt")" = "$(id -u)" ] || { stat "$s/sub/guest.txt"; return 1; }
}

# :ro: the guest's writes fail with EROFS (refused by the host side: the
# guest mounts it read-write) and the host directory is untouched.
t_volumes_2_readonly() {
	need_kvm || return
	local b s=$WORK/share-ro before after
	b=$(vol_bundle) || return 1
	rm -rf "$s" && mkdir -p "$s/d"
	echo keep > "$s/keep.txt"
	before=$(cd "$s" && find . -printf '%p %s %T@ %m\n' | sort | sha256sum)
	vx "$b" --volume "$s:/ro:ro" -- sh -c '
		cat /ro/keep.txt
		echo x > /ro/new.txt || echo FAIL-create
		echo x >> /ro/keep.txt || echo FAIL-append
		rm /ro/keep.txt || echo FAIL-rm
		mkdir /ro/n || echo FAIL-mkdir
		mv /ro/keep.txt /ro/k2 || echo FAIL-mv
		true' < /dev/null > "$WORK/v2.out" 2>&1 || { show "$WORK/v2.out"; return 1; }
	after=$(cd "$s" && find . -printf '%p %s %T@ %m\n' | sort | sha256sum)
	grep -qx keep "$WORK/v2.out" || { show "$WORK/v2.out"; return 1; }
	for op in create append rm mkdir mv; do
		grep -q "FAIL-$op" "$WORK/v2.out" || { echo "$op was not refused"; show "$WORK/v2.out"; return 1; }
	done
	[ "$(grep -c 'Read-only file system' "$WORK/v2.out")" -ge 4 ] ||
		{ echo "not EROFS:"; show "$WORK/v2.out"; return 1; }
	[ "$before" = "$after" ] || { echo "the host directory changed"; ls -la "$s"; return 1; }
}

# A snapshot with a file open in the volume; restored with the volume
# granted from another host directory: the open file is still readable
# (and reads the new directory's file).
t_volumes_3_snapshot_open_file() {
	need_kvm || return
	local b s=$WORK/share-a s2=$WORK/share-b k=$WORK/vol-kept.smolmachine
	b=$(vol_bundle) || return 1
	rm -rf "$s" "$s2" && mkdir -p "$s"
	echo "first directory" > "$s/open.txt"
	# a process holds the file open across the snapshot; it reads it once
	# /tmp/go exists
	vx "$b" --volume "$s:/work" -k -o "$k" -- sh -c '
		setsid sh -c "exec 3< /work/open.txt; while [ ! -e /tmp/go ]; do sleep 0.2; done; cat <&3 > /tmp/out; echo done >> /tmp/out" > /dev/null 2>&1 < /dev/null &
		sleep 2; ls -l /proc/$!/fd/ 2>/dev/null | grep -c open.txt' \
		< /dev/null > "$WORK/v3.out" 2>&1 || { show "$WORK/v3.out"; return 1; }
	[ -f "$k" ] || { echo "no bundle kept"; show "$WORK/v3.out"; return 1; }
	cp -a "$s" "$s2"
	echo "second directory" > "$s2/open.txt"
	rm -rf "$s"
	vx "$k" --volume "$s2:/work" -- sh -c 'touch /tmp/go; i=0; while ! grep -q done /tmp/out 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; cat /tmp/out; cat /work/open.txt' \
		< /dev/null > "$WORK/v3b.out" 2>&1 || { show "$WORK/v3b.out"; return 1; }
	[ "$(sed -n 1p "$WORK/v3b.out")" = "second directory" ] && [ "$(sed -n 2p "$WORK/v3b.out")" = done ] ||
		{ echo "the open file after the restore:"; show "$WORK/v3b.out"; return 1; }
}

# The same bundle without the grant: refused before anything runs, with a
# message naming the guest path and the option to give.
t_volumes_4_restore_without_grant() {
	need_kvm || return
	local k=$WORK/vol-kept.smolmachine rc
	[ -f "$k" ] || { echo "SKIP: needs t_volumes_3_snapshot_open_file's bundle"; return 77; }
	vx "$k" -- true < /dev/null > "$WORK/v4.out" 2>&1
	rc=$?
	[ $rc -ne 0 ] && grep -q "host directory mounted at /work" "$WORK/v4.out" &&
		grep -q -- "--volume HOSTDIR:/work" "$WORK/v4.out" ||
		{ echo "exit $rc"; show "$WORK/v4.out"; return 1; }
	# inspect says so before anything runs; the packed bundle has free slots
	SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" inspect "$k" > "$WORK/v4i.out" 2>&1
	grep -q "at /work in the guest, mounted when saved (required: --volume HOSTDIR:/work)" \
		"$WORK/v4i.out" && grep -q "3 volume slots free" "$WORK/v4i.out" ||
		{ show "$WORK/v4i.out" 40; return 1; }
	SMOLVM_CACHE_DIR=$WORK/cache "$SMOLVM" inspect "$(vol_bundle)" 2>&1 | grep -q "4 volume slots free" ||
		{ echo "no free slots in the packed bundle"; return 1; }
	# and a bad value is refused before anything starts
	vx "$k" --volume "$WORK:relative" -- true < /dev/null > "$WORK/v4b.out" 2>&1
	[ $? -ne 0 ] && grep -q "expected HOSTDIR:GUESTDIR" "$WORK/v4b.out" || { show "$WORK/v4b.out"; return 1; }
}

# smolvm run: the same mount before the console's input is read by the
# guest's shell (which waits for it, the agent mounts it meanwhile).
t_volumes_5_run() {
	need_kvm || return
	local b s=$WORK/share-run rc
	b=$(vol_bundle) || return 1
	rm -rf "$s" && mkdir -p "$s" && echo "seen by run" > "$s/r.txt"
	printf '%s\n' 'i=0; while ! grep -q " /work 9p " /proc/mounts && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done' \
		'cat /work/r.txt; echo ran > /work/back.txt; reboot -f' |
		SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 400 "$SMOLVM" run "$b" --pristine --volume "$s:/work" \
		> "$WORK/v5.out" 2>&1
	rc=$?
	[ $rc -eq 0 ] && grep -q "seen by run" "$WORK/v5.out" && [ "$(cat "$s/back.txt" 2>/dev/null)" = ran ] ||
		{ echo "exit $rc"; show "$WORK/v5.out"; return 1; }
}
