#!/usr/bin/env bash
# The core's dependency rule, checked on its #include lines:
#
#   main.c -> session -> {script, snapshot, agent} -> machine -> arch -> lib
#
# A file in core/ may include a header of its own folder or of a layer below
# its own, named by folder ("machine/vm.h"); never one of a layer above, nor
# of a sibling on the same level (script, snapshot and agent do not know each
# other). Headers in <...> (the system, libraries, the SDK) are not ours.
#
#   tests/check-layers.sh [CORE_DIR]   (default: core) prints each violation
#                                      and exits 1 if there is any
set -u
core=${1:-core}
rank() { # folder -> level (higher may include lower)
	case $1 in
	main) echo 6 ;; session) echo 5 ;; script | snapshot | agent) echo 4 ;;
	machine) echo 3 ;; arch) echo 2 ;; lib) echo 1 ;; *) echo 0 ;;
	esac
}
bad=0
err() { echo "check-layers: $*" >&2; bad=1; }

files=$(cd "$core" && find . -name '*.[ch]' | sed 's|^\./||' | sort)
[ -n "$files" ] || { err "no sources under $core"; exit 1; }
for f in $files; do
	case $f in
	*/*) own=${f%%/*} ;;
	*) own=main ;;
	esac
	r=$(rank "$own")
	[ "$r" -gt 0 ] || { err "$core/$f: in no layer (folders: session script snapshot agent machine arch lib)"; continue; }
	while IFS= read -r line; do
		n=${line%%:*}
		inc=$(printf '%s' "${line#*:}" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p')
		[ -n "$inc" ] || continue
		case $inc in
		*..*) err "$core/$f:$n: #include \"$inc\": name headers by their folder, without .."; continue ;;
		*/*) to=${inc%%/*} ;;
		*) err "$core/$f:$n: #include \"$inc\": name it by its folder (e.g. \"machine/vm.h\")"; continue ;;
		esac
		t=$(rank "$to")
		if [ "$t" -eq 0 ]; then
			err "$core/$f:$n: #include \"$inc\": $to/ is not a layer of the core"
		elif [ "$to" != "$own" ] && [ "$t" -ge "$r" ]; then
			if [ "$t" -eq "$r" ]; then
				err "$core/$f:$n: #include \"$inc\": $own/ and $to/ are on the same level and do not know each other"
			else
				err "$core/$f:$n: #include \"$inc\": points up ($own/ is below $to/; the rule: main -> session -> {script, snapshot, agent} -> machine -> arch -> lib)"
			fi
		fi
	done < <(grep -n '#[[:space:]]*include' "$core/$f")
done
exit $bad
