/* x86 boot without firmware: the kernel is entered in 64-bit mode with
 * boot_params (zero page), e820, command line, initrd, an RNG seed and an
 * MP table already in guest memory. */
#ifndef SMOLVM_X86_BOOT_H
#define SMOLVM_X86_BOOT_H

#include <asm/bootparam.h>
#include <smolvm/plugin.h>

#include "arch/x86/board.h"
#include "lib/err.h"
#include "lib/ram.h"

/* Guest-physical layout below 1 MiB. */
#define X86_GDT_ADDR 0x500
#define X86_ZERO_PAGE 0x7000
#define X86_PML4 0x9000 /* PML4, PDPT, 4 page directories: 4 GiB */
#define X86_SETUP_DATA 0x10000
#define X86_CMDLINE 0x20000
#define X86_CMDLINE_MAX 2048 /* the kernel's COMMAND_LINE_SIZE */
#define X86_EBDA_START 0x9fc00
#define X86_MPTABLE 0xf0000 /* in the BIOS area the kernel scans */
#define X86_HIMEM 0x100000
#define X86_BZIMAGE_LOAD 0x100000
#define X86_IOAPIC_ADDR 0xfec00000u
#define X86_LAPIC_ADDR 0xfee00000u
#define X86_MAX_CPUS BOARD_MAX_CPUS

#define X86_CODE_SEL 0x10
#define X86_DATA_SEL 0x18

struct x86_kernel {
	uint64_t entry;
	uint64_t end; /* first byte above the loaded image */
	int bzimage;
	struct setup_header hdr; /* bzImage: the kernel's own header */
};

int x86_load_kernel(struct guest_mem *m, const char *path, struct x86_kernel *k,
		    struct err *e) WARN_UNUSED;
/* Places the initrd as high as the kernel allows. */
int x86_load_initrd(struct guest_mem *m, const char *path, const struct x86_kernel *k,
		    uint64_t *addr, uint64_t *size, struct err *e) WARN_UNUSED;
/* Writes GDT, page tables, boot_params, command line, RNG seed and the MP
 * table; fills the boot vCPU's registers. */
int x86_setup(struct guest_mem *m, const struct x86_kernel *k, const char *cmdline,
	      uint64_t initrd_addr, uint64_t initrd_size, uint32_t ncpus,
	      struct smolvm_x86_boot *regs, struct err *e) WARN_UNUSED;

/* MP table (Intel MultiProcessor Specification 1.4) at `addr`. */
int x86_mptable_write(struct guest_mem *m, uint64_t addr, uint32_t ncpus,
		      struct err *e) WARN_UNUSED;
uint8_t x86_checksum(const void *p, size_t len);

#endif
