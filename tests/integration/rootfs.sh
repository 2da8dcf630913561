# Helpers of the root filesystem tests (rootfs.test.sh, tests/apps/).

# A busybox-only tree (static busybox and its applet links: no libc, no
# coreutils) in DIR.
bb_tree() {
	local d=$1 a
	mkdir -p "$d/bin" "$d/etc" "$d/root"
	cp /bin/busybox "$d/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$d/bin/$a"
	done
	echo "root:x:0:0:root:/root:/bin/sh" > "$d/etc/passwd"
}

# rootfs_script NAME 'ROOTFS TABLE CONTENTS' 'MORE MACHINE LINES'
rootfs_script() {
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "128M",
  rootfs = { $2 },
  ${3:-}
  devices = { { type = "uart" }, { type = "virtio-vsock" } },
}
LUA
	echo "$WORK/$1.lua"
}

rpack() { # LOG SCRIPT BUNDLE [ARGS]: pack with the test's cache
	local log=$1 s=$2 b=$3
	shift 3
	SMOLVM_CACHE_DIR=$WORK/cache run "$log" "${RPACK_TIMEOUT:-900}" pack "$s" -o "$b" "$@"
}

# rpack_unless PATTERN LOG SCRIPT BUNDLE [ARGS]: rpack, but stopped (status
# 3) as soon as LOG shows PATTERN: a service that died in the guest is not
# waited for until the ready timeout.
rpack_unless() {
	local pat=$1 log=$2 pid
	shift
	: > "$log"
	rpack "$@" &
	pid=$!
	while kill -0 "$pid" 2> /dev/null; do
		if grep -qF -- "$pat" "$log"; then
			sleep 3 # the rest of the message
			pkill -TERM -P "$pid" timeout
			wait "$pid"
			return 3
		fi
		sleep 1
	done
	wait "$pid"
}

rexec() { # BUNDLE CMD...: exec with the test's cache, output on stdout
	SMOLVM_CACHE_DIR=$WORK/cache timeout -k 5 300 "$SMOLVM" exec "$@" < /dev/null
}

# The test's cache holds no image, nor the leftovers of a build.
nothing_cached() {
	local left
	left=$(ls "$WORK/cache/rootfs" 2>/dev/null | grep -v -e '\.log$' -e '\.lock$')
	[ -z "$left" ] || { echo "left in the cache: $left"; return 1; }
}

# expect_refused LOG PATTERN...: smolvm failed and said each PATTERN.
said() {
	local log=$1 p
	shift
	for p in "$@"; do
		grep -q -- "$p" "$log" || { echo "no \"$p\" in:"; show "$log" 30; return 1; }
	done
}

