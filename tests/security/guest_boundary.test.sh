# The guest boundary of smolvm exec, against a guest that wants more than it
# was given: links in a copied-in tree are not followed, a copy-out has a
# size limit and a deadline. Uses exec.test.sh's packed default guest.
# Sourced by tests/integration/run.sh.

# A checkout that links out of itself: the guest must get the links, not
# what they point at.
t_sec_copy_in_links() {
	need_kvm || return
	local b src=$WORK/tree rc
	b=$(exec_bundle) || return 1
	rm -rf "$src" "$WORK/secret" && mkdir -p "$src/sub" "$WORK/secret"
	echo "host secret $RANDOM" > "$WORK/secret/id_key"
	echo "plain data" > "$src/sub/data"
	ln -s "$WORK/secret" "$src/keys"          # absolute, out of the tree
	ln -s ../../secret/id_key "$src/sub/key"  # relative, out of the tree
	ln -s data "$src/sub/inside"              # relative, inside
	mkfifo "$src/pipe"                        # would hang a naive reader
	sx "$b" --copy-in "$src:/src" -- sh -c 'readlink /src/keys; readlink /src/sub/key;
		cat /src/sub/inside; cat /src/keys/id_key /src/sub/key; ls -a /src' \
		< /dev/null > "$WORK/o" 2> "$WORK/e"
	rc=$?
	grep -qF "$(cat "$WORK/secret/id_key")" "$WORK/o" "$WORK/e" &&
		{ echo "the secret reached the guest"; show "$WORK/o"; return 1; }
	grep -qx "$WORK/secret" "$WORK/o" && grep -qx "../../secret/id_key" "$WORK/o" &&
		grep -qx "plain data" "$WORK/o" ||
		{ echo "links not copied as links (exit $rc)"; show "$WORK/o"; show "$WORK/e"; return 1; }
	[ $rc -eq 0 ] || { echo "exit $rc"; show "$WORK/e"; return 1; }
	grep -q "pipe left out: not a file, directory or link" "$WORK/e" &&
		! grep -qx pipe "$WORK/o" || { echo "the FIFO"; show "$WORK/o"; show "$WORK/e"; return 1; }
}

# A guest that offers an endless file (sparse, 1000 GiB): the size limit
# stops it, nothing is written on the host.
t_sec_copy_out_size_limit() {
	need_kvm || return
	local b rc
	b=$(exec_bundle) || return 1
	sx "$b" --copy-out-max 4M --copy-out /tmp/huge:"$WORK/huge" -- truncate -s 1000G /tmp/huge \
		< /dev/null > "$WORK/o" 2>&1
	rc=$?
	[ $rc -eq 1 ] && grep -q "the guest sent more than 4194304 bytes (--copy-out-max): nothing written" "$WORK/o" ||
		{ echo "exit $rc"; show "$WORK/o"; return 1; }
	[ ! -e "$WORK/huge" ] && ! ls "$WORK"/huge.smolvm-* > /dev/null 2>&1 ||
		{ echo "left on the host:"; ls -la "$WORK"/huge*; return 1; }
	sx "$b" --copy-out-max 4X -- true > "$WORK/o" 2>&1 < /dev/null
	[ $? -eq 2 ] && grep -q -- '--copy-out-max: "4X" is not a size' "$WORK/o" || { show "$WORK/o"; return 1; }
}

# --timeout bounds the whole exec: an endless copy-out ends at it, and a
# command killed at it copies nothing out.
t_sec_exec_deadline() {
	need_kvm || return
	local b rc start secs
	b=$(exec_bundle) || return 1
	start=$(date +%s)
	sx "$b" -t 15 --copy-out-max 1000G --copy-out /tmp/huge:"$WORK/huge" -- truncate -s 1000G /tmp/huge \
		< /dev/null > "$WORK/o" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	echo "endless copy-out: ended after $secs s (-t 15), exit $rc"
	[ $rc -eq 1 ] && grep -q "copy the guest's /tmp/huge to .*: not done in time" "$WORK/o" ||
		{ show "$WORK/o"; return 1; }
	[ $secs -lt 60 ] || { echo "took $secs s"; return 1; }
	[ ! -e "$WORK/huge" ] && ! ls "$WORK"/huge.smolvm-* > /dev/null 2>&1 ||
		{ echo "left on the host:"; ls -la "$WORK"/huge*; return 1; }
	sx "$b" -t 3 --copy-out /etc/hostname:"$WORK/hn" -- sleep 60 < /dev/null > "$WORK/o" 2>&1
	rc=$?
	[ $rc -eq 124 ] && [ ! -e "$WORK/hn" ] || { echo "exit $rc"; show "$WORK/o"; return 1; }
}
