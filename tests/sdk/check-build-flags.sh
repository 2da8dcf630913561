#!/usr/bin/env bash
# The compile line docs/plugin-guide.md gives plugin authors ("Building
# your plugin") builds a plugin that opens its descriptors close-on-exec.
#
#   tests/sdk/check-build-flags.sh [CFLAGS...]   (default: -Isdk/include)
#
# 1. Takes the language flags (-std=..., -D...) of that line and checks
#    that the examples' Makefiles (sdk/examples/*/Makefile, PLUGIN_FLAGS)
#    use the same ones.
# 2. Builds tests/sdk/cloexec_plugin.c (O_CLOEXEC, pipe2, accept4,
#    SOCK_CLOEXEC, EFD_CLOEXEC) with them, as a plugin (-shared -fPIC
#    -fvisibility=hidden -Wl,-z,defs), -Wall -Wextra -Werror.
# 3. Says whether strict -std=c11 without them would have failed (it does
#    with glibc: the reason the guide names them); informational only.
# Run by `make check-sdk`; CFLAGS replace `pkg-config --cflags`.
set -u
cd "$(dirname "$0")/../.." || exit 1
CC=${CC:-cc}
[ $# -gt 0 ] || set -- -Isdk/include
doc=docs/plugin-guide.md
src=tests/sdk/cloexec_plugin.c
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bad=0

line=$(sed -n '/^## Building your plugin/,/^## /p' "$doc" | grep -m1 '^cc ')
[ -n "$line" ] || { echo "check-build-flags: no cc line under \"Building your plugin\" in $doc"; exit 1; }
flags=()
for w in $line; do
	case $w in -std=* | -D*) flags+=("$w") ;; esac
done
[ ${#flags[@]} -gt 0 ] || { echo "check-build-flags: $doc: the cc line has no -std= or -D flag"; exit 1; }

for mk in sdk/examples/*/Makefile; do
	# PLUGIN_FLAGS = ... with its continuation lines
	pf=$(sed -n '/^PLUGIN_FLAGS *=/,/[^\\]$/p' "$mk" | tr '\\\n\t' '   ')
	for f in "${flags[@]}"; do
		[[ " $pf " == *" $f "* ]] || { echo "check-build-flags: $mk: PLUGIN_FLAGS lacks $f (the guide's cc line has it)"; bad=1; }
	done
done

plugin() { LC_ALL=C $CC "$@" -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden "$src" \
	-o "$out/cloexec.so" -Wl,-z,defs > "$out/log" 2>&1; }
if ! plugin "${flags[@]}" "$@"; then
	echo "check-build-flags: $src does not build with the guide's flags (${flags[*]}):"
	head -20 "$out/log"
	bad=1
elif ! nm -D --defined-only "$out/cloexec.so" | grep -q ' smolvm_plugin_v1$'; then
	echo "check-build-flags: $out/cloexec.so does not export smolvm_plugin_v1"
	bad=1
fi
if plugin -std=c11 "$@"; then
	note="this libc declares them under -std=c11 alone too"
else
	note="with -std=c11 alone: $(grep -m1 -oE "error: [^;[]*" "$out/log" | sed 's/^error: //')"
fi
[ $bad = 0 ] && echo "check-build-flags: a plugin using O_CLOEXEC, pipe2 and accept4 builds with ${flags[*]} (as the guide and the examples say; $note)"
exit $bad
