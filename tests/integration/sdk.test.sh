# The plugin SDK as a third party meets it: `make install` into a temporary
# DESTDIR, the example plugins (sdk/examples) built from that installed tree
# with pkg-config alone, the installed binary running them, their state
# across pack/run and a state-version upgrade; the ABI layout, the in-tree
# plugins' use of nothing but the SDK, the docs' code and the man page.
# Sourced by run.sh. Tests that boot a guest need KVM (else a visible SKIP);
# the others run anywhere.

SDK_GUEST=${SDK_GUEST:-$GUEST/sdkguest.elf}

# sdk_make ARGS...: make in the source tree, quietly; without the parent
# make's jobserver (not passed to run.sh), keeping its variables (PREFIX=...).
sdk_make() {
	MAKEFLAGS=$(sed -E 's/--jobserver-(auth|fds)=[^ ]*//g; s/(^| )-j[0-9]*//g' <<< "${MAKEFLAGS:-}") \
		make --no-print-directory -s "$@"
}

# sdk_stage: `make install DESTDIR=$WORK/stage`, once per run; prints the
# staging directory. The installed paths are found, not assumed.
sdk_stage() {
	local s=$WORK/stage
	if [ ! -f "$s/.ok" ]; then
		rm -rf "$s"
		sdk_make install DESTDIR="$s" > "$WORK/install.log" 2>&1 ||
			{ echo "make install DESTDIR=$s failed:"; show "$WORK/install.log"; return 1; }
		touch "$s/.ok"
	fi
	echo "$s"
}

# sdk_env STAGE: the environment of someone who installed smolvm there:
# pkg-config and PATH into the staged tree, no plugin path, no host config.
sdk_env() {
	local s=$1 pc bin
	pc=$(find "$s" -name smolvm-plugin.pc | head -1)
	bin=$(find "$s" -path '*/bin/smolvm' | head -1)
	[ -n "$pc" ] && [ -n "$bin" ] || { echo "no smolvm-plugin.pc or bin/smolvm under $s"; return 1; }
	PKG_CONFIG_PATH=$(dirname "$pc")
	PATH=$(dirname "$bin"):$PATH
	export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR=$s PATH
	export SMOLVM_BIN=$bin SMOLVM_CACHE_DIR=$WORK/cache
	unset SMOLVM_PLUGIN_PATH PKG_CONFIG_LIBDIR
	: > "$WORK/empty.ini"
	export SMOLVM_CONFIG=$WORK/empty.ini
}

# sdk_examples: the examples, copied out of the staged docdir and built
# there with their own Makefiles (each: state version 2 in ., 1 in v1/);
# once per run. Prints the directory holding tally/ and seqrng/.
sdk_examples() {
	local s ex=$WORK/examples d
	s=$(sdk_stage) || { echo "$s"; return 1; }
	if [ ! -f "$ex/.ok" ]; then
		(
			sdk_env "$s" || exit 1
			rm -rf "$ex"
			cp -r "$s$(pkg-config --variable=docdir smolvm-plugin | sed "s|^$s||")/examples" "$ex" || exit 1
			for d in tally seqrng; do
				make -C "$ex/$d" CFLAGS="-O2 -g -Werror -MD" > "$WORK/ex-$d.log" 2>&1 ||
					{ echo "building the $d example failed:"; show "$WORK/ex-$d.log" 30; exit 1; }
			done
		) || return 1
		touch "$ex/.ok"
	fi
	echo "$ex"
}

# sdk_script NAME KERNEL CMDLINE READY DEVICES: a machine script in $WORK
# (READY may be empty).
sdk_script() {
	local ready=""
	[ -z "$4" ] || ready="ready = \"$4\","
	cat > "$WORK/$1.lua" <<LUA
machine {
  name = "$1",
  memory = "64M",
  kernel = "$(realpath "$2")",
  cmdline = "$3",
  $ready
  devices = { { type = "uart" }, $5 },
}
LUA
	echo "$WORK/$1.lua"
}

SDK_DEVICES='{ type = "tally", port = 0x700 }, { type = "seqrng", start = 0x40 }'

# sdk_need_guest: KVM, the SDK test guest, the staged tree and the examples.
sdk_need_guest() {
	need_kvm || return
	[ -f "$SDK_GUEST" ] || { echo "missing $SDK_GUEST (make sdk-guest)"; return 1; }
	EX=$(sdk_examples) || { echo "$EX"; return 1; }
	sdk_env "$WORK/stage" || return 1
}

# ---- install -----------------------------------------------------------------

t_sdk_install_tree() {
	local s f missing=0
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	for f in bin/smolvm lib/smolvm/kvm.so lib/smolvm/uart.so include/smolvm/plugin.h \
		include/smolvm/state.h include/smolvm/virtio.h lib/libsmolvm-sdk.a \
		lib/pkgconfig/smolvm-plugin.pc share/man/man1/smolvm.1 \
		share/smolvm/scripts/ticker.lua share/doc/smolvm/plugin-guide.md \
		share/doc/smolvm/abi.md share/doc/smolvm/examples/tally/Makefile \
		share/doc/smolvm/examples/seqrng/seqrng.c; do
		[ -n "$(find "$s" -path "*/$f" | head -1)" ] || { echo "not installed: $f"; missing=1; }
	done
	[ $missing = 0 ] || { find "$s" -type f | sed "s|^$s||"; return 1; }
	# The installed binary finds the installed plugins with no variable set.
	"$SMOLVM_BIN" plugins > "$WORK/inst-plugins.log" 2>&1
	grep -Eq "^kvm +backend .* $s/.*lib/smolvm/kvm.so$" "$WORK/inst-plugins.log" &&
		grep -Eq "^uart +device .* $s/.*lib/smolvm/uart.so$" "$WORK/inst-plugins.log" ||
		{ echo "the installed smolvm does not find its plugins:"; show "$WORK/inst-plugins.log"; return 1; }
	# pkg-config agrees with the binary on the ABI.
	local abi
	abi=$(pkg-config --variable=abi_major smolvm-plugin).$(pkg-config --variable=abi_minor smolvm-plugin)
	"$SMOLVM_BIN" version | grep -qF "plugin ABI $abi)" ||
		{ echo "pkg-config says ABI $abi, smolvm says: $("$SMOLVM_BIN" version)"; return 1; }
	echo "$(find "$s" -type f ! -name .ok | wc -l) files; pkg-config smolvm-plugin $(pkg-config --modversion smolvm-plugin), ABI $abi"
}

# The SDK's test guest built out of the tree from the installed guest kit
# alone (a Makefile that includes the kit's fragment; no dependency file
# names the source tree), booted by the installed smolvm with the example
# plugins it drives.
t_sdk_guest_kit() {
	sdk_need_guest || return
	local kit k=$WORK/kit log=$WORK/kit.log deps tree s
	kit=$(pkg-config --variable=guestkitdir smolvm-plugin)
	[ -f "$kit/guest-kit.mk" ] || { echo "no guest-kit.mk in guestkitdir $kit"; return 1; }
	rm -rf "$k" && mkdir -p "$k" && cp "$kit/sdkguest.c" "$k/myguest.c" || return 1
	cat > "$k/Makefile" <<'MK'
GUEST_KIT := $(shell pkg-config --variable=guestkitdir smolvm-plugin)
include $(GUEST_KIT)/guest-kit.mk
OBJS := $(call guest_kit_objs,myguest.c $(GUEST_KIT_RUNTIME) $(GUEST_KIT_VIRTIO))
guest-obj/myguest.o: GUEST_CFLAGS += $(GUEST_USER_CFLAGS)
myguest.elf: $(OBJS)
	$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $^
MK
	make -C "$k" > "$log" 2>&1 || { show "$log" 30; return 1; }
	tree=$(pwd -P)
	deps=$(cat "$k"/guest-obj/*.d "$k"/guest-obj/common/*.d)
	[ -n "$deps" ] && ! grep -qF "$tree" <<< "$deps" ||
		{ echo "the guest's dependencies name the source tree $tree:"; grep -F "$tree" <<< "$deps" | head; return 1; }
	grep -qF "$kit/common/guest.h" <<< "$deps" || { echo "guest.h not from $kit"; return 1; }
	s=$(sdk_script kitguest "$k/myguest.elf" "rounds=3" "" "$SDK_DEVICES")
	SMOLVM_PLUGIN_PATH=$EX/tally:$EX/seqrng timeout -k 5 60 "$SMOLVM_BIN" boot "$s" > "$log" 2>&1 ||
		{ show "$log"; return 1; }
	grep -q '^round 2: tally 2 scratch 5eed0001 v2 seqrng 48 49 4a 4b' "$log" || { show "$log"; return 1; }
}

# The installed scripts find the installed guests ("guest:NAME"): the
# ticker runs, the Linux kernel starts (its boot to a shell is the Linux
# tests' business).
t_sdk_installed_scripts() {
	need_kvm || return
	local s log=$WORK/inst-scripts.log dir
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	dir=$(dirname "$(find "$s" -path '*/share/smolvm/scripts/ticker.lua' | head -1)")
	[ -f "$dir/ticker.lua" ] && [ ! -e "$dir/linux-net-disk.lua" ] ||
		{ echo "installed scripts: $(ls "$dir")"; return 1; }
	(cd / && timeout -k 5 30 "$SMOLVM_BIN" boot "$dir/ticker.lua" --append ticks=2) > "$log" 2>&1 &&
		grep -q '^tick 1' "$log" || { echo "ticker.lua:"; show "$log"; return 1; }
	[ -f "$GUEST/vmlinux" ] || { echo "missing $GUEST/vmlinux: run 'make guest'"; return 1; }
	# the kernel's first lines reach the console once it is set up (seconds
	# to a minute where the guest kernel is emulated): stopped once seen
	(cd / && exec timeout -k 5 120 "$SMOLVM_BIN" boot "$dir/linux.lua" < /dev/null) > "$log" 2>&1 &
	local pid=$! i
	for ((i = 0; i < 240; i++)); do
		grep -q 'Linux version' "$log" && break
		kill -0 $pid 2> /dev/null || break
		sleep 0.5
	done
	kill $pid 2> /dev/null
	wait $pid 2> /dev/null
	grep -q 'Linux version' "$log" || { echo "linux.lua:"; show "$log"; return 1; }
}

# install then uninstall leaves no file of ours behind, and keeps what is
# not ours (a third-party plugin in the plugin directory).
t_sdk_uninstall() {
	local d=$WORK/stage-un left pdir
	sdk_make install DESTDIR="$d" > "$WORK/un.log" 2>&1 || { show "$WORK/un.log"; return 1; }
	pdir=$(dirname "$(find "$d" -name kvm.so | head -1)")
	[ -d "$pdir" ] || { echo "nothing installed"; return 1; }
	: > "$pdir/third-party.so"
	sdk_make uninstall DESTDIR="$d" >> "$WORK/un.log" 2>&1 || { show "$WORK/un.log"; return 1; }
	left=$(find "$d" -type f)
	[ "$left" = "$pdir/third-party.so" ] || { echo "left after uninstall:"; echo "$left"; return 1; }
	rm "$pdir/third-party.so"
	sdk_make uninstall DESTDIR="$d" >> "$WORK/un.log" 2>&1 || { show "$WORK/un.log"; return 1; }
	[ ! -d "$pdir" ] || { echo "empty plugin directory not removed"; return 1; }
}

# ---- the examples, built from the installed tree ---------------------------------

t_sdk_examples_build() {
	local ex s d dep bad=0
	ex=$(sdk_examples) || { echo "$ex"; return 1; }
	s=$WORK/stage
	sdk_env "$s" || return 1
	# The compiler read smolvm headers from the staged tree only, and no
	# file of this source tree at all.
	local root staged=0
	root=$(pwd -P)
	for d in tally seqrng; do
		# Paths in the .d files are relative to the directory make ran in.
		for dep in $(cd "$ex/$d" && sed -e 's/^[^:]*://' -e 's/\\$//' ./*.d v1/*.d | sort -u); do
			[[ $dep == /* ]] || dep=$ex/$d/$dep
			case $(realpath -m "$dep") in
			"$root"/*) echo "built with a file of the source tree: $dep"; bad=1 ;;
			*/smolvm/*.h) [[ $dep == "$s"/* ]] && staged=1 ||
				{ echo "SDK header from outside the staged tree: $dep"; bad=1; } ;;
			esac
		done
	done
	[ $staged = 1 ] || { echo "no staged SDK header in the dependency files (-MD)"; return 1; }
	[ $bad = 0 ] || return 1
	# Third-party plugins obey the same rules as ours.
	tests/sdk/check-plugins.sh build "$ex"/tally/tally.so "$ex"/tally/v1/tally.so \
		"$ex"/seqrng/seqrng.so "$ex"/seqrng/v1/seqrng.so > "$WORK/ex-check.log" 2>&1 ||
		{ show "$WORK/ex-check.log"; return 1; }
	SMOLVM_PLUGIN_PATH=$ex/tally:$ex/seqrng/v1 "$SMOLVM_BIN" plugins > "$WORK/ex-plugins.log" 2>&1
	grep -Eq '^tally +device +2\.0\.0 +1\.[0-9]+ ' "$WORK/ex-plugins.log" &&
		grep -Eq '^seqrng +device +1\.0\.0 +1\.[0-9]+ ' "$WORK/ex-plugins.log" ||
		{ show "$WORK/ex-plugins.log"; return 1; }
	grep -E '^(tally|seqrng) ' "$WORK/ex-plugins.log"
}

# ---- the guest sees the devices --------------------------------------------------

# The virtio test guest's rng test reads seqrng's stream: 40 41 42 43 ...
t_sdk_seqrng_virtio_guest() {
	sdk_need_guest || return
	local log=$WORK/sdk-vrng.log s
	[ -f "$GUEST/virtio.elf" ] || { echo "missing $GUEST/virtio.elf (make test-guests)"; return 1; }
	s=$(sdk_script sdkvrng "$GUEST/virtio.elf" "" "" '{ type = "seqrng", start = 0x40 }')
	SMOLVM_PLUGIN_PATH=$EX/seqrng timeout -k 5 60 "$SMOLVM_BIN" boot "$s" > "$log" 2>&1 < /dev/null
	local rc=$?
	if [ $rc -ne 0 ] || ! grep -q '^virtio: done' "$log" || grep -q '^FAIL' "$log"; then
		echo "exit $rc"; show "$log"; return 1
	fi
	grep -q '^PASS: rng (64 bytes in 1 request: 40 41 42 43 ...)' "$log" || { show "$log"; return 1; }
	grep '^PASS: rng' "$log"
}

# The SDK guest drives both examples: tally's registers, seqrng's queue.
t_sdk_examples_guest() {
	sdk_need_guest || return
	local log=$WORK/sdk-guest.log s
	s=$(sdk_script sdkguest "$SDK_GUEST" "rounds=3" "" "$SDK_DEVICES")
	SMOLVM_PLUGIN_PATH=$EX/tally:$EX/seqrng timeout -k 5 60 "$SMOLVM_BIN" boot "$s" > "$log" 2>&1 < /dev/null
	local rc=$? l
	[ $rc -eq 0 ] && ! grep -q FAIL "$log" || { echo "exit $rc"; show "$log"; return 1; }
	for l in "round 0: tally 0 scratch 5eed0001 v2 seqrng 40 41 42 43" \
		 "round 1: tally 1 scratch 5eed0001 v2 seqrng 44 45 46 47" \
		 "round 2: tally 2 scratch 5eed0001 v2 seqrng 48 49 4a 4b" "sdkguest: done"; do
		grep -qx "$l" <(tr -d '\r' < "$log") || { echo "missing '$l'"; show "$log"; return 1; }
	done
}

# ---- save/restore and state versions ------------------------------------------

# sdk_pack VERSION_DIR_TALLY VERSION_DIR_SEQRNG BUNDLE: pack the SDK guest
# with those builds at "round 3".
sdk_pack() {
	local s
	s=$(sdk_script sdkpack "$SDK_GUEST" "rounds=8" "round 3" "$SDK_DEVICES")
	SMOLVM_PLUGIN_PATH=$1:$2 timeout -k 5 60 "$SMOLVM_BIN" pack "$s" -o "$3" \
		> "$3.log" 2>&1 < /dev/null || { echo "pack failed:"; show "$3.log"; return 1; }
}

# First complete round line of a log (a restore may finish a line the
# pack began).
first_round() { tr -d '\r' < "$1" | grep -m1 '^round '; }

# A machine packed with the version-1 builds runs with version 2: both
# devices go on where they were, and their restore hooks saw version 1.
t_sdk_state_upgrade() {
	sdk_need_guest || return
	local b=$WORK/sdk-v1.smolmachine log=$WORK/sdk-up.log first
	sdk_pack "$EX/tally/v1" "$EX/seqrng/v1" "$b" || return 1
	grep -q '^round 2: tally 2 scratch 5eed0001 v1 seqrng 48 49 4a 4b' "$b.log" || { show "$b.log"; return 1; }
	"$SMOLVM_BIN" inspect "$b" | grep -A4 '^\[device.tally0\]' | grep -q '^state_version = 1' ||
		{ echo "manifest does not record tally state version 1"; "$SMOLVM_BIN" inspect "$b" | head -40; return 1; }
	SMOLVM_PLUGIN_PATH=$EX/tally:$EX/seqrng timeout -k 5 60 "$SMOLVM_BIN" run "$b" --pristine -v -v \
		> "$log" 2>&1 < /dev/null
	local rc=$?
	first=$(first_round "$log")
	if [ $rc -ne 0 ] || [ "$first" != "round 4: tally 4 scratch 5eed0001 v2 seqrng 50 51 52 53" ] ||
	   ! grep -q '^sdkguest: done' "$log"; then
		echo "exit $rc; first round after restore: '$first'"; show "$log"; return 1
	fi
	grep -q 'tally 2.0.0 restored state version 1: count 4, step 1' "$log" &&
		grep -q 'seqrng 2.0.0 restored state version 1: position 16, 0 requests' "$log" ||
		{ echo "restore hooks did not report version-1 state"; show "$log"; return 1; }
	grep -E 'restored state version|^round 4' "$log" | sed 's/^smolvm: //'
}

# A bundle written by version 2 is refused by version 1, before anything
# runs, with both versions named; version 2 itself restores it.
t_sdk_state_newer_refused() {
	sdk_need_guest || return
	local b=$WORK/sdk-v2.smolmachine log=$WORK/sdk-down.log rc
	sdk_pack "$EX/tally" "$EX/seqrng" "$b" || return 1
	SMOLVM_PLUGIN_PATH=$EX/tally/v1:$EX/seqrng timeout -k 5 30 "$SMOLVM_BIN" run "$b" --pristine \
		> "$log" 2>&1 < /dev/null
	rc=$?
	[ $rc -eq 1 ] && grep -q 'tally0: saved state version 2, plugin tally 1.0.0 reads versions 1 to 1' "$log" &&
		! grep -q '^round' "$log" || { echo "tally v1: exit $rc"; show "$log"; return 1; }
	grep 'saved state version' "$log"
	SMOLVM_PLUGIN_PATH=$EX/tally:$EX/seqrng/v1 timeout -k 5 30 "$SMOLVM_BIN" run "$b" --pristine \
		> "$log" 2>&1 < /dev/null
	rc=$?
	[ $rc -eq 1 ] && grep -q 'seqrng0: saved state version 2, plugin seqrng 1.0.0 reads versions 1 to 1' "$log" ||
		{ echo "seqrng v1: exit $rc"; show "$log"; return 1; }
	grep 'saved state version' "$log"
	SMOLVM_PLUGIN_PATH=$EX/tally:$EX/seqrng timeout -k 5 60 "$SMOLVM_BIN" run "$b" --pristine \
		> "$log" 2>&1 < /dev/null
	rc=$?
	[ $rc -eq 0 ] && [ "$(first_round "$log")" = "round 4: tally 4 scratch 5eed0001 v2 seqrng 50 51 52 53" ] ||
		{ echo "v2 -> v2: exit $rc"; show "$log"; return 1; }
}

# ---- ABI ---------------------------------------------------------------------

# The ABI 1.0 layout, SMOLVM_HAS and `since`, built against the installed
# headers as strict C11; plugin.h and state.h also as C++.
t_sdk_abi_layout() {
	local s
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	# shellcheck disable=SC2046
	cc -std=c11 -pedantic -Wall -Wextra -Werror $(pkg-config --cflags smolvm-plugin) \
		tests/sdk/abi_layout.c -o "$WORK/abi_layout" -pthread > "$WORK/abi.log" 2>&1 ||
		{ show "$WORK/abi.log"; return 1; }
	"$WORK/abi_layout" || return 1
	if command -v c++ > /dev/null; then
		# shellcheck disable=SC2046
		printf '#include <smolvm/plugin.h>\n#include <smolvm/state.h>\nint f(const struct smolvm_host_api *a) { return SMOLVM_HAS(a, config_path); }\n' |
			c++ -std=c++11 -Wall -Wextra -Werror $(pkg-config --cflags smolvm-plugin) -x c++ -c - \
				-o "$WORK/abi-cxx.o" > "$WORK/abi-cxx.log" 2>&1 ||
			{ echo "plugin.h/state.h as C++:"; show "$WORK/abi-cxx.log"; return 1; }
	fi
}

# SMOLVM_FIELD() checks its type tag at compile time, with the installed
# headers: a mistagged field (a uint32_t tagged U8, an array tagged U8, ...)
# does not compile.
t_sdk_field_tags() {
	local s
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	# shellcheck disable=SC2046
	tests/sdk/check-field-tags.sh $(pkg-config --cflags smolvm-plugin)
}

# Our plugins use nothing but the SDK; and the check itself catches a bad
# include and a plugin that calls the core.
t_sdk_plugins_use_only_sdk() {
	tests/sdk/check-plugins.sh build > "$WORK/cp.log" 2>&1 || { show "$WORK/cp.log" 40; return 1; }
	cat "$WORK/cp.log"
	local neg=$WORK/neg sym
	mkdir -p "$neg/plugins/bad"
	printf '#include "../../core/vm.h"\n#include <vm.h>\n#include <smolvm/nothere.h>\n#include "bad.h"\n#include <stdio.h>\n' \
		> "$neg/plugins/bad/bad.c"
	: > "$neg/plugins/bad/bad.h"
	sym=$(find build/core -name "*.o" -exec nm -g --defined-only {} + 2> /dev/null | awk '$2 == "T" { print $3; exit }')
	printf 'int %s(void);\nint bad_export(void);\nint bad_export(void) { return %s(); }\n' "$sym" "$sym" > "$neg/bad.c"
	cc -shared -fPIC -o "$neg/bad.so" "$neg/bad.c" || return 1
	SDK_CHECK_SRC_DIRS=$neg/plugins tests/sdk/check-plugins.sh build "$neg/bad.so" > "$WORK/cp-neg.log" 2>&1 &&
		{ echo "a bad plugin passed:"; show "$WORK/cp-neg.log"; return 1; }
	local want
	for want in '#include "../../core/vm.h": a plugin' '#include <vm.h>: neither' \
		'#include <smolvm/nothere.h>: not an SDK header' "uses core symbols (only the host API table is allowed): $sym" \
		'exports more than smolvm_plugin_v1' 'no smolvm_plugin_v1'; do
		grep -qF -- "$want" "$WORK/cp-neg.log" || { echo "not caught: $want"; show "$WORK/cp-neg.log"; return 1; }
	done
	grep -qF 'bad.h' "$WORK/cp-neg.log" && { echo "an own header was refused"; show "$WORK/cp-neg.log"; return 1; }
	grep -qF '<stdio.h>' "$WORK/cp-neg.log" && { echo "a system header was refused"; show "$WORK/cp-neg.log"; return 1; }
	return 0
}

# ---- docs ----------------------------------------------------------------------

# Every code block of the SDK docs: excerpts match the examples, C compiles
# against the installed SDK, make lines parse (make -n).
t_sdk_docs() {
	local s
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	tests/sdk/check-docs.py --workdir "$WORK/docs" docs/plugin-guide.md docs/abi.md
}

# ... and the quick start's commands run (a plugin, a boot, a pack/run).
t_sdk_docs_run() {
	need_kvm || return
	[ -f "$SDK_GUEST" ] || { echo "missing $SDK_GUEST (make sdk-guest)"; return 1; }
	local s
	s=$(sdk_stage) || { echo "$s"; return 1; }
	sdk_env "$s" || return 1
	tests/sdk/check-docs.py --run --workdir "$WORK/docs-run" docs/plugin-guide.md docs/abi.md
}

# The man page renders without warnings and covers every command and option
# of the binary it is installed with.
t_sdk_man_page() {
	local man=docs/smolvm.1 txt=$WORK/smolvm.1.txt w bad=0 ver
	command -v groff > /dev/null || { echo "SKIP: no groff to render $man"; return 77; }
	w=$(groff -man -ww -z -Tascii "$man" 2>&1)
	[ -z "$w" ] || { echo "groff: $w"; bad=1; }
	groff -man -Tascii -rLL=200n -P-cbou "$man" > "$txt" 2> /dev/null
	for w in $("$SMOLVM" help 2>&1 | awk '/^commands:/ { on = 1; next } on && !NF { exit } on { print $1 }'); do
		grep -qE "smolvm $w( |$)" "$txt" || { echo "command $w not in $man"; bad=1; }
	done
	for w in $(for c in boot pack build run exec inspect; do "$SMOLVM" help "$c"; done 2>&1 | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
		grep -qF -- "$w" "$txt" || { echo "option $w not in $man"; bad=1; }
	done
	ver=$("$SMOLVM" version | awk '{ print $2 }')
	grep -q "^\.TH SMOLVM 1 .*\"smolvm $ver\"" "$man" || { echo "$man: .TH does not say smolvm $ver"; bad=1; }
	return $bad
}
