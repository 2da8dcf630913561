#!/usr/bin/env bash
# Integration tests: boot real guests under KVM with build/smolvm.
#
#   tests/integration/run.sh [PATTERN]    run the tests whose name matches
#   TEST_FILES="tests/apps/*.test.sh" tests/integration/run.sh   other tests
#
# Each test is a function t_NAME in tests/integration/*.test.sh or
# tests/security/*.test.sh; it returns 0 (pass), 1 (fail) or 77
# (skip, with the reason printed). Without a usable /dev/kvm every test that
# needs it is a visible SKIP. Ends with "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.." || exit 1

SMOLVM=${SMOLVM:-build/smolvm}
GUEST=${GUEST:-build/guest}
WORK=$(mktemp -d /tmp/smolvm-it.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
pattern=${1:-}

pass=0 fail=0 skip=0
failed=()

kvm_usable() {
	[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
	# Opening is the real check (permissions, a broken module).
	{ exec 9<>/dev/kvm; } 2>/dev/null || return 1
	exec 9>&-
}

need_kvm() {
	if ! kvm_usable; then
		echo "SKIP: /dev/kvm cannot be opened (no KVM on this host or no permission)"
		return 77
	fi
}

# A throwaway machine script for a test guest.
guest_script() { # name kernel [extra lines]
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "64M",
  kernel = "$(realpath "$2")",
  devices = { { type = "uart" } },
}
LUA
	echo "$WORK/$1.lua"
}

# machine_script NAME KERNEL CMDLINE DEVICES [INITRD]: a machine script in
# $WORK with absolute paths; DEVICES is the Lua list's contents.
machine_script() {
	local initrd=""
	[ -n "${5:-}" ] && initrd="initrd = \"$(realpath "$5")\","
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "256M",
  kernel = "$(realpath "$2")",
  $initrd
  cmdline = "$3",
  devices = { $4 },
}
LUA
	echo "$WORK/$1.lua"
}

# run LOG TIMEOUT ARGS...: runs smolvm, stdout+stderr to LOG, returns its status.
run() {
	local log=$1 t=$2
	shift 2
	timeout -k 5 "$t" "$SMOLVM" "$@" > "$log" 2>&1 < /dev/null
}

show() { sed 's/^/    | /' "$1" | tail -n "${2:-20}"; }

# Tests live in tests/integration/*.test.sh (or $TEST_FILES), one file per
# area; each defines functions t_NAME.
for f in ${TEST_FILES:-tests/integration/*.test.sh tests/security/*.test.sh}; do
	# shellcheck source=/dev/null
	. "$f"
done

# ---- runner ------------------------------------------------------------------

[ -x "$SMOLVM" ] || { echo "no $SMOLVM: run make"; exit 1; }
for t in $(declare -F | awk '{print $3}' | grep '^t_'); do
	name=${t#t_}
	[ -n "$pattern" ] && [[ $name != *$pattern* ]] && continue
	start=$(date +%s.%N)
	out=$($t 2>&1)
	rc=$?
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS %-24s %6ss\n' "$name" "$secs" ;;
	77) skip=$((skip + 1)); printf 'SKIP %-24s %s\n' "$name" "$(echo "$out" | grep '^SKIP' | head -1)" ;;
	*) fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-24s %6ss\n' "$name" "$secs" ;;
	esac
	[ $rc -ne 77 ] && [ -n "$out" ] && echo "$out" | sed 's/^/    /'
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
