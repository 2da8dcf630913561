#include "quirks.h"

#define RFLAGS_AC (1ull << 18)

enum quirk_action quirk_decode(const uint8_t *insn, size_t n, unsigned *len)
{
	*len = 0;
	if (n >= 1 && insn[0] == 0xcc) {
		*len = 1;
		return QUIRK_INT3;
	}
	if (n >= 1 && insn[0] == 0x9b) {
		*len = 1;
		return QUIRK_SKIP;
	}
	if (n >= 3 && insn[0] == 0x0f && insn[1] == 0x01 && (insn[2] == 0xca || insn[2] == 0xcb)) {
		*len = 3;
		return insn[2] == 0xca ? QUIRK_CLAC : QUIRK_STAC;
	}
	return QUIRK_UNHANDLED;
}

void quirk_apply(enum quirk_action a, unsigned len, struct quirk_regs *r)
{
	r->inject_bp = 0;
	switch (a) {
	case QUIRK_INT3:
		/* #BP is a trap: the handler sees RIP after the int3. */
		r->rip += len;
		r->inject_bp = 1;
		break;
	case QUIRK_SKIP:
		r->rip += len;
		break;
	case QUIRK_CLAC:
		r->rflags &= ~RFLAGS_AC;
		r->rip += len;
		break;
	case QUIRK_STAC:
		r->rflags |= RFLAGS_AC;
		r->rip += len;
		break;
	case QUIRK_UNHANDLED:
		break;
	}
}

const char *quirk_name(enum quirk_action a)
{
	static const char *const names[] = { "unhandled", "int3", "fwait", "clac", "stac" };
	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}
