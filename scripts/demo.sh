#!/usr/bin/env bash
# The README's first command (`make demo`): build smolvm and the default
# guest, boot Linux, freeze it into a bundle, restore it, run commands in
# restored copies with `smolvm exec`; then build a machine of real software
# (Debian's python3 and a web service, scripts/examples/pyweb.lua), pack it
# warm and query the restored service; and say how fast.
set -euo pipefail
shopt -s lastpipe # `... | watch` sets $hit in this shell
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
since() { echo "$1 $EPOCHREALTIME" | awk '{printf "%.2f", $2 - $1}'; }
# Prints a command's output indented; remembers when a line matching $2
# first appeared (seconds since $1) in $hit.
watch() { # t0 pattern
	hit=""
	while IFS= read -r line; do
		printf '    %s\n' "${line%$'\r'}"
		[[ -z $hit && $line == *"$2"* ]] && hit=$(since "$1")
	done
	return 0
}

out=build/demo
mkdir -p "$out"
export SMOLVM_CACHE_DIR=$PWD/$out/cache

say "building smolvm, its plugins and the test guests"
make -s all test-guests
say "building the default Linux guest (the first time takes several minutes)"
make -s guest-linux

say "plugins"
build/smolvm plugins | sed -n '1,/^$/p'

say "the ticker test guest: boot, pack at 'tick 5', restore"
t0=$EPOCHREALTIME
build/smolvm pack scripts/ticker.lua -o "$out/ticker.smolmachine" < /dev/null 2>&1 | watch "$t0" "tick 5"
echo "    packed after ${hit}s"
t0=$EPOCHREALTIME
timeout -s TERM 1 build/smolvm run "$out/ticker.smolmachine" -v < /dev/null 2>&1 | head -8 | watch "$t0" "tick 6" || true
echo "    restored; its first line ('tick 6', not 'tick 0') came after ${hit}s"

cpus=2
say "booting Linux with $cpus vCPUs and packing it at its shell prompt"
echo "    (on this host the guest kernel is emulated by a software KVM: ~30 s)"
t0=$EPOCHREALTIME
build/smolvm pack scripts/linux.lua --cpus "$cpus" -o "$out/linux.smolmachine" \
	< /dev/null 2>&1 | watch "$t0" "root@smolvm:/# "
boot=$hit
ls -l "$out/linux.smolmachine" | awk '{printf "    bundle: %s, %.1f MiB\n", $9, $5 / 1048576}'

say "restoring it twice and running commands in its shell"
for n in 1 2; do
	t0=$EPOCHREALTIME
	printf 'echo "answer: $((6*7))"\n' |
		build/smolvm run "$out/linux.smolmachine" --pristine -v 2>&1 | watch "$t0" "answer: 42"
	echo "    restore $n: the answer came after ${hit}s"
	[ $n = 1 ] && first=$hit || second=$hit
done

say "smolvm exec: a fresh restore per command, through the guest agent"
t0=$EPOCHREALTIME
set +e
build/smolvm exec "$out/linux.smolmachine" -- sh -c 'echo "hello from $(hostname), exit 3"; exit 3' 2>&1 |
	watch "$t0" "hello from"
status=${PIPESTATUS[0]}
set -e
exec1=$(since "$t0")
echo "    exit status $status (the command's own); took ${exec1}s end to end"
t0=$EPOCHREALTIME
printf 'data' | build/smolvm exec "$out/linux.smolmachine" -- wc -c 2>&1 | watch "$t0" "4"
exec2=$(since "$t0")
echo "    stdin streamed into the guest: 'wc -c' counted it in ${exec2}s"

say "a machine of real software: Debian's python3 and a web service (scripts/examples/pyweb.lua)"
echo "    the root filesystem comes from the Debian archive (mmdebstrap; cached after the first"
echo "    time), then the guest boots into it, starts the service and is packed once it has"
echo "    answered a first request (the interpreter's start takes minutes where the guest kernel"
echo "    is emulated)"
t0=$EPOCHREALTIME
build/smolvm pack scripts/examples/pyweb.lua -o "$out/pyweb.smolmachine" < /dev/null 2>&1 |
	watch "$t0" "smolvm: saved"
pyboot=$hit
ls -l "$out/pyweb.smolmachine" | awk '{printf "    bundle: %s, %.1f MiB\n", $9, $5 / 1048576}'
for n in 1 2; do
	t0=$EPOCHREALTIME
	build/smolvm exec "$out/pyweb.smolmachine" -- \
		/run/smolvm/busybox wget -qO- http://127.0.0.1:8000/item/7 2>&1 | watch "$t0" "maple"
	echo "    restore $n: the service answered after ${hit}s"
	[ $n = 1 ] && pyfirst=$hit || pysecond=$hit
done

say "summary"
echo "    Linux booted to its shell in ${boot}s; restored from the bundle, the same shell"
echo "    answered in ${first}s (first restore: memory filled on demand and into the cache) and ${second}s"
echo "    (second: maps the cached memory). The 'restored ... in N ms' lines above are"
echo "    smolvm's own restore time, before the guest runs. smolvm exec restored it and"
echo "    ran a command through the guest agent in ${exec1}s, without any boot."
echo "    The Python service took ${pyboot}s from nothing to a packed bundle (image built, booted,"
echo "    started, ready); restored, it answered a query in ${pyfirst}s and ${pysecond}s."
