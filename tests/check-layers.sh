#!/usr/bin/env bash
# The core's dependency rule, checked on its #include lines:
#
#   main.c -> session -> registry -> {script, snapshot, agent, rootfs} -> machine -> arch -> lib
#
# (registry: bundles through OCI registries, on top of snapshot)
#
# A file in core/ may include a header of its own folder or of a layer below
# its own, named by folder ("machine/vm.h"); never one of a layer above, nor
# of a sibling on the same level (script, snapshot, agent and rootfs do not
# know each other). Headers in <...> are the system's, libraries' and the SDK's; the
# core's own are never included that way (the build gives them -iquote), an
# include it cannot read (a macro) is refused, only .c and .h files live in
# core/, and only main.c at its top.
#
#   tests/check-layers.sh [CORE_DIR]   (default: core) prints each violation
#                                      and exits 1 if there is any
set -u
core=${1:-core}
rank() { # folder -> level (higher may include lower)
	case $1 in
	main) echo 7 ;; session) echo 6 ;; registry) echo 5 ;; script | snapshot | agent | rootfs) echo 4 ;;
	machine) echo 3 ;; arch) echo 2 ;; lib) echo 1 ;; *) echo 0 ;;
	esac
}
bad=0
err() { echo "check-layers: $*" >&2; bad=1; }

files=$(cd "$core" && find . -type f | sed 's|^\./||' | sort)
[ -n "$files" ] || { err "no sources under $core"; exit 1; }
for f in $files; do
	case $f in
	main.c) own=main ;;
	*/*) own=${f%%/*} ;;
	*) err "$core/$f: only main.c lives at the top of core/; put it in a layer's folder"; continue ;;
	esac
	r=$(rank "$own")
	[ "$r" -gt 0 ] || { err "$core/$f: in no layer (folders: session registry script snapshot agent rootfs machine arch lib)"; continue; }
	case $f in
	*.c | *.h) ;;
	*) err "$core/$f: only .c and .h files belong in core/"; continue ;;
	esac
	while IFS= read -r line; do
		n=${line%%:*}
		text=${line#*:}
		inc=$(printf '%s' "$text" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p')
		if [ -z "$inc" ]; then
			sys=$(printf '%s' "$text" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p')
			if [ -z "$sys" ]; then
				err "$core/$f:$n: an #include of neither \"...\" nor <...> (a macro?) cannot be checked"
			elif [ -d "$core/${sys%%/*}" ] && [ "${sys%%/*}" != "$sys" ]; then
				err "$core/$f:$n: #include <$sys>: the core's own headers are included with \"...\""
			fi
			continue
		fi
		case $inc in
		*..*) err "$core/$f:$n: #include \"$inc\": name headers by their folder, without .."; continue ;;
		*.h) ;;
		*) err "$core/$f:$n: #include \"$inc\": only headers are included"; continue ;;
		esac
		case $inc in
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
				err "$core/$f:$n: #include \"$inc\": points up ($own/ is below $to/; the rule: main -> session -> registry -> {script, snapshot, agent, rootfs} -> machine -> arch -> lib)"
			fi
		fi
	done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$core/$f")
done
exit $bad
