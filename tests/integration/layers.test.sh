# The core's include rule (tests/check-layers.sh): the tree passes, and
# the check catches an upward include, a sibling include and an include
# not named by its folder. Sourced by run.sh; needs no KVM.

t_layers_core_includes_point_down() {
	tests/check-layers.sh core > "$WORK/layers.log" 2>&1 || { show "$WORK/layers.log"; return 1; }
	local neg=$WORK/core-neg want
	cp -r core "$neg"
	printf '#include "session/hooks.h"\n' >> "$neg/machine/vm.c"
	printf '#include "snapshot/bundle.h"\n' >> "$neg/script/script.c"
	printf '#include "vm.h"\n' >> "$neg/machine/bus.c"
	printf '#include "machine/vm.h"\n' >> "$neg/arch/x86/boot.c"
	printf '#include <session/hooks.h>\n' >> "$neg/machine/loop.c"
	printf '#define H "session/control.h"\n#include H\n' >> "$neg/machine/mem.c"
	printf '#include "machine/x.inc"\n' >> "$neg/machine/bus.h"
	printf '#include "session/hooks.h"\n' > "$neg/machine/x.inc"
	printf 'int x;\n' > "$neg/extra.c"
	tests/check-layers.sh "$neg" > "$WORK/layers-neg.log" 2>&1 &&
		{ echo "upward includes passed"; show "$WORK/layers-neg.log"; return 1; }
	for want in 'machine/vm.c:' 'points up (machine/ is below session/' \
		'script/script.c:' 'script/ and snapshot/ are on the same level' \
		'machine/bus.c:' '"vm.h": name it by its folder' \
		'arch/x86/boot.c:' 'points up (arch/ is below machine/' \
		'machine/loop.c:' 'are included with "..."' 'machine/mem.c:' '(a macro?)' \
		'machine/bus.h:' 'only headers are included' 'machine/x.inc: only .c and .h' \
		'extra.c: only main.c lives at the top'; do
		grep -qF -- "$want" "$WORK/layers-neg.log" || { echo "not caught: $want"; show "$WORK/layers-neg.log"; return 1; }
	done
	[ "$(wc -l < "$WORK/layers-neg.log")" -eq 9 ] || { echo "expected 9 violations:"; show "$WORK/layers-neg.log"; return 1; }
}
