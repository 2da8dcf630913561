#!/usr/bin/env bash
# The core's own plugins use nothing but the SDK (DESIGN.md: "plugins see
# only sdk/include"; a device gets what it needs through the host API).
#
#   tests/sdk/check-plugins.sh [BUILD [EXTRA.so ...]]
#
# Fails, naming the file, when
#  1. a source under plugins/ or backends/ includes a header that is not its
#     own folder's, not <smolvm/...> from sdk/include, and not a system header
#     (found by the compiler without any -I): e.g. "../../core/vm.h" or <vm.h>;
#  2. the compiler's own dependency list for a built plugin object
#     ($BUILD/plugins/obj/**/*.d, -MMD) names a file of this tree outside
#     sdk/include and the plugin's folder (catches a -I into core/ too);
#  3. a plugin .so ($BUILD/plugins/*.so, and EXTRA.so: e.g. out-of-tree
#     plugins) has an undefined dynamic symbol that a core object defines
#     (the smolvm binary exports its symbols: -rdynamic), or exports any
#     symbol but smolvm_plugin_v1 (built without -fvisibility=hidden).
# Run by `make check-sdk` and by tests/integration/sdk.test.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
[ $# -gt 0 ] && shift
CC=${CC:-cc}
bad=0
err() { echo "check-plugins: $*"; bad=1; }

# ---- 1. #include lines -----------------------------------------------------------
declare -A sys_ok=()
srcs=$(find ${SDK_CHECK_SRC_DIRS:-plugins backends} -name '*.[ch]' | sort)
[ -n "$srcs" ] || { err "no sources under plugins/ or backends/"; exit 1; }
for f in $srcs; do
	dir=$(dirname "$f")
	# "#  include" too; the header name is the 2nd field after the directive.
	while IFS=: read -r line inc; do
		name=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*//' <<< "$inc")
		case $name in
		\"*\")
			h=${name#\"}; h=${h%\"}
			if [[ $h == */* ]] || [ ! -f "$dir/$h" ]; then
				err "$f:$line: #include $name: a plugin's own headers live in its folder ($dir/)"
			fi ;;
		\<smolvm/*\>)
			h=${name#<}; h=${h%>}
			[ -f "sdk/include/$h" ] || err "$f:$line: #include $name: not an SDK header (sdk/include/smolvm/)" ;;
		\<*\>)
			h=${name#<}; h=${h%>}
			if [ -z "${sys_ok[$h]+x}" ]; then
				if printf '#include <%s>\n' "$h" | $CC -E -x c - -o /dev/null 2> /dev/null; then
					sys_ok[$h]=1
				else
					sys_ok[$h]=0
				fi
			fi
			[ "${sys_ok[$h]}" = 1 ] ||
				err "$f:$line: #include $name: neither an SDK header nor a system header" ;;
		*)
			err "$f:$line: #include $name: computed or malformed include" ;;
		esac
	done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$f")
done

# ---- 2. what the compiler actually read ------------------------------------------
root=$(pwd -P)
for f in $(find ${SDK_CHECK_SRC_DIRS:-plugins backends} -name '*.c' | sort); do
	d=$BUILD/plugins/obj/${f%.c}.d
	if [ ! -f "$d" ]; then
		err "$f: no $d (build first: make)"
		continue
	fi
	own=$(dirname "$f")
	# Dependencies: every word after the "target:" up to the first blank line.
	for dep in $(sed -e '/^$/,$d' -e 's/\\$//' -e 's/^[^ ]*://' "$d"); do
		case $dep in
		/*) abs=$dep ;;
		*) abs=$root/$dep ;;
		esac
		abs=$(realpath -m "$abs")
		case $abs in
		"$root"/sdk/include/*) ;;
		"$root/$own"/*) ;;
		"$root"/*) err "$f: compiled with ${abs#"$root"/}, which is neither in sdk/include nor in $own/" ;;
		*) ;; # outside the tree: system and library headers
		esac
	done
done

# ---- 3. symbols ------------------------------------------------------------------
core_syms=$(find "$BUILD"/core -name "*.o" -exec nm -g --defined-only {} + 2> /dev/null | awk 'NF == 3 { print $3 }' | sort -u)
[ -n "$core_syms" ] || err "no core objects in $BUILD/core (build first: make)"
sos=$(ls "$BUILD"/plugins/*.so 2> /dev/null)
[ -n "$sos" ] || err "no plugins in $BUILD/plugins (build first: make)"
for so in $sos "$@"; do
	undef=$(nm -D --undefined-only "$so" | awk '{ sub(/@.*/, "", $NF); print $NF }' | sort -u)
	both=$(comm -12 <(echo "$core_syms") <(echo "$undef"))
	[ -z "$both" ] || err "$so: uses core symbols (only the host API table is allowed): $(echo $both)"
	exported=$(nm -D --defined-only "$so" | awk '{ print $NF }' | grep -vx 'smolvm_plugin_v1')
	[ -z "$exported" ] || err "$so: exports more than smolvm_plugin_v1 (-fvisibility=hidden?): $(echo $exported | head -c 200)"
	nm -D --defined-only "$so" | grep -q ' smolvm_plugin_v1$' || err "$so: no smolvm_plugin_v1"
done

if [ $bad = 0 ]; then
	echo "check-plugins: $(echo "$srcs" | wc -l) sources and $(echo $sos "$@" | wc -w) plugins use only the SDK"
fi
exit $bad
