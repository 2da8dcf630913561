#!/usr/bin/env bash
# SMOLVM_FIELD() and SMOLVM_LIMIT() refuse a wrong type tag at compile time.
#
#   tests/sdk/check-field-tags.sh [CFLAGS...]   (default: -Isdk/include)
#
# Compiles tests/sdk/field_tags.c as strict C11 (-pedantic -Werror): as it
# is it must build; with each -DMISTAG=N (a uint32_t tagged U8, an array
# tagged U8, ...) it must fail, and say why. Run by `make check-sdk` and,
# against the installed headers, by tests/integration/sdk.test.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
CC=${CC:-cc}
[ $# -gt 0 ] || set -- -Isdk/include
src=tests/sdk/field_tags.c
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc_() { $CC -std=c11 -pedantic -Wall -Wextra -Werror "$@" -c "$src" -o "$out/f.o"; }

if ! cc_ "$@" > "$out/log" 2>&1; then
	echo "check-field-tags: well-tagged fields do not compile:"
	cat "$out/log"
	exit 1
fi
bad=0
for n in 1 2 3 4 5 6 7; do
	if cc_ "$@" -DMISTAG=$n > "$out/log" 2>&1; then
		echo "check-field-tags: MISTAG=$n compiled: $(grep -A1 "MISTAG == $n\$" "$src" | tail -1 | sed 's/^[[:space:]]*//')"
		bad=1
	elif ! grep -qE 'the type tag does not match|not an integer member' "$out/log"; then
		echo "check-field-tags: MISTAG=$n failed for another reason:"
		head -5 "$out/log"
		bad=1
	fi
done
[ $bad = 0 ] && echo "check-field-tags: 7 mistagged fields refused at compile time, the rest compile"
exit $bad
