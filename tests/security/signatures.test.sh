# Signed bundles: a bundle signed by a key the user trusts runs as one they
# packed (its hooks run); unsigned or signed by a key they do not trust, it
# is untrusted (its hooks do not run); changed after it was signed, even
# with every hash and checksum recomputed (tests/security/retouch.c), it is
# refused outright. Alice (the author) and Mallory (an attacker) have their
# own configuration and data directories; the victim has theirs.
# Sourced by run.sh (trust_hostile_bundle: trust.test.sh).

sig_env() { # WHO: the environment of one person's smolvm
	echo "SMOLVM_CONFIG_DIR=$WORK/$1-config SMOLVM_DATA_DIR=$WORK/$1-data SMOLVM_CACHE_DIR=$WORK/cache"
}
as() { # WHO LOG TIMEOUT ARGS...
	local who=$1
	shift
	env $(sig_env "$who") bash -c 'run "$@"' _ "$@"
}
export -f run 2>/dev/null
export SMOLVM

# Alice's key, her signed copy of the hostile bundle, and her public key
# line in $WORK/alice.pub.
sig_alice_bundle() {
	local b=$WORK/alice-signed.smolmachine h
	if [ ! -f "$b" ]; then
		h=$(trust_hostile_bundle) || return 1
		as alice "$WORK/ak.log" 10 key generate alice || { show "$WORK/ak.log"; return 1; }
		env $(sig_env alice) "$SMOLVM" key export alice > "$WORK/alice.pub" || return 1
		as alice "$WORK/as.log" 30 sign --key alice -o "$b" "$h" || { show "$WORK/as.log"; return 1; }
	fi
	echo "$b"
}

t_sec_signed_by_trusted_key() {
	need_kvm || return
	local b
	b=$(sig_alice_bundle) || return 1
	# not yet trusted: a valid signature by a key the victim does not know
	as victim "$WORK/v1.log" 30 verify "$b"; [ $? -eq 1 ] &&
		grep -q "signed only by keys you do not trust" "$WORK/v1.log" || { show "$WORK/v1.log"; return 1; }
	as victim "$WORK/r1.log" 60 run --pristine "$b" || { show "$WORK/r1.log"; return 1; }
	grep -q "nor signed by a key you trust: its hooks do not run" "$WORK/r1.log" &&
		! grep -q HOSTILE "$WORK/r1.log" || { show "$WORK/r1.log" 30; return 1; }
	# the victim trusts Alice's key: now it is as if they had packed it
	as victim "$WORK/kt.log" 10 key trust "$WORK/alice.pub" || { show "$WORK/kt.log"; return 1; }
	as victim "$WORK/v2.log" 30 verify "$b" && grep -q "trusted: signed by alice" "$WORK/v2.log" ||
		{ show "$WORK/v2.log"; return 1; }
	as victim "$WORK/i2.log" 30 inspect "$b" && grep -q "trust: signed by alice, a key you trust" "$WORK/i2.log" ||
		{ show "$WORK/i2.log"; return 1; }
	as victim "$WORK/r2.log" 60 run --pristine -v "$b" || { show "$WORK/r2.log"; return 1; }
	grep -q "signed by alice, a key you trust" "$WORK/r2.log" && grep -q "HOSTILE after_restore" "$WORK/r2.log" ||
		{ show "$WORK/r2.log" 30; return 1; }
	# and no longer once the key is untrusted
	as victim "$WORK/ku.log" 10 key untrust alice || { show "$WORK/ku.log"; return 1; }
	as victim "$WORK/r3.log" 60 run --pristine "$b" || { show "$WORK/r3.log"; return 1; }
	! grep -q HOSTILE "$WORK/r3.log" || { show "$WORK/r3.log" 30; return 1; }
	as victim "$WORK/kt2.log" 10 key trust "$WORK/alice.pub" || { show "$WORK/kt2.log"; return 1; }
	echo "unknown key: hooks do not run; trusted: $(grep -m1 'signed by' "$WORK/r2.log")"
}

t_sec_signed_then_modified() {
	need_kvm || return
	local b m=$WORK/modified.smolmachine mb=$WORK/mallory.smolmachine rc
	b=$(sig_alice_bundle) || return 1
	cc -O2 -Wall -Werror -o "$WORK/retouch" tests/security/retouch.c -lxxhash -lsodium ||
		{ echo "cannot build tests/security/retouch.c"; return 1; }
	as victim "$WORK/kt.log" 10 key trust "$WORK/alice.pub" --as alice-m
	# Mallory changes Alice's script ("HOSTILE" becomes "HOSTILD") and
	# recomputes every hash and checksum: only the signature still tells
	cp "$b" "$m"
	"$WORK/retouch" "$m" lua @"E after_restore" || return 1
	as victim "$WORK/m.log" 60 run --pristine "$m"; rc=$?
	[ $rc -ne 0 ] && [ $rc -lt 124 ] &&
		grep -q "a signature does not match the bundle: it was changed after it was signed" "$WORK/m.log" &&
		! grep -q "^tick" "$WORK/m.log" && ! grep -q HOSTIL "$WORK/m.log" || { show "$WORK/m.log"; return 1; }
	as victim "$WORK/mv.log" 30 verify "$m"; [ $? -eq 2 ] && grep -q "DOES NOT MATCH" "$WORK/mv.log" ||
		{ show "$WORK/mv.log"; return 1; }
	# --trust does not override a signature that does not match
	as victim "$WORK/mt.log" 60 run --pristine --trust "$m"; rc=$?
	[ $rc -ne 0 ] && ! grep -q HOSTIL "$WORK/mt.log" || { show "$WORK/mt.log"; return 1; }
	# one byte flipped with nothing recomputed: refused as corrupt
	cp "$b" "$WORK/flip.smolmachine"
	printf '\x01' | dd of="$WORK/flip.smolmachine" bs=1 conv=notrunc status=none \
		seek="$(grep -abo 'HOSTILE after_restore' "$b" | head -1 | cut -d: -f1)"
	as victim "$WORK/f.log" 60 run --pristine "$WORK/flip.smolmachine"; rc=$?
	[ $rc -ne 0 ] && grep -q "checksum mismatch\|does not match its hash" "$WORK/f.log" ||
		{ show "$WORK/f.log"; return 1; }
	# Mallory signs her change with her own key too: Alice's signature still
	# does not match, so it is still refused
	as mallory "$WORK/mk.log" 10 key generate mallory || { show "$WORK/mk.log"; return 1; }
	as mallory "$WORK/ms.log" 30 sign --key mallory "$m" || { show "$WORK/ms.log"; return 1; }
	as victim "$WORK/m2.log" 60 run --pristine "$m"; rc=$?
	[ $rc -ne 0 ] && grep -q "a signature does not match" "$WORK/m2.log" || { show "$WORK/m2.log"; return 1; }
	# a bundle only Mallory signed: valid, by a key the victim does not
	# trust: untrusted, its hooks do not run
	cp "$(trust_hostile_bundle)" "$mb"
	"$WORK/retouch" "$mb" lua @"E after_restore" > /dev/null || return 1
	as mallory "$WORK/ms2.log" 30 sign --key mallory "$mb" || { show "$WORK/ms2.log"; return 1; }
	as victim "$WORK/m3.log" 60 run --pristine "$mb" || { show "$WORK/m3.log"; return 1; }
	grep -q "nor signed by a key you trust" "$WORK/m3.log" && ! grep -q HOSTIL "$WORK/m3.log" ||
		{ show "$WORK/m3.log" 30; return 1; }
	echo "modified after signing: $(grep -m1 'signature does not match' "$WORK/m.log")"
}

# What sign, verify and key refuse, each with a message naming the fix.
t_sec_sign_refusals() {
	local b=$WORK/refuse.smolmachine
	need_kvm || return
	cp "$(sig_alice_bundle)" "$b" || return 1
	# no such key
	as bob "$WORK/n.log" 10 sign --key nokey "$b"; [ $? -eq 1 ] &&
		grep -q "key nokey: .*smolvm key generate nokey" "$WORK/n.log" || { show "$WORK/n.log"; return 1; }
	# a secret key others can read
	as bob "$WORK/g.log" 10 key generate bob || { show "$WORK/g.log"; return 1; }
	chmod 644 "$WORK/bob-config/keys/bob.key"
	as bob "$WORK/p.log" 10 sign --key bob "$b"; [ $? -eq 1 ] && grep -q "only you can read (chmod 600)" "$WORK/p.log" ||
		{ show "$WORK/p.log"; return 1; }
	chmod 600 "$WORK/bob-config/keys/bob.key"
	# an existing key is never replaced
	as bob "$WORK/r.log" 10 key generate bob; [ $? -eq 1 ] && grep -q "exists already" "$WORK/r.log" ||
		{ show "$WORK/r.log"; return 1; }
	# a corrupt bundle is not signed (nor replaced)
	printf '\x01' | dd of="$b" bs=1 seek=200 conv=notrunc status=none
	local sum
	sum=$(md5sum < "$b")
	as bob "$WORK/c.log" 30 sign --key bob "$b"; [ $? -eq 1 ] && [ "$(md5sum < "$b")" = "$sum" ] &&
		grep -q "does not match its hash\|checksum mismatch" "$WORK/c.log" || { show "$WORK/c.log"; return 1; }
	# a format 1 bundle has nothing cryptographic to sign
	as bob "$WORK/v1.log" 10 sign --key bob tests/golden/ticker-v1.smolmachine -o "$WORK/v1s.smolmachine"
	[ $? -eq 1 ] && grep -q "format 1 bundle, which has no cryptographic hashes" "$WORK/v1.log" &&
		[ ! -e "$WORK/v1s.smolmachine" ] || { show "$WORK/v1.log"; return 1; }
	# what is not a public key is not trusted
	echo "ssh-ed25519 AAAA bob" > "$WORK/notakey.pub"
	as bob "$WORK/t.log" 10 key trust "$WORK/notakey.pub"; [ $? -eq 1 ] && grep -q "not a smolvm public key" "$WORK/t.log" ||
		{ show "$WORK/t.log"; return 1; }
	# a bundle signed twice keeps both; signing again replaces one's own
	cp "$(sig_alice_bundle)" "$b"
	as bob "$WORK/s1.log" 30 sign --key bob "$b" && as bob "$WORK/s2.log" 30 sign --key bob "$b" ||
		{ show "$WORK/s1.log"; show "$WORK/s2.log"; return 1; }
	as bob "$WORK/vv.log" 30 verify "$b"
	[ "$(grep -c '^signature [0-9]*: .*valid' "$WORK/vv.log")" = 2 ] || { show "$WORK/vv.log"; return 1; }
}
