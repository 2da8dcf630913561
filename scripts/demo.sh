#!/usr/bin/env bash
# The README's first command (`make demo`): build smolvm and the default
# guest, boot the tiny test guest and the Linux guest, and say how fast.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
since() { echo "$1 $EPOCHREALTIME" | awk '{printf "%.2f", $2 - $1}'; }

say "building smolvm, its plugins and the test guests"
make -s all test-guests
say "building the default Linux guest (first time: several minutes)"
make -s guest-linux

say "plugins"
build/smolvm plugins | sed -n '1,/^$/p'

say "booting the ticker test guest (3 ticks)"
t0=$EPOCHREALTIME
first=""
while IFS= read -r line; do
	printf '    %s\n' "$line"
	[[ -z $first && $line == "tick 0"* ]] && first=$(since "$t0")
done < <(build/smolvm boot scripts/ticker.lua --append ticks=3 < /dev/null 2>&1)
echo "    first tick after ${first}s, done after $(since "$t0")s"

cpus=2
say "booting Linux with $cpus vCPUs and running a few commands in its shell"
echo "    (here the guest kernel is emulated by a software KVM: expect ~40 s)"
t0=$EPOCHREALTIME
ready=""
status=0
while IFS= read -r line; do
	printf '    %s\n' "${line%$'\r'}"
	[[ -z $ready && $line == "smolvm guest ready"* ]] && ready=$(since "$t0")
done < <(printf 'uname -sr\necho "answer: $((6*7))"\necho "cpus: $(nproc)"\n' |
	build/smolvm boot scripts/linux.lua --cpus "$cpus" 2>&1; echo "smolvm-exit: $?")
total=$(since "$t0")

say "summary"
echo "    Linux reached its shell after ${ready:-?}s; the whole run took ${total}s."
echo "    Snapshots (pack/run) are next on the roadmap: they resume a booted guest in milliseconds."
