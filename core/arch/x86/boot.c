#include "arch/x86/boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDRS_MAGIC 0x53726448 /* "HdrS" */
#define E820_RAM 1
#define E820_RESERVED 2
#define BOOT_FLAG 0xaa55

struct mapped_file {
	const uint8_t *p;
	size_t len;
};

static int map_file(const char *what, const char *path, struct mapped_file *f,
		    struct err *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_set(e, -errno, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return err_set(e, -EINVAL, "%s %s: not a regular, non-empty file", what, path);
	}
	f->len = (size_t)st.st_size;
	f->p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->p == MAP_FAILED)
		return err_set(e, -errno, "%s %s: %s", what, path, strerror(errno));
	return 0;
}

static void unmap_file(struct mapped_file *f)
{
	munmap((void *)f->p, f->len);
}

static int load_elf(struct guest_mem *m, const struct mapped_file *f, const char *path,
		    struct x86_kernel *k, struct err *e)
{
	Elf64_Ehdr eh;
	int loaded = 0;

	if (f->len < sizeof(eh))
		return err_set(e, -ENOEXEC, "kernel %s: truncated ELF header", path);
	memcpy(&eh, f->p, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
		return err_set(e, -ENOEXEC, "kernel %s: not a 64-bit x86 ELF", path);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > f->len ||
	    (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > f->len - eh.e_phoff)
		return err_set(e, -ENOEXEC, "kernel %s: bad program headers", path);

	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		uint8_t *dst;

		memcpy(&ph, f->p + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || !ph.p_memsz)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > f->len ||
		    ph.p_filesz > f->len - ph.p_offset)
			return err_set(e, -ENOEXEC, "kernel %s: segment %u out of the file", path, i);
		dst = mem_ptr(m, ph.p_paddr, ph.p_memsz);
		if (!dst || ph.p_paddr < X86_HIMEM)
			return err_set(e, -E2BIG,
				       "kernel %s: segment %u at 0x%llx+0x%llx does not fit in guest RAM above 1 MiB",
				       path, i, (unsigned long long)ph.p_paddr,
				       (unsigned long long)ph.p_memsz);
		memcpy(dst, f->p + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr + ph.p_memsz > k->end)
			k->end = ph.p_paddr + ph.p_memsz;
		loaded++;
	}
	if (!loaded)
		return err_set(e, -ENOEXEC, "kernel %s: no loadable segment", path);
	if (!mem_ptr(m, eh.e_entry, 1))
		return err_set(e, -ENOEXEC, "kernel %s: entry 0x%llx outside guest RAM", path,
			       (unsigned long long)eh.e_entry);
	k->entry = eh.e_entry;
	return 0;
}

static int load_bzimage(struct guest_mem *m, const struct mapped_file *f, const char *path,
			struct x86_kernel *k, struct err *e)
{
	size_t hdr_end, setup_size, kernel_size;
	uint8_t *dst;

	/* The header runs from 0x1f1 to the end of the jump at 0x200. */
	hdr_end = 0x202 + f->p[0x201];
	if (hdr_end > f->len || hdr_end - 0x1f1 > sizeof(k->hdr))
		hdr_end = 0x1f1 + sizeof(k->hdr);
	if (hdr_end > f->len)
		return err_set(e, -ENOEXEC, "kernel %s: truncated boot header", path);
	memset(&k->hdr, 0, sizeof(k->hdr));
	memcpy(&k->hdr, f->p + 0x1f1, hdr_end - 0x1f1);

	if (k->hdr.version < 0x020c || !(k->hdr.xloadflags & XLF_KERNEL_64))
		return err_set(e, -ENOEXEC,
			       "kernel %s: boot protocol %u.%u without a 64-bit entry (need 2.12+)",
			       path, k->hdr.version >> 8, k->hdr.version & 0xff);
	setup_size = ((size_t)(k->hdr.setup_sects ? k->hdr.setup_sects : 4) + 1) * 512;
	if (setup_size >= f->len)
		return err_set(e, -ENOEXEC, "kernel %s: truncated after the setup code", path);
	kernel_size = f->len - setup_size;
	dst = mem_ptr(m, X86_BZIMAGE_LOAD, kernel_size);
	if (!dst)
		return err_set(e, -E2BIG, "kernel %s: %zu bytes do not fit in guest RAM", path,
			       kernel_size);
	memcpy(dst, f->p + setup_size, kernel_size);
	k->entry = X86_BZIMAGE_LOAD + 0x200; /* startup_64 */
	k->end = X86_BZIMAGE_LOAD + kernel_size;
	if (k->hdr.init_size && X86_BZIMAGE_LOAD + k->hdr.init_size > k->end)
		k->end = X86_BZIMAGE_LOAD + k->hdr.init_size;
	k->bzimage = 1;
	return 0;
}

int x86_load_kernel(struct guest_mem *m, const char *path, struct x86_kernel *k,
		    struct err *e)
{
	struct mapped_file f;
	uint32_t magic = 0;
	int rc;

	memset(k, 0, sizeof(*k));
	rc = map_file("kernel", path, &f, e);
	if (rc)
		return rc;
	if (f.len >= 0x206)
		memcpy(&magic, f.p + 0x202, 4);
	if (f.len >= SELFMAG && !memcmp(f.p, ELFMAG, SELFMAG))
		rc = load_elf(m, &f, path, k, e);
	else if (magic == HDRS_MAGIC)
		rc = load_bzimage(m, &f, path, k, e);
	else
		rc = err_set(e, -ENOEXEC, "kernel %s: neither an ELF vmlinux nor a bzImage", path);
	unmap_file(&f);
	return rc;
}

int x86_load_initrd(struct guest_mem *m, const char *path, const struct x86_kernel *k,
		    uint64_t *addr, uint64_t *size, struct err *e)
{
	struct mapped_file f;
	uint64_t top = m->size, at;
	int rc;

	rc = map_file("initrd", path, &f, e);
	if (rc)
		return rc;
	if (k->bzimage && k->hdr.initrd_addr_max && top > (uint64_t)k->hdr.initrd_addr_max + 1)
		top = (uint64_t)k->hdr.initrd_addr_max + 1;
	at = (top - f.len) & ~0xfffull;
	if (f.len > top || at < k->end) {
		unmap_file(&f);
		return err_set(e, -E2BIG, "initrd %s: %zu KiB do not fit above the kernel in %llu MiB",
			       path, f.len >> 10, (unsigned long long)(m->size >> 20));
	}
	memcpy(mem_ptr(m, at, f.len), f.p, f.len);
	*addr = at;
	*size = f.len;
	unmap_file(&f);
	return 0;
}

static void add_e820(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	struct boot_e820_entry *en = &bp->e820_table[bp->e820_entries++];
	en->addr = addr;
	en->size = size;
	en->type = type;
}

static void write_gdt(struct guest_mem *m)
{
	uint64_t *gdt = mem_ptr(m, X86_GDT_ADDR, 4 * sizeof(uint64_t));

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[X86_CODE_SEL / 8] = 0x00af9b000000ffffull; /* 64-bit code, accessed */
	gdt[X86_DATA_SEL / 8] = 0x00cf93000000ffffull; /* flat data, accessed */
}

/* Identity map of the first 4 GiB with 2 MiB pages: enough for any kernel
 * entry, which builds its own tables at once. */
static void write_page_tables(struct guest_mem *m)
{
	uint64_t *pml4 = mem_ptr(m, X86_PML4, 6 * 4096);
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;

	memset(pml4, 0, 6 * 4096);
	pml4[0] = (X86_PML4 + 0x1000) | 0x3;
	for (int i = 0; i < 4; i++)
		pdpt[i] = (X86_PML4 + 0x2000 + (uint64_t)i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
}

int x86_setup(struct guest_mem *m, const struct x86_kernel *k, const char *cmdline,
	      uint64_t initrd_addr, uint64_t initrd_size, uint32_t ncpus,
	      struct smolvm_x86_boot *regs, struct err *e)
{
	struct boot_params *bp;
	struct setup_data *sd;
	size_t clen = strlen(cmdline);
	int rc;

	if (m->size < X86_HIMEM * 2)
		return err_set(e, -EINVAL, "memory: too small to boot");
	if (clen >= X86_CMDLINE_MAX)
		return err_set(e, -E2BIG, "command line is %zu bytes, the limit is %d", clen,
			       X86_CMDLINE_MAX - 1);
	write_gdt(m);
	write_page_tables(m);

	bp = mem_ptr(m, X86_ZERO_PAGE, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	if (k->bzimage)
		bp->hdr = k->hdr;
	bp->hdr.boot_flag = BOOT_FLAG;
	bp->hdr.header = HDRS_MAGIC;
	if (!k->bzimage)
		bp->hdr.version = 0x020f;
	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= LOADED_HIGH | KEEP_SEGMENTS;
	bp->hdr.cmd_line_ptr = X86_CMDLINE;
	bp->hdr.cmdline_size = (uint32_t)clen;
	memcpy(mem_ptr(m, X86_CMDLINE, clen + 1), cmdline, clen + 1);
	bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)initrd_size;

	/* A seed for the kernel's RNG: without RDRAND it would otherwise wait
	 * minutes for entropy (PLATFORM.md). */
	sd = mem_ptr(m, X86_SETUP_DATA, sizeof(*sd) + 32);
	memset(sd, 0, sizeof(*sd));
	sd->type = SETUP_RNG_SEED;
	sd->len = 32;
	if (getrandom(sd->data, 32, 0) != 32)
		return err_set(e, -EIO, "getrandom: %s", strerror(errno));
	bp->hdr.setup_data = X86_SETUP_DATA;

	add_e820(bp, 0, X86_EBDA_START, E820_RAM);
	add_e820(bp, X86_EBDA_START, X86_HIMEM - X86_EBDA_START, E820_RESERVED);
	add_e820(bp, X86_HIMEM, m->size - X86_HIMEM, E820_RAM);

	rc = x86_mptable_write(m, X86_MPTABLE, ncpus, e);
	if (rc)
		return rc;

	memset(regs, 0, sizeof(*regs));
	regs->struct_size = sizeof(*regs);
	regs->mode = SMOLVM_BOOT_LONG64;
	regs->rip = k->entry;
	regs->rsi = X86_ZERO_PAGE;
	regs->cr3 = X86_PML4;
	regs->gdt_base = X86_GDT_ADDR;
	regs->gdt_limit = 4 * 8 - 1;
	regs->code_sel = X86_CODE_SEL;
	regs->data_sel = X86_DATA_SEL;
	return 0;
}
