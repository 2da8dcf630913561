#!/usr/bin/env bash
# Integration tests: boot real guests under KVM with build/smolvm.
#
#   tests/integration/run.sh [PATTERN]    run the tests whose name matches
#   TEST_FILES="tests/apps/*.test.sh" tests/integration/run.sh   other tests
#   SMOLVM_TEST_JOBS=1 tests/integration/run.sh   one test at a time (default:
#                                         2 lanes side by side, see below)
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
# area; each defines functions t_NAME. A file's tests run in one lane, in
# name order (a test may reuse what an earlier one of its lane left in
# $WORK).
declare -A tests_of=()
files=()
for f in ${TEST_FILES:-tests/integration/*.test.sh tests/security/*.test.sh}; do
	before=$(declare -F | awk '$3 ~ /^t_/ {print $3}')
	# shellcheck source=/dev/null
	. "$f"
	tests_of[$f]=$(comm -13 <(echo "$before") <(declare -F | awk '$3 ~ /^t_/ {print $3}'))
	files+=("$f")
done

# ---- lanes -------------------------------------------------------------------
#
# Most of the time goes to Linux guests whose kernel is emulated, one host CPU
# each: with SMOLVM_TEST_JOBS lanes (default: 2 where the host has 2 CPUs or
# more) the files run side by side, each lane in its own $WORK. Files are
# dealt out longest first by the rough cost below (seconds on the
# development hosts); a file listed with "+" after another runs in its lane,
# after it (it restores what the first one packed).

cost_of() {
	case $(basename "$1" .test.sh) in
	rootfs) echo 1000 ;; blk) echo 450 ;; linux) echo 300 ;; console) echo 250 ;;
	exec) echo 250 ;; net) echo 230 ;; volumes) echo 220 ;; guest_boundary) echo 190 ;;
	snapshot) echo 170 ;; grants) echo 100 ;; compute) echo 60 ;; lineage) echo 40 ;;
	sdk) echo 35 ;; registry) echo 25 ;; *) echo 15 ;;
	esac
}
follows() { # the file whose lane this one joins, if any
	case $(basename "$1" .test.sh) in
	grants) echo tests/integration/net.test.sh ;;
	esac
}

jobs=${SMOLVM_TEST_JOBS:-$(($(nproc) >= 2 ? 2 : 1))}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "SMOLVM_TEST_JOBS=$jobs: want a number of lanes, 1 or more"; exit 1; }
declare -a load lane_files
for ((i = 0; i < jobs; i++)); do load[i]=0 lane_files[i]=""; done
declare -A lane_of=()
for f in $(for f in "${files[@]}"; do echo "$(cost_of "$f") $f"; done | sort -k1,1nr -k2 | cut -d' ' -f2); do
	lead=$(follows "$f")
	if [ -n "$lead" ] && [ -n "${lane_of[$lead]:-}" ]; then
		l=${lane_of[$lead]}
	else
		l=0
		for ((i = 1; i < jobs; i++)); do [ "${load[i]}" -lt "${load[l]}" ] && l=$i; done
	fi
	lane_of[$f]=$l
	load[l]=$((load[l] + $(cost_of "$f")))
	lane_files[l]+=" $f"
done

# One lane: its tests in name order; each result is printed whole (under a
# lock, so lanes do not interleave) and counted in $ROOT/lane.N.
ROOT=$WORK
run_lane() { # N FILES...
	local n=$1 t name start out rc secs block
	shift
	WORK=$ROOT/lane$n
	mkdir -p "$WORK"
	for t in $(for f in "$@"; do echo "${tests_of[$f]}"; done | sort); do
		name=${t#t_}
		[ -n "$pattern" ] && [[ $name != *$pattern* ]] && continue
		start=$(date +%s.%N)
		out=$($t 2>&1)
		rc=$?
		secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
		case $rc in
		0) block=$(printf 'PASS %-24s %6ss' "$name" "$secs") ;;
		77) block=$(printf 'SKIP %-24s %s' "$name" "$(echo "$out" | grep '^SKIP' | head -1)") ;;
		*) block=$(printf 'FAIL %-24s %6ss' "$name" "$secs") ;;
		esac
		[ $rc -ne 77 ] && [ -n "$out" ] && block+=$'\n'$(echo "$out" | sed 's/^/    /')
		echo "$rc $name" >> "$ROOT/lane.$n"
		{ flock 8; echo "$block"; } 8> "$ROOT/print.lock"
	done
}

[ -x "$SMOLVM" ] || { echo "no $SMOLVM: run make"; exit 1; }
[ "$jobs" -gt 1 ] && echo "integration: $jobs lanes side by side (SMOLVM_TEST_JOBS=1 runs one after another)"
lanes=()
for ((i = 0; i < jobs; i++)); do
	# shellcheck disable=SC2086
	run_lane "$i" ${lane_files[i]} &
	lanes+=($!)
done
trap 'kill "${lanes[@]}" 2> /dev/null; rm -rf "$ROOT"' EXIT
wait "${lanes[@]}"

pass=0 fail=0 skip=0
failed=()
while read -r rc name; do
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)); failed+=("$name") ;;
	esac
done < <(cat "$ROOT"/lane.* 2> /dev/null)
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
