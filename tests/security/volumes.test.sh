# A guest with a shared folder (--volume) tries to reach the host files
# beside it: through symlinks the host placed in the share (absolute and
# relative, pointing out), through `..`, by making device files and FIFOs.
# (A FIFO already in the share is the guest kernel's own special file: it
# never opens the host's; the server's refusal to is a unit test.)
# The 9P requests a hostile guest kernel could craft are the unit tests'
# (tests/unit/test_p9.c: walks with "..", names with '/', a symlink
# swapped in during an operation) and the fuzz target's (fuzz_9p). This
# one proves the same through the real guest. vol_bundle comes from
# tests/integration/volumes.test.sh.

t_volumes_escape_guest() {
	need_kvm || return
	local b s=$WORK/esc-share o=$WORK/esc-outside
	b=$(vol_bundle) || return 1
	rm -rf "$s" "$o" && mkdir -p "$s" "$o"
	echo "host secret" > "$o/secret"
	ln -s "$o" "$s/abs"          # an absolute link to a host directory
	ln -s ../esc-outside "$s/rel" # a relative one, pointing out
	vx "$b" --volume "$s:/work" -- sh -c '
		cat /work/abs/secret /work/rel/secret /work/../esc-outside/secret 2>/dev/null && echo LEAK
		cat /work/abs/secret 2>&1 | head -1
		mknod /work/null c 1 3 || echo REFUSED-mknod
		mkfifo /work/f2 || echo REFUSED-mkfifo
		cd /work && cd .. && pwd
		readlink /work/abs' < /dev/null > "$WORK/esc.out" 2>&1 || { show "$WORK/esc.out"; return 1; }
	! grep -q "LEAK\|host secret" "$WORK/esc.out" || { echo "the guest read outside the share"; show "$WORK/esc.out"; return 1; }
	grep -q REFUSED-mknod "$WORK/esc.out" && grep -q REFUSED-mkfifo "$WORK/esc.out" &&
		[ ! -e "$s/null" ] && [ ! -e "$s/f2" ] || { echo "a device file was made"; show "$WORK/esc.out"; ls -la "$s"; return 1; }
	# the guest sees the link's text (and follows it in its own namespace)
	grep -qx "$o" "$WORK/esc.out" || { show "$WORK/esc.out"; return 1; }
}
