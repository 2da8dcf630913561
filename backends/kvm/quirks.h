/* Host workarounds for software-emulated KVM (kvm_pvm, see PLATFORM.md):
 * its instruction emulator cannot run a few instructions Linux executes at
 * CPL0 and reports an emulation failure instead. These helpers decide, from
 * the instruction bytes alone, how the VMM finishes such an instruction.
 * Pure functions, so tests can drive them without KVM. */
#ifndef SMOLVM_KVM_QUIRKS_H
#define SMOLVM_KVM_QUIRKS_H

#include <stddef.h>
#include <stdint.h>

enum quirk_action {
	QUIRK_UNHANDLED = 0,
	QUIRK_INT3,  /* skip it and inject #BP (the kernel's handler runs) */
	QUIRK_SKIP,  /* fwait: nothing to wait for, no x87 exceptions here */
	QUIRK_CLAC,  /* clear RFLAGS.AC */
	QUIRK_STAC,  /* set RFLAGS.AC */
};

struct quirk_regs {
	uint64_t rip, rflags;
	int inject_bp; /* set when #BP must be injected */
};

/* Decodes the faulting instruction; returns its action and sets *len. */
enum quirk_action quirk_decode(const uint8_t *insn, size_t n, unsigned *len);
/* Applies a decoded action to the registers. */
void quirk_apply(enum quirk_action a, unsigned len, struct quirk_regs *r);
const char *quirk_name(enum quirk_action a);

#endif
