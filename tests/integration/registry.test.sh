# Bundles through OCI registries (core/registry, docs/registry.md): a
# docker-registry (Debian's CNCF distribution) on 127.0.0.1, started by
# each test with its storage in $WORK; smolvm as two or more "hosts", each
# with its own cache, data and configuration. Push, pull byte for byte and
# run by reference; a second version uploads and fetches only its changed
# chunks; a corrupt blob in the registry's storage is refused; a registry
# that wants credentials says so; an interrupted pull resumes. Sourced by
# run.sh; the ticker and virtio test guests, and the signed golden bundle.

REG= REG_DIR= REG_PID= PROXY= PROXY_PID= PROXY_PIDS=

# reg_start NAME [USER PASSWORD]: a registry (htpasswd auth with a user)
# on a free port; sets REG (HOST:PORT), REG_DIR; stopped when the test ends
# (each test runs in a subshell of its own).
reg_start() {
	command -v docker-registry > /dev/null ||
		{ echo "SKIP: docker-registry is not installed (Debian: apt-get install docker-registry)"; return 77; }
	REG_DIR=$WORK/reg-$1
	rm -rf "$REG_DIR" && mkdir -p "$REG_DIR/store"
	local port auth=""
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	if [ $# -ge 3 ]; then
		python3 -W ignore -c "import crypt, sys; print(sys.argv[1] + ':' + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))" \
			"$2" "$3" > "$REG_DIR/htpasswd" || return 1
		auth="auth:
  htpasswd:
    realm: smolvm-test
    path: $REG_DIR/htpasswd"
	fi
	cat > "$REG_DIR/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REG_DIR/store
http:
  addr: 127.0.0.1:$port
$auth
YML
	docker-registry serve "$REG_DIR/config.yml" > "$REG_DIR/log" 2>&1 < /dev/null &
	REG_PID=$!
	trap 'kill "$REG_PID" 2> /dev/null; wait "$REG_PID" 2> /dev/null' EXIT
	REG=127.0.0.1:$port
	for _ in $(seq 50); do
		(exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && return 0
		kill -0 "$REG_PID" 2> /dev/null || break
		sleep 0.1
	done
	echo "the registry did not start:"; show "$REG_DIR/log"; return 1
}

# sm HOST ARGS...: smolvm as host HOST (for at most $SM_T seconds, default 60) (its own cache, data and config; no
# docker credentials of the user running the tests).
sm() {
	local h=$WORK/host-$1
	shift
	mkdir -p "$h/docker"
	env -u SMOLVM_REGISTRY_AUTH SMOLVM_CACHE_DIR="$h/cache" SMOLVM_DATA_DIR="$h/data" \
		SMOLVM_CONFIG_DIR="$h/config" DOCKER_CONFIG="$h/docker" \
		timeout -k 5 "${SM_T:-60}" "$SMOLVM" "$@" < /dev/null
}

# A number out of smolvm's summary line: reg_num LOG WORD-BEFORE
reg_num() { grep -aoE "$2 [0-9]+" "$1" | head -1 | awk '{print $2}'; }
reg_after() { grep -aoE "[0-9]+ $2" "$1" | head -1 | awk '{print $1}'; }

# The ticker, packed once per lane.
reg_ticker() {
	local b=$WORK/reg-ticker.smolmachine
	if [ ! -f "$b" ]; then
		sm a pack scripts/ticker.lua -o "$b" > "$WORK/reg-pack.log" 2>&1 ||
			{ show "$WORK/reg-pack.log"; return 1; }
	fi
	echo "$b"
}

# reg_disk_machines: $WORK/regdisk/v1.smolmachine and v2.smolmachine, the
# virtio guest with a 32 MiB disk holding 8 MiB of random data; v2's
# differs from v1's in one MiB.
reg_disk_machines() {
	local d=$WORK/regdisk k=$GUEST/virtio.elf v
	[ -f "$d/v2.smolmachine" ] && return 0
	[ -f "$k" ] || { echo "missing $k: run 'make test-guests'"; return 1; }
	rm -rf "$d" && mkdir -p "$d"
	head -c 8M /dev/urandom > "$d/data"
	for v in 1 2; do
		mkdir -p "$d/m$v"
		truncate -s 32M "$d/m$v/base.img"
		dd if="$d/data" of="$d/m$v/base.img" bs=1M seek=4 conv=notrunc status=none
		[ $v = 2 ] && head -c 1M /dev/urandom |
			dd of="$d/m$v/base.img" bs=1M seek=7 conv=notrunc status=none
		cat > "$d/m$v/m.lua" <<LUA
machine { memory = "64M", kernel = "$(realpath "$k")", cmdline = "blkseed=3",
  devices = { { type = "uart" }, { type = "virtio-blk", path = "base.img", overlay = "base.cow" } } }
LUA
		(cd "$d/m$v" && SMOLVM_CACHE_DIR=$d/cache SMOLVM_DATA_DIR=$d/data-dir timeout -k 5 60 \
			"$(cd "$OLDPWD" && realpath "$SMOLVM")" pack m.lua -o "$d/v$v.smolmachine" \
			--ready "PASS: blk write/read/flush") < /dev/null > "$d/pack$v.log" 2>&1 ||
			{ echo "pack v$v:"; show "$d/pack$v.log"; return 1; }
	done
}

# Push, pull on another host (the same bytes), run by reference on a third.
t_registry_round_trip() {
	need_kvm || return
	reg_start rt || return
	local b log=$WORK/reg-rt.log
	b=$(reg_ticker) || return 1
	sm rta push "$b" "$REG/team/ticker:v1" --insecure > "$log" 2>&1 ||
		{ echo "push:"; show "$log"; return 1; }
	grep -q "^uploaded [0-9]* blobs" "$log" || { show "$log"; return 1; }
	cat "$log"
	sm rtb pull "$REG/team/ticker:v1" --insecure -o "$WORK/reg-rt.smolmachine" > "$log" 2>&1 ||
		{ echo "pull:"; show "$log"; return 1; }
	cmp "$b" "$WORK/reg-rt.smolmachine" || { echo "the pulled bundle differs"; return 1; }
	cat "$log"
	# without --insecure: TLS, which this registry does not speak
	sm rtc pull "$REG/team/ticker:v1" -o "$WORK/reg-rt2.smolmachine" > "$log" 2>&1 &&
		{ echo "pulled over TLS from a plain HTTP registry?"; return 1; }
	grep -q "insecure" "$log" || { echo "no hint at --insecure:"; show "$log"; return 1; }
	# run by reference on a host that has nothing
	SM_T=3 sm rtc run "$REG/team/ticker:v1" --insecure -v > "$log" 2>&1
	grep -aq "^smolvm: pulled $REG/team/ticker:v1: fetched" "$log" &&
		[ "$(tr -d '\r' < "$log" | grep -am1 '^tick')" = "tick 6" ] ||
		{ echo "run by reference:"; show "$log"; return 1; }
	# a second run finds it in the cache: nothing fetched
	# (the ticker has no guest agent: exec stops there, having found the bundle)
	sm rtc exec "$REG/team/ticker:v1" --insecure -- true > "$log" 2>&1
	grep -aq "fetched" "$log" && { echo "fetched again:"; show "$log"; return 1; }
	grep -aq "pulled/[0-9a-f]*\.smolmachine: its machine has no virtio-vsock device" "$log" ||
		{ echo "exec by reference:"; show "$log"; return 1; }
	ls "$WORK/host-rtc/cache/pulled/" | grep -q '\.smolmachine$' || return 1
	return 0
}

# Signatures travel: the signed golden bundle comes back signed, trusted
# only where its key is trusted. (No KVM needed.)
t_registry_signed() {
	reg_start sig || return
	local g=tests/golden/ticker-v2.smolmachine log=$WORK/reg-sig.log
	sm siga push "$g" "$REG/golden/ticker:v2" --insecure > "$log" 2>&1 || { show "$log"; return 1; }
	sm sigb pull "$REG/golden/ticker:v2" --insecure -o "$WORK/reg-sig.smolmachine" > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cmp "$g" "$WORK/reg-sig.smolmachine" || return 1
	grep -q "^signed by no key you trust: untrusted" "$log" || { show "$log"; return 1; }
	sm sigb verify "$WORK/reg-sig.smolmachine" > "$log" 2>&1
	[ $? = 1 ] || { echo "a pulled bundle signed by an unknown key: not exit 1"; show "$log"; return 1; }
	sm sigb key trust tests/golden/golden.pub > /dev/null 2>&1 || return 1
	sm sigb verify "$WORK/reg-sig.smolmachine" > "$log" 2>&1 ||
		{ echo "signed by a trusted key, yet:"; show "$log"; return 1; }
	# a signature that does not match is not pushed
	cp "$g" "$WORK/reg-sig-bad.smolmachine"
	python3 -c "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-1] ^= 1; open(p, 'wb').write(b)" \
		"$WORK/reg-sig-bad.smolmachine"
	sm siga push "$WORK/reg-sig-bad.smolmachine" "$REG/golden/bad:v1" --insecure > "$log" 2>&1 &&
		{ echo "pushed a bundle whose signature does not match"; return 1; }
	grep -q "signature 1 does not match the bundle" "$log" || { show "$log"; return 1; }
	# a pull by digest gets the same
	local dg
	sm sigb pull "$REG/golden/ticker:v2" --insecure -o "$WORK/reg-sig.smolmachine" > "$log" 2>&1 ||
		return 1
	grep -q "^signed by golden, a key you trust" "$log" || { show "$log"; return 1; }
	dg=$(grep -o 'sha256:[0-9a-f]*' "$log" | head -1)
	sm sigc pull "$REG/golden/ticker@$dg" --insecure -o "$WORK/reg-sig2.smolmachine" > "$log" 2>&1 &&
		cmp "$g" "$WORK/reg-sig2.smolmachine" || { echo "pull by digest:"; show "$log"; return 1; }
}

# v2 after v1 uploads only its changed chunks; a pull of v2 where v1 was
# pulled fetches only those.
t_registry_v2_changed_chunks() {
	need_kvm || return
	reg_start v2 || return
	reg_disk_machines || return 1
	local d=$WORK/regdisk log=$WORK/reg-v2.log before after up had size
	sm v2a push "$d/v1.smolmachine" "$REG/team/disk:v1" --insecure > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	before=$(du -sb "$REG_DIR/store" | cut -f1)
	sm v2a push "$d/v2.smolmachine" "$REG/team/disk:v2" --insecure > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	after=$(du -sb "$REG_DIR/store" | cut -f1)
	up=$(grep -aoE 'blobs, [0-9]+ bytes' "$log" | awk '{print $2}')
	had=$(reg_after "$log" "already there")
	size=$(stat -c %s "$d/v2.smolmachine")
	echo "v2: $size bytes; uploaded $up bytes; the registry's storage grew by $((after - before)) bytes"
	# 8 MiB of random disk data, 1 MiB of it changed
	[ "$up" -lt 2500000 ] && [ $((after - before)) -lt 2600000 ] && [ "$had" -ge 7 ] ||
		{ echo "v2 uploaded more than its changes"; return 1; }
	# a pull of v2 on a host that pulled v1
	sm v2b pull "$REG/team/disk:v1" --insecure -o "$WORK/reg-v1.smolmachine" > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	sm v2b pull "$REG/team/disk:v2" --insecure -o "$WORK/reg-v2.smolmachine" > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	cmp "$d/v2.smolmachine" "$WORK/reg-v2.smolmachine" || return 1
	local got
	got=$(grep -aoE 'blobs, [0-9]+ bytes' "$log" | awk '{print $2}')
	[ "$got" -lt 2500000 ] && [ "$(reg_after "$log" "from the cache")" -ge 7 ] ||
		{ echo "the warm pull fetched more than the changes"; return 1; }
}

# A blob changed in the registry's storage is refused, and nothing is
# written where the bundle would go.
t_registry_corrupt_blob() {
	reg_start bad || return
	local g=tests/golden/ticker-v2.smolmachine log=$WORK/reg-bad.log f
	sm bada push "$g" "$REG/golden/ticker:v2" --insecure > "$log" 2>&1 || { show "$log"; return 1; }
	# the largest blob (a memory frame): one byte flipped in its middle
	f=$(find "$REG_DIR/store" -path '*/blobs/*' -name data -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
	[ -n "$f" ] || { echo "no blob in the storage"; return 1; }
	python3 -c "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 1; open(p, 'wb').write(b)" "$f"
	sm badb pull "$REG/golden/ticker:v2" --insecure -o "$WORK/reg-bad.smolmachine" > "$log" 2>&1 &&
		{ echo "a corrupt blob was taken"; return 1; }
	cat "$log"
	grep -q "another digest.*refused" "$log" || { show "$log"; return 1; }
	! ls "$WORK" | grep -q '^reg-bad.smolmachine' || { echo "something was written"; ls "$WORK"; return 1; }
}

# A registry that wants credentials: a clear message without them, or with
# wrong ones; SMOLVM_REGISTRY_AUTH and ~/.docker/config.json work.
t_registry_auth() {
	reg_start auth smolvm s3cret || return
	local g=tests/golden/ticker-v2.smolmachine log=$WORK/reg-auth.log
	sm autha push "$g" "$REG/golden/ticker:v2" --insecure > "$log" 2>&1 &&
		{ echo "pushed without credentials"; return 1; }
	cat "$log"
	grep -q "requires credentials and none were found" "$log" || { show "$log"; return 1; }
	SMOLVM_REGISTRY_AUTH=smolvm:wrong sm_env_auth autha push "$g" "$REG/golden/ticker:v2" --insecure \
		> "$log" 2>&1 && { echo "pushed with a wrong password"; return 1; }
	cat "$log"
	grep -q "refused the credentials from SMOLVM_REGISTRY_AUTH" "$log" || { show "$log"; return 1; }
	SMOLVM_REGISTRY_AUTH=smolvm:s3cret sm_env_auth autha push "$g" "$REG/golden/ticker:v2" \
		--insecure > "$log" 2>&1 || { show "$log"; return 1; }
	# docker login's file
	mkdir -p "$WORK/host-authb/docker"
	printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REG" "$(printf smolvm:s3cret | base64)" \
		> "$WORK/host-authb/docker/config.json"
	sm authb pull "$REG/golden/ticker:v2" --insecure -o "$WORK/reg-auth.smolmachine" > "$log" 2>&1 &&
		cmp "$g" "$WORK/reg-auth.smolmachine" || { show "$log"; return 1; }
}
# sm with SMOLVM_REGISTRY_AUTH kept
sm_env_auth() {
	local h=$WORK/host-$1
	shift
	mkdir -p "$h/docker"
	SMOLVM_CACHE_DIR="$h/cache" SMOLVM_DATA_DIR="$h/data" SMOLVM_CONFIG_DIR="$h/config" \
		DOCKER_CONFIG="$h/docker" timeout -k 5 "${SM_T:-60}" "$SMOLVM" "$@" < /dev/null
}

# A pull killed halfway, then run again, completes without fetching again
# what it had.
t_registry_resume() {
	need_kvm || return
	reg_start resume || return
	reg_disk_machines || return 1
	local d=$WORK/regdisk log=$WORK/reg-resume.log store=$WORK/host-resb/cache/blobs/sha256 pid n total
	sm resa push "$d/v1.smolmachine" "$REG/team/disk:v1" --insecure > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	total=$(reg_num "$log" uploaded)
	# one blob at a time, at 1 MB/s: killed once 3 blobs are in
	(mkdir -p "$WORK/host-resb" && SMOLVM_REGISTRY_LIMIT_RATE=1000000 \
		SMOLVM_CACHE_DIR=$WORK/host-resb/cache DOCKER_CONFIG=$WORK/host-resb/docker exec \
		"$SMOLVM" pull "$REG/team/disk:v1" --insecure -j 1 -o "$WORK/reg-resume.smolmachine") \
		< /dev/null > "$log.1" 2>&1 &
	pid=$!
	for _ in $(seq 200); do
		n=$(ls "$store" 2> /dev/null | grep -vc tmp)
		[ "$n" -ge 3 ] && break
		sleep 0.05
	done
	kill -KILL "$pid" 2> /dev/null
	wait "$pid" 2> /dev/null
	n=$(ls "$store" | grep -vc tmp)
	[ -f "$WORK/reg-resume.smolmachine" ] && { echo "a killed pull wrote the bundle"; return 1; }
	echo "killed with $n of $((total - 1)) blobs in the store"
	[ "$n" -ge 3 ] && [ "$n" -lt $((total - 1)) ] || { echo "not halfway"; show "$log.1"; return 1; }
	sm resb pull "$REG/team/disk:v1" --insecure -o "$WORK/reg-resume.smolmachine" > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	cmp "$d/v1.smolmachine" "$WORK/reg-resume.smolmachine" || return 1
	[ "$(reg_after "$log" "from the cache")" = "$n" ] &&
		[ "$(reg_num "$log" fetched)" = $((total - n)) ] ||
		{ echo "fetched again what it had"; return 1; }
}

# proxy_start MODE [USER:PASSWORD]: tests/integration/registry_proxy.py in
# front of $REG; sets PROXY (HOST:PORT) and PROXY_PID; stopped with the
# registry when the test ends.
proxy_start() {
	local port
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	python3 tests/integration/registry_proxy.py "$port" "$REG" "$@" > "$REG_DIR/proxy.log" 2>&1 < /dev/null &
	PROXY_PID=$!
	PROXY_PIDS="$PROXY_PIDS $PROXY_PID"
	trap 'kill $REG_PID $PROXY_PIDS 2> /dev/null; wait 2> /dev/null' EXIT
	PROXY=127.0.0.1:$port
	for _ in $(seq 50); do
		grep -q ready "$REG_DIR/proxy.log" && return 0
		sleep 0.1
	done
	echo "the proxy did not start:"; show "$REG_DIR/proxy.log"; return 1
}

# The Bearer token flow (the registry's challenge names a token service):
# a token got with the credentials, refused without them.
t_registry_bearer_token() {
	reg_start bearer || return
	local g=tests/golden/ticker-v2.smolmachine log=$WORK/reg-bearer.log
	sm bra push "$g" "$REG/golden/ticker:v2" --insecure > "$log" 2>&1 || { show "$log"; return 1; }
	proxy_start bearer smolvm:s3cret || return 1
	sm brb pull "$PROXY/golden/ticker:v2" --insecure -o "$WORK/reg-bearer.smolmachine" > "$log" 2>&1 &&
		{ echo "pulled without credentials"; return 1; }
	cat "$log"
	grep -q "requires credentials for repository:golden/ticker:pull and none were found" "$log" ||
		{ show "$log"; return 1; }
	SMOLVM_REGISTRY_AUTH=smolvm:s3cret sm_env_auth brb pull "$PROXY/golden/ticker:v2" --insecure \
		-o "$WORK/reg-bearer.smolmachine" > "$log" 2>&1 && cmp "$g" "$WORK/reg-bearer.smolmachine" ||
		{ show "$log"; return 1; }
	# a push through the token flow (scope pull,push)
	SMOLVM_REGISTRY_AUTH=smolvm:s3cret sm_env_auth bra push "$g" "$PROXY/golden/other:v1" --insecure \
		> "$log" 2>&1 || { show "$log"; return 1; }
	grep -q "^uploaded [0-9]* blobs" "$log" || { show "$log"; return 1; }
}

# A hostile registry: sizes that do not add up, a manifest too large, a
# blob longer than its manifest says, an endless error: each refused,
# nothing written.
t_registry_hostile() {
	reg_start hostile || return
	local g=tests/golden/ticker-v2.smolmachine log=$WORK/reg-hostile.log mode want
	sm hoa push "$g" "$REG/golden/ticker:v2" --insecure > "$log" 2>&1 || { show "$log"; return 1; }
	for mode in bigsize hugemanifest longblob errorbody; do
		case $mode in
		bigsize) want="frame 0: 3145728 bytes (1 to 2097152)" ;;
		hugemanifest) want="more than the 8388608 bytes expected" ;;
		longblob) want="more than the [0-9]* bytes expected" ;;
		errorbody) want="the config: the registry answered 404" ;;
		esac
		proxy_start "$mode" || return 1
		sm "ho$mode" pull "$PROXY/golden/ticker:v2" --insecure -o "$WORK/reg-hostile.smolmachine" \
			> "$log" 2>&1 && { echo "$mode: pulled"; return 1; }
		cat "$log"
		grep -q "$want" "$log" || { echo "$mode: not \"$want\""; return 1; }
		[ ! -e "$WORK/reg-hostile.smolmachine" ] || { echo "$mode: wrote the bundle"; return 1; }
		kill "$PROXY_PID" 2> /dev/null
	done
}

# A push killed halfway, then run again, uploads only what the registry
# still lacks.
t_registry_push_resume() {
	need_kvm || return
	reg_start presume || return
	reg_disk_machines || return 1
	local d=$WORK/regdisk log=$WORK/reg-presume.log pid had up
	mkdir -p "$WORK/host-pra"
	# one blob at a time at 1 MB/s (8 MiB: 8 s), killed after 3 s
	(SMOLVM_REGISTRY_LIMIT_RATE=1000000 SMOLVM_CACHE_DIR=$WORK/host-pra/cache \
		DOCKER_CONFIG=$WORK/host-pra exec "$SMOLVM" push "$d/v1.smolmachine" \
		"$REG/team/disk:v1" --insecure -j 1) < /dev/null > "$log.1" 2>&1 &
	pid=$!
	sleep 3
	kill -KILL "$pid" 2> /dev/null
	wait "$pid" 2> /dev/null
	grep -q "^pushed" "$log.1" && { echo "the push was not interrupted"; return 1; }
	sm pra push "$d/v1.smolmachine" "$REG/team/disk:v1" --insecure > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	had=$(reg_after "$log" "already there")
	up=$(reg_num "$log" uploaded)
	[ "$had" -ge 1 ] && [ "$up" -ge 1 ] || { echo "uploaded everything again, or nothing"; return 1; }
	sm prb pull "$REG/team/disk:v1" --insecure -o "$WORK/reg-presume.smolmachine" > "$log" 2>&1 &&
		cmp "$d/v1.smolmachine" "$WORK/reg-presume.smolmachine" || { show "$log"; return 1; }
}

# A child bundle (run -o on SIGUSR1) is pushed flattened: only the chunks
# it changed go up; a pull gives what smolvm flatten gives, and it runs.
t_registry_child() {
	need_kvm || return
	reg_start child || return
	local b log=$WORK/reg-child.log d=$WORK/reg-child pid
	b=$(reg_ticker) || return 1
	rm -rf "$d" && mkdir -p "$d" && cp "$b" "$d/p.smolmachine"
	sm cha push "$d/p.smolmachine" "$REG/team/ticker:v1" --insecure > "$log" 2>&1 || { show "$log"; return 1; }
	(cd "$d" && SMOLVM_CACHE_DIR=$WORK/host-cha/cache SMOLVM_DATA_DIR=$WORK/host-cha/data \
		exec timeout -s TERM 4 "$(cd "$OLDPWD" && realpath "$SMOLVM")" run p.smolmachine -o c.smolmachine -v) \
		< /dev/null > "$d/run.log" 2>&1 &
	pid=$!
	sleep 1.5
	kill -USR1 "$(pgrep -P "$pid")"
	wait "$pid"
	grep -aq "saved c.smolmachine" "$d/run.log" || { echo "no child:"; show "$d/run.log"; return 1; }
	sm cha push "$d/c.smolmachine" "$REG/team/ticker:v2" --insecure > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	cat "$log"
	grep -q "c.smolmachine is a child bundle (1 generation): pushing it flattened" "$log" &&
		[ "$(reg_after "$log" "already there")" -ge 1 ] || { echo "not flattened, or all uploaded"; return 1; }
	[ -z "$(ls "$WORK/host-cha/cache/push")" ] || { echo "the flattened copy stayed"; return 1; }
	sm cha flatten "$d/c.smolmachine" -o "$d/flat.smolmachine" > /dev/null 2>&1 || return 1
	sm chb pull "$REG/team/ticker:v2" --insecure -o "$d/pulled.smolmachine" > "$log" 2>&1 &&
		cmp "$d/flat.smolmachine" "$d/pulled.smolmachine" || { echo "pull:"; show "$log"; return 1; }
	SM_T=3 sm chb run "$d/pulled.smolmachine" --pristine > "$log" 2>&1
	tr -d '\r' < "$log" | grep -aq '^tick' || { echo "the pulled child does not run:"; show "$log"; return 1; }
}
