/* core/x86_boot.c and core/x86_mptable.c: what a kernel finds in guest
 * memory at entry (boot_params, e820, command line, RNG seed, GDT, page
 * tables, MP table), checked against a fake guest RAM. */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "unit.h"
#include "arch/x86/boot.h"

#define MEM_SIZE (64ull << 20)
#define KERNEL_PADDR 0x100000ull
#define KERNEL_ENTRY 0x100040ull
#define SEG2_PADDR 0x400000ull

static struct guest_mem mem;
static char *dir;
static struct err e;

static void setup(void)
{
	mem.size = MEM_SIZE;
	mem.base = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert(mem.base != MAP_FAILED);
	dir = unit_tmpdir();
	memset(&e, 0, sizeof(e));
}

static void teardown(void)
{
	munmap(mem.base, MEM_SIZE);
	unit_rmdir(dir);
	dir = NULL;
}

static void *gp(uint64_t gpa)
{
	ck_assert_uint_lt(gpa, mem.size);
	return mem.base + gpa;
}

/* ---- a tiny ELF64 vmlinux ------------------------------------------- */

struct elf_opts {
	unsigned char cls;
	uint16_t machine;
	uint64_t paddr, entry;
	uint64_t phoff; /* 0: right after the header */
};

/* Segment 1: 0x200 bytes of file at paddr, 0x1000 in memory (bss after);
 * segment 2: 0x100 bytes at SEG2_PADDR; a PT_NOTE the loader ignores. */
static char *write_elf(const char *name, const struct elf_opts *o)
{
	static unsigned char f[0x2000];
	Elf64_Ehdr eh = { 0 };
	Elf64_Phdr ph[3] = { { 0 } };
	char *path;

	memset(f, 0, sizeof(f));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = o->cls ? o->cls : ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = o->machine ? o->machine : EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = o->entry ? o->entry : KERNEL_ENTRY;
	eh.e_phoff = o->phoff ? o->phoff : sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 3;
	ph[0].p_type = PT_NOTE;
	ph[0].p_offset = 0x1000;
	ph[0].p_filesz = ph[0].p_memsz = 0x10;
	ph[1].p_type = PT_LOAD;
	ph[1].p_offset = 0x1000;
	ph[1].p_paddr = ph[1].p_vaddr = o->paddr ? o->paddr : KERNEL_PADDR;
	ph[1].p_filesz = 0x200;
	ph[1].p_memsz = 0x1000;
	ph[2].p_type = PT_LOAD;
	ph[2].p_offset = 0x1800;
	ph[2].p_paddr = ph[2].p_vaddr = SEG2_PADDR;
	ph[2].p_filesz = ph[2].p_memsz = 0x100;
	memcpy(f, &eh, sizeof(eh));
	if (eh.e_phoff + sizeof(ph) <= sizeof(f))
		memcpy(f + eh.e_phoff, ph, sizeof(ph));
	for (unsigned i = 0; i < 0x1000; i++)
		f[0x1000 + i] = (unsigned char)(i * 7 + 1);
	path = unit_write_file(dir, name, f, sizeof(f));
	return path;
}

static void load_elf_kernel(struct x86_kernel *k)
{
	struct elf_opts o = { 0 };
	char *path = write_elf("vmlinux", &o);
	int rc;

	/* Dirty the bss so the loader has to clear it. */
	memset(gp(KERNEL_PADDR), 0xcc, 0x2000);
	rc = x86_load_kernel(&mem, path, k, &e);
	ck_assert_msg(rc == 0, "%s", e.msg);
	free(path);
}

START_TEST(test_elf_load)
{
	struct x86_kernel k;
	const uint8_t *p = gp(KERNEL_PADDR);

	load_elf_kernel(&k);
	ck_assert_uint_eq(k.entry, KERNEL_ENTRY);
	ck_assert_int_eq(k.bzimage, 0);
	ck_assert_uint_eq(k.end, SEG2_PADDR + 0x100);
	for (unsigned i = 0; i < 0x200; i++)
		ck_assert_uint_eq(p[i], (uint8_t)(i * 7 + 1));
	for (unsigned i = 0x200; i < 0x1000; i++)
		ck_assert_msg(p[i] == 0, "bss byte 0x%x is 0x%x", i, p[i]);
	ck_assert_uint_eq(p[0x1000], 0xcc); /* past memsz: untouched */
	p = gp(SEG2_PADDR);
	for (unsigned i = 0; i < 0x100; i++)
		ck_assert_uint_eq(p[i], (uint8_t)((0x800 + i) * 7 + 1));
}
END_TEST

/* ---- x86_setup --------------------------------------------------------- */

static const char cmdline[] = "console=ttyS0 root=/dev/vda rw quiet";

/* Walks the identity map the way the CPU would (4-level, 2 MiB pages). */
static int translate(uint64_t cr3, uint64_t va, uint64_t *pa)
{
	const uint64_t *pml4 = gp(cr3 & ~0xfffull), *pdpt, *pd;
	uint64_t ent = pml4[(va >> 39) & 511];

	if (!(ent & 1))
		return -1;
	pdpt = gp(ent & 0x000ffffffffff000ull);
	ent = pdpt[(va >> 30) & 511];
	if (!(ent & 1) || (ent & 0x80))
		return -1;
	pd = gp(ent & 0x000ffffffffff000ull);
	ent = pd[(va >> 21) & 511];
	if (!(ent & 1) || !(ent & 0x80) || !(ent & 2))
		return -1;
	*pa = (ent & 0x000fffffffe00000ull) | (va & 0x1fffff);
	return 0;
}

static void do_setup(uint32_t ncpus, struct x86_kernel *k, struct smolvm_x86_boot *regs)
{
	int rc;

	load_elf_kernel(k);
	memset(regs, 0x5a, sizeof(*regs));
	rc = x86_setup(&mem, k, cmdline, 0, 0, ncpus, regs, &e);
	ck_assert_msg(rc == 0, "x86_setup(%u cpus): %s", ncpus, e.msg);
}

START_TEST(test_boot_params)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	const struct boot_params *bp = gp(X86_ZERO_PAGE);
	const struct setup_data *sd;
	static const uint8_t zero[32];

	do_setup(1, &k, &regs);
	ck_assert_uint_eq(bp->hdr.boot_flag, 0xaa55);
	ck_assert_uint_eq(bp->hdr.header, 0x53726448);
	ck_assert_mem_eq(&bp->hdr.header, "HdrS", 4);
	ck_assert_uint_ge(bp->hdr.version, 0x020c);
	ck_assert_uint_eq(bp->hdr.type_of_loader, 0xff);
	ck_assert(bp->hdr.loadflags & LOADED_HIGH);
	ck_assert_uint_eq(bp->hdr.cmd_line_ptr, X86_CMDLINE);
	ck_assert_uint_eq(bp->ext_cmd_line_ptr, 0);
	ck_assert_str_eq((const char *)gp(bp->hdr.cmd_line_ptr), cmdline);
	ck_assert_uint_eq(bp->hdr.ramdisk_image, 0);
	ck_assert_uint_eq(bp->hdr.ramdisk_size, 0);

	/* setup_data: one RNG seed of 32 random bytes, end of chain. */
	ck_assert_uint_eq(bp->hdr.setup_data, X86_SETUP_DATA);
	sd = gp(bp->hdr.setup_data);
	ck_assert_uint_eq(sd->type, SETUP_RNG_SEED);
	ck_assert_uint_eq(sd->len, 32);
	ck_assert_uint_eq(sd->next, 0);
	ck_assert_msg(memcmp(sd->data, zero, 32) != 0, "RNG seed is all zero");

	/* e820: RAM below the EBDA, reserved up to 1 MiB, RAM to the end. */
	ck_assert_uint_eq(bp->e820_entries, 3);
	ck_assert_uint_eq(bp->e820_table[0].addr, 0);
	ck_assert_uint_eq(bp->e820_table[0].size, 0x9fc00);
	ck_assert_uint_eq(bp->e820_table[0].type, 1);
	ck_assert_uint_eq(bp->e820_table[1].addr, 0x9fc00);
	ck_assert_uint_eq(bp->e820_table[1].size, 0x100000 - 0x9fc00);
	ck_assert_uint_eq(bp->e820_table[1].type, 2);
	ck_assert_uint_eq(bp->e820_table[2].addr, 0x100000);
	ck_assert_uint_eq(bp->e820_table[2].size, MEM_SIZE - 0x100000);
	ck_assert_uint_eq(bp->e820_table[2].type, 1);
	ck_assert_uint_eq(bp->e820_table[3].size, 0);
}
END_TEST

START_TEST(test_rng_seed_fresh)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	const struct setup_data *sd = gp(X86_SETUP_DATA);
	uint8_t first[32];

	do_setup(1, &k, &regs);
	memcpy(first, sd->data, 32);
	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, 0, 0, 1, &regs, &e), 0);
	ck_assert_msg(memcmp(first, sd->data, 32) != 0, "same RNG seed twice");
}
END_TEST

START_TEST(test_regs_gdt_paging)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	const uint64_t *gdt = gp(X86_GDT_ADDR);
	static const uint64_t addrs[] = {
		0, X86_ZERO_PAGE, KERNEL_ENTRY, MEM_SIZE - 1, X86_IOAPIC_ADDR,
		X86_LAPIC_ADDR, 0xffffffffull,
	};

	do_setup(1, &k, &regs);
	ck_assert_uint_eq(regs.struct_size, sizeof(regs));
	ck_assert_uint_eq(regs.mode, SMOLVM_BOOT_LONG64);
	ck_assert_uint_eq(regs.rip, KERNEL_ENTRY);
	ck_assert_uint_eq(regs.rsi, X86_ZERO_PAGE);
	ck_assert_uint_eq(regs.cr3, X86_PML4);
	ck_assert_uint_eq(regs.gdt_base, X86_GDT_ADDR);
	ck_assert_uint_eq(regs.gdt_limit, 4 * 8 - 1);
	ck_assert_uint_eq(regs.code_sel, X86_CODE_SEL);
	ck_assert_uint_eq(regs.data_sel, X86_DATA_SEL);

	/* GDT: null, then 64-bit code (P, S, code, L=1, D=0) and flat data. */
	ck_assert_uint_eq(gdt[0], 0);
	ck_assert_uint_eq(gdt[X86_CODE_SEL / 8] & (1ull << 47), 1ull << 47); /* P */
	ck_assert_uint_eq(gdt[X86_CODE_SEL / 8] & (1ull << 43), 1ull << 43); /* code */
	ck_assert_uint_eq(gdt[X86_CODE_SEL / 8] & (1ull << 53), 1ull << 53); /* L */
	ck_assert_uint_eq(gdt[X86_CODE_SEL / 8] & (1ull << 54), 0);          /* D */
	ck_assert_uint_eq((gdt[X86_CODE_SEL / 8] >> 45) & 3, 0);             /* DPL 0 */
	ck_assert_uint_eq(gdt[X86_DATA_SEL / 8] & (1ull << 47), 1ull << 47);
	ck_assert_uint_eq(gdt[X86_DATA_SEL / 8] & (1ull << 43), 0);          /* data */
	ck_assert_uint_eq(gdt[X86_DATA_SEL / 8] & (1ull << 41), 1ull << 41); /* writable */

	/* Identity map of the low 4 GiB, nothing above. */
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		uint64_t pa = 0;
		ck_assert_msg(translate(regs.cr3, addrs[i], &pa) == 0, "0x%llx unmapped",
			      (unsigned long long)addrs[i]);
		ck_assert_uint_eq(pa, addrs[i]);
	}
	{
		uint64_t pa;
		ck_assert_int_ne(translate(regs.cr3, 0x100000000ull, &pa), 0);
	}
}
END_TEST

/* The boot structures must not overlap each other or the kernel, and must
 * sit where the e820 map says the kernel may find them. */
START_TEST(test_layout)
{
	static const struct {
		uint64_t start, len;
		const char *what;
	} r[] = {
		{ X86_GDT_ADDR, 32, "gdt" },
		{ X86_ZERO_PAGE, sizeof(struct boot_params), "zero page" },
		{ X86_PML4, 6 * 4096, "page tables" },
		{ X86_SETUP_DATA, sizeof(struct setup_data) + 32, "setup_data" },
		{ X86_CMDLINE, X86_CMDLINE_MAX, "command line" },
		{ X86_MPTABLE, 16 + 44 + 64 * 20 + 8 + 8 + 26 * 8, "MP table (64 cpus)" },
		{ KERNEL_PADDR, 0x1000, "kernel" },
	};
	const size_t n = sizeof(r) / sizeof(r[0]);

	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++)
			ck_assert_msg(r[i].start + r[i].len <= r[j].start ||
				      r[j].start + r[j].len <= r[i].start,
				      "%s overlaps %s", r[i].what, r[j].what);
		if (i < n - 2) /* below the EBDA, in low RAM */
			ck_assert_msg(r[i].start + r[i].len <= X86_EBDA_START, "%s", r[i].what);
	}
	/* The MP table is in the BIOS area, inside the reserved range. */
	ck_assert_uint_ge(X86_MPTABLE, X86_EBDA_START);
	ck_assert_uint_le(r[n - 2].start + r[n - 2].len, X86_HIMEM);
}
END_TEST

/* ---- MP table ---------------------------------------------------------- */

struct mp_view {
	unsigned cpus, bsp, buses, ioapics, intsrc, lintsrc, extint;
	int cpu_seen[X86_MAX_CPUS];
	int bsp_id;
	uint8_t ioapic_id;
	uint32_t ioapic_addr;
	int irq_pin[24]; /* per source bus IRQ, -1: not routed */
	int irq_apic[24];
};

static const uint8_t *find_mpf(void)
{
	/* Where Linux looks: the BIOS area, on 16-byte boundaries. */
	for (uint64_t a = 0xf0000; a < 0x100000; a += 16)
		if (!memcmp(gp(a), "_MP_", 4))
			return gp(a);
	return NULL;
}

static void parse_mptable(uint32_t ncpus, struct mp_view *v)
{
	const uint8_t *mpf = find_mpf(), *mpc, *p, *end;
	uint16_t len, count;

	memset(v, 0, sizeof(*v));
	v->bsp_id = -1;
	for (int i = 0; i < 24; i++)
		v->irq_pin[i] = v->irq_apic[i] = -1;
	ck_assert_ptr_nonnull(mpf);
	ck_assert_uint_eq(mpf[8], 1); /* length in paragraphs */
	ck_assert_uint_eq(mpf[9], 4); /* MP spec 1.4 */
	ck_assert_uint_eq(x86_checksum(mpf, 16), 0);
	ck_assert_uint_eq(mpf[11], 0); /* feature1 = 0: a table follows */
	uint32_t phys;
	memcpy(&phys, mpf + 4, 4);
	mpc = gp(phys);
	ck_assert_mem_eq(mpc, "PCMP", 4);
	memcpy(&len, mpc + 4, 2);
	memcpy(&count, mpc + 34, 2);
	ck_assert_uint_eq(mpc[6], 4);
	ck_assert_uint_eq(x86_checksum(mpc, len), 0);
	uint32_t lapic;
	memcpy(&lapic, mpc + 36, 4);
	ck_assert_uint_eq(lapic, X86_LAPIC_ADDR);

	p = mpc + 44;
	end = mpc + len;
	for (unsigned i = 0; i < count; i++) {
		ck_assert_msg(p < end, "MP entries run past the table length");
		switch (p[0]) {
		case 0: /* processor */
			ck_assert_uint_lt(p[1], ncpus);
			ck_assert_int_eq(v->cpu_seen[p[1]], 0);
			v->cpu_seen[p[1]] = 1;
			ck_assert(p[3] & 1); /* enabled */
			if (p[3] & 2) {
				v->bsp++;
				v->bsp_id = p[1];
			}
			v->cpus++;
			p += 20;
			break;
		case 1:
			ck_assert_mem_eq(p + 2, "ISA   ", 6);
			v->buses++;
			p += 8;
			break;
		case 2:
			v->ioapics++;
			v->ioapic_id = p[1];
			ck_assert(p[3] & 1); /* usable */
			memcpy(&v->ioapic_addr, p + 4, 4);
			p += 8;
			break;
		case 3:
			if (p[1] == 3) { /* ExtINT */
				v->extint++;
				ck_assert_uint_eq(p[7], 0);
			} else {
				ck_assert_uint_eq(p[1], 0);
				ck_assert_uint_lt(p[5], 24);
				ck_assert_int_eq(v->irq_pin[p[5]], -1); /* once */
				v->irq_pin[p[5]] = p[7];
				v->irq_apic[p[5]] = p[6];
			}
			v->intsrc++;
			p += 8;
			break;
		case 4:
			v->lintsrc++;
			p += 8;
			break;
		default:
			ck_abort_msg("unknown MP entry type %u", p[0]);
		}
	}
	ck_assert_ptr_eq(p, end); /* length and count agree */
}

START_TEST(test_mptable)
{
	const uint32_t ncpus = (uint32_t)_i;
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	struct mp_view v;

	do_setup(ncpus, &k, &regs);
	parse_mptable(ncpus, &v);
	ck_assert_uint_eq(v.cpus, ncpus);
	ck_assert_uint_eq(v.bsp, 1);
	ck_assert_int_eq(v.bsp_id, 0);
	ck_assert_uint_eq(v.buses, 1);
	ck_assert_uint_eq(v.ioapics, 1);
	ck_assert_uint_eq(v.ioapic_addr, 0xfec00000u);
	ck_assert_msg(v.ioapic_id >= ncpus, "IOAPIC id %u clashes with a CPU", v.ioapic_id);
	ck_assert_uint_eq(v.extint, 1);
	ck_assert_uint_eq(v.lintsrc, 2);
	/* ISA IRQ 0 (PIT) on pin 2, IRQ 2 unwired, the others 1:1, device
	 * lines 16-23 included. */
	ck_assert_int_eq(v.irq_pin[0], 2);
	ck_assert_int_eq(v.irq_pin[2], -1);
	for (int irq = 1; irq < 24; irq++) {
		if (irq == 2)
			continue;
		ck_assert_int_eq(v.irq_pin[irq], irq);
		ck_assert_int_eq(v.irq_apic[irq], v.ioapic_id);
	}
	ck_assert_int_eq(v.irq_apic[0], v.ioapic_id);
}
END_TEST

START_TEST(test_cpus_out_of_range)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;

	load_elf_kernel(&k);
	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, 0, 0, 0, &regs, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "cpus: 0 is outside 1..64");
	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, 0, 0, 65, &regs, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "cpus: 65 is outside 1..64");
	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, 0, 0, 64, &regs, &e), 0);
}
END_TEST

START_TEST(test_cmdline_limit)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	char *line = malloc(X86_CMDLINE_MAX + 1);

	load_elf_kernel(&k);
	memset(line, 'a', X86_CMDLINE_MAX);
	line[X86_CMDLINE_MAX] = 0;
	ck_assert_int_eq(x86_setup(&mem, &k, line, 0, 0, 1, &regs, &e), -E2BIG);
	ck_assert_str_contains(e.msg, "command line is 2048 bytes, the limit is 2047");
	/* One shorter fits, NUL included. */
	line[X86_CMDLINE_MAX - 1] = 0;
	ck_assert_int_eq(x86_setup(&mem, &k, line, 0, 0, 1, &regs, &e), 0);
	ck_assert_uint_eq(strlen(gp(X86_CMDLINE)), X86_CMDLINE_MAX - 1);
	free(line);
}
END_TEST

START_TEST(test_memory_too_small)
{
	struct x86_kernel k = { .entry = KERNEL_ENTRY };
	struct smolvm_x86_boot regs;
	struct guest_mem small = { mem.base, 1 << 20 };

	ck_assert_int_eq(x86_setup(&small, &k, "", 0, 0, 1, &regs, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "too small");
}
END_TEST

/* ---- initrd ------------------------------------------------------------ */

START_TEST(test_initrd)
{
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	const struct boot_params *bp = gp(X86_ZERO_PAGE);
	static uint8_t img[10000];
	uint64_t addr = 0, size = 0;
	char *path;

	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)(i ^ (i >> 8));
	path = unit_write_file(dir, "initrd", img, sizeof(img));
	load_elf_kernel(&k);
	ck_assert_msg(x86_load_initrd(&mem, path, &k, &addr, &size, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(size, sizeof(img));
	ck_assert_uint_eq(addr, (MEM_SIZE - sizeof(img)) & ~0xfffull);
	ck_assert_uint_ge(addr, k.end);
	ck_assert_mem_eq(gp(addr), img, sizeof(img));
	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, addr, size, 2, &regs, &e), 0);
	ck_assert_uint_eq(bp->hdr.ramdisk_image, addr);
	ck_assert_uint_eq(bp->hdr.ramdisk_size, sizeof(img));
	free(path);
}
END_TEST

START_TEST(test_initrd_too_big)
{
	struct x86_kernel k;
	struct guest_mem small = { mem.base, 16 << 20 };
	uint64_t addr, size;
	char *path;
	void *big = calloc(1, 15 << 20);

	path = unit_write_file(dir, "initrd", big, 15 << 20);
	free(big);
	load_elf_kernel(&k); /* ends at SEG2_PADDR + 0x100, 4 MiB */
	ck_assert_int_eq(x86_load_initrd(&small, path, &k, &addr, &size, &e), -E2BIG);
	ck_assert_str_contains(e.msg, "do not fit above the kernel");
	free(path);
}
END_TEST

/* ---- refusals ---------------------------------------------------------- */

START_TEST(test_not_a_kernel)
{
	struct x86_kernel k;
	char junk[4096];
	char *path;

	memset(junk, 'J', sizeof(junk));
	path = unit_write_file(dir, "junk", junk, sizeof(junk));
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "neither an ELF vmlinux nor a bzImage");
	ck_assert_str_contains(e.msg, path);
	free(path);

	path = unit_write_file(dir, "empty", "", 0);
	ck_assert_int_lt(x86_load_kernel(&mem, path, &k, &e), 0);
	ck_assert_str_contains(e.msg, "not a regular, non-empty file");
	free(path);

	ck_assert_int_eq(x86_load_kernel(&mem, "/nonexistent/vmlinux", &k, &e), -ENOENT);
	ck_assert_int_lt(x86_load_kernel(&mem, dir, &k, &e), 0); /* a directory */
}
END_TEST

START_TEST(test_elf_refusals)
{
	struct x86_kernel k;
	struct elf_opts o;
	char *path;

	memset(&o, 0, sizeof(o));
	o.paddr = 128ull << 20; /* past the end of 64 MiB */
	path = write_elf("high", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -E2BIG);
	ck_assert_str_contains(e.msg, "does not fit in guest RAM");
	free(path);

	memset(&o, 0, sizeof(o));
	o.paddr = MEM_SIZE - 0x800; /* starts inside, ends outside */
	path = write_elf("straddle", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -E2BIG);
	free(path);

	memset(&o, 0, sizeof(o));
	o.paddr = 0x8000; /* over the boot structures */
	path = write_elf("low", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -E2BIG);
	ck_assert_str_contains(e.msg, "above 1 MiB");
	free(path);

	memset(&o, 0, sizeof(o));
	o.entry = 1ull << 40;
	path = write_elf("entry", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "entry");
	free(path);

	memset(&o, 0, sizeof(o));
	o.cls = ELFCLASS32;
	path = write_elf("elf32", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "not a 64-bit x86 ELF");
	free(path);

	memset(&o, 0, sizeof(o));
	o.machine = EM_AARCH64;
	path = write_elf("arm64", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	free(path);

	memset(&o, 0, sizeof(o));
	o.phoff = 0x1ff0; /* program headers run off the end */
	path = write_elf("phoff", &o);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "bad program headers");
	free(path);
}
END_TEST

/* Every truncation of a valid ELF is refused without reading past it. */
START_TEST(test_elf_truncated)
{
	struct elf_opts o = { 0 };
	char *full = write_elf("full", &o);
	static unsigned char buf[0x2000];
	FILE *f = fopen(full, "rb");
	struct x86_kernel k;

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(buf, 1, sizeof(buf), f), sizeof(buf));
	fclose(f);
	for (size_t len = 1; len < 0x1900; len += (len < 0x100 ? 1 : 0x80)) {
		char *p = unit_write_file(dir, "cut", buf, len);
		ck_assert_msg(x86_load_kernel(&mem, p, &k, &e) < 0, "%zu bytes accepted", len);
		free(p);
	}
	free(full);
}
END_TEST

/* ---- bzImage ----------------------------------------------------------- */

#define BZ_SETUP_SECTS 1
#define BZ_PAYLOAD 0x3000

static char *write_bzimage(const char *name, uint16_t version, uint16_t xlf,
			   uint32_t init_size)
{
	static unsigned char f[(BZ_SETUP_SECTS + 1) * 512 + BZ_PAYLOAD];
	struct setup_header h;

	memset(f, 0, sizeof(f));
	memset(&h, 0, sizeof(h));
	h.setup_sects = BZ_SETUP_SECTS;
	h.boot_flag = 0xaa55;
	h.jump = 0x6aeb; /* jmp short to the end of the header */
	h.header = 0x53726448;
	h.version = version;
	h.xloadflags = xlf;
	h.init_size = init_size;
	h.initrd_addr_max = 0x37ffffff;
	h.cmdline_size = 2047;
	memcpy(f + 0x1f1, &h, sizeof(h));
	for (unsigned i = 0; i < BZ_PAYLOAD; i++)
		f[(BZ_SETUP_SECTS + 1) * 512 + i] = (unsigned char)(i * 13 + 5);
	return unit_write_file(dir, name, f, sizeof(f));
}

START_TEST(test_bzimage)
{
	char *path = write_bzimage("bzImage", 0x020f, XLF_KERNEL_64, 0x800000);
	const struct boot_params *bp = gp(X86_ZERO_PAGE);
	const uint8_t *p = gp(X86_BZIMAGE_LOAD);
	struct smolvm_x86_boot regs;
	struct x86_kernel k;

	ck_assert_msg(x86_load_kernel(&mem, path, &k, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(k.bzimage, 1);
	ck_assert_uint_eq(k.entry, 0x100200);
	ck_assert_uint_eq(k.hdr.version, 0x020f);
	/* init_size is larger than the image: the kernel needs that much. */
	ck_assert_uint_eq(k.end, 0x100000 + 0x800000);
	for (unsigned i = 0; i < BZ_PAYLOAD; i++)
		ck_assert_uint_eq(p[i], (uint8_t)(i * 13 + 5));

	ck_assert_int_eq(x86_setup(&mem, &k, cmdline, 0, 0, 2, &regs, &e), 0);
	ck_assert_uint_eq(regs.rip, 0x100200);
	ck_assert_uint_eq(bp->hdr.version, 0x020f);
	ck_assert_uint_eq(bp->hdr.setup_sects, BZ_SETUP_SECTS);
	ck_assert_uint_eq(bp->hdr.xloadflags & XLF_KERNEL_64, XLF_KERNEL_64);
	ck_assert_uint_eq(bp->hdr.type_of_loader, 0xff);
	ck_assert_uint_eq(bp->hdr.cmd_line_ptr, X86_CMDLINE);
	ck_assert_uint_eq(bp->hdr.boot_flag, 0xaa55);
	free(path);
}
END_TEST

START_TEST(test_bzimage_small_init_size)
{
	char *path = write_bzimage("bzImage", 0x020f, XLF_KERNEL_64, 0x100);
	struct x86_kernel k;

	ck_assert_msg(x86_load_kernel(&mem, path, &k, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(k.end, 0x100000 + BZ_PAYLOAD);
	free(path);
}
END_TEST

START_TEST(test_bzimage_refusals)
{
	struct x86_kernel k;
	char *path;

	path = write_bzimage("old", 0x020b, XLF_KERNEL_64, 0);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "boot protocol 2.11");
	free(path);

	path = write_bzimage("no64", 0x020f, 0, 0);
	ck_assert_int_eq(x86_load_kernel(&mem, path, &k, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "without a 64-bit entry");
	free(path);
}
END_TEST

START_TEST(test_bzimage_truncated)
{
	char *full = write_bzimage("full", 0x020f, XLF_KERNEL_64, 0);
	static unsigned char buf[(BZ_SETUP_SECTS + 1) * 512 + BZ_PAYLOAD];
	FILE *f = fopen(full, "rb");
	struct x86_kernel k;

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(buf, 1, sizeof(buf), f), sizeof(buf));
	fclose(f);
	/* Up to the end of the setup code: nothing to load. */
	for (size_t len = 0x206; len <= (BZ_SETUP_SECTS + 1) * 512; len += 0x1f) {
		char *p = unit_write_file(dir, "cut", buf, len);
		ck_assert_msg(x86_load_kernel(&mem, p, &k, &e) < 0, "%zu bytes accepted", len);
		free(p);
	}
	free(full);
}
END_TEST

Suite *x86_boot_suite(void)
{
	Suite *s = suite_create("x86-boot");
	TCase *tc;

	tc = tcase_create("elf");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_elf_load);
	tcase_add_test(tc, test_elf_refusals);
	tcase_add_test(tc, test_elf_truncated);
	tcase_add_test(tc, test_not_a_kernel);
	suite_add_tcase(s, tc);

	tc = tcase_create("bzimage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bzimage);
	tcase_add_test(tc, test_bzimage_small_init_size);
	tcase_add_test(tc, test_bzimage_refusals);
	tcase_add_test(tc, test_bzimage_truncated);
	suite_add_tcase(s, tc);

	tc = tcase_create("setup");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_boot_params);
	tcase_add_test(tc, test_rng_seed_fresh);
	tcase_add_test(tc, test_regs_gdt_paging);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_cmdline_limit);
	tcase_add_test(tc, test_cpus_out_of_range);
	tcase_add_test(tc, test_memory_too_small);
	suite_add_tcase(s, tc);

	tc = tcase_create("mptable");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_mptable, 1, 2);
	tcase_add_loop_test(tc, test_mptable, 4, 5);
	tcase_add_loop_test(tc, test_mptable, 64, 65);
	suite_add_tcase(s, tc);

	tc = tcase_create("initrd");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_initrd);
	tcase_add_test(tc, test_initrd_too_big);
	suite_add_tcase(s, tc);
	return s;
}
