/* C side of the boot path: per-CPU setup, IDT, trap dispatch, command line. */
#include "guest.h"

extern char __bss_start[], __bss_end[];

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
};

static struct idt_entry idt[256] __attribute__((aligned(16)));
static trap_handler_t handlers[256];
static struct cpu cpus[MAX_CPUS];
static char cmdline_buf[1024];

static void idt_set(unsigned vec, uint64_t addr)
{
	idt[vec] = (struct idt_entry){
		.off0 = (uint16_t)addr, .sel = KCODE64, .type = 0x8e, /* interrupt gate */
		.off1 = (uint16_t)(addr >> 16), .off2 = (uint32_t)(addr >> 32),
	};
}

/* Loads the shared IDT, this CPU's TSS and GS base (struct cpu). */
void cpu_init(unsigned idx)
{
	struct cpu *c = &cpus[idx];
	uint64_t base = (uint64_t)&c->tss;
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)idt };

	c->self = c;
	c->idx = idx;
	c->tss.rsp[0] = (uint64_t)trap_stacks + (idx + 1) * TRAP_STACK_SIZE;
	c->tss.iomap_base = sizeof(struct tss); /* no I/O bitmap: CPL3 port I/O faults */
	gdt[TSS_SEL(idx) / 8] = (sizeof(struct tss) - 1) | (base & 0xffffff) << 16 |
				(uint64_t)0x89 << 40 | ((base >> 24) & 0xff) << 56;
	gdt[TSS_SEL(idx) / 8 + 1] = base >> 32;
	__asm__ volatile("lidt %0" : : "m"(idtr));
	__asm__ volatile("ltr %w0" : : "r"(TSS_SEL(idx)));
	wrmsr(MSR_GSBASE, (uint64_t)c);
}

struct cpu *this_cpu(void)
{
	struct cpu *c;

	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(c) : "i"(CPU_SELF));
	return c;
}

void *user_stack_top(unsigned idx)
{
	return user_stacks + (idx + 1) * USTACK_SIZE;
}

void trap_set_handler(unsigned vector, trap_handler_t h)
{
	handlers[vector & 0xff] = h;
}

void trap_dispatch(struct trap_frame *f)
{
	/* A user function returned into user_exit (ud2): resume run_user. */
	if (f->vector == 6 && (f->cs & 3) == 3 && f->rip == (uint64_t)user_exit)
		user_return(f->rax);
	if (handlers[f->vector]) {
		handlers[f->vector](f);
		return;
	}
	if (f->vector == 255) /* LAPIC spurious: no EOI */
		return;
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	fail("exception %lu at 0x%lx (cs 0x%lx error 0x%lx cr2 0x%lx)\n",
	     f->vector, f->rip, f->cs, f->error, cr2);
}

NORETURN void reset(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) no_idt = { 0, 0 };

	outb(0x64, 0xfe); /* i8042 pulse reset: smolvm (and a PC) end here */
	/* No i8042 (QEMU microvm): triple fault. Empty IDT, then a #PF from an
	 * unmapped address (not int3/ud2: emulating hosts may lack those). */
	__asm__ volatile("cli; lidt %0; movq 0x8000000000, %%rax"
			 : : "m"(no_idt) : "rax", "memory");
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* "key=N" among space-separated words; N decimal or 0x-hex. */
bool cmdline_uint(const char *s, const char *key, unsigned long *val)
{
	size_t klen = strlen(key);

	while (*s) {
		while (*s == ' ')
			s++;
		if (!memcmp(s, key, klen) && s[klen] == '=') {
			const char *p = s + klen + 1;
			unsigned base = 10;
			unsigned long v = 0;
			if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
				base = 16;
				p += 2;
			}
			const char *digits = p;
			for (;; p++) {
				unsigned d;
				if (*p >= '0' && *p <= '9')
					d = *p - '0';
				else if (base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
					d = (*p | 0x20) - 'a' + 10;
				else
					break;
				v = v * base + d;
			}
			if (p != digits && (*p == ' ' || *p == 0)) {
				*val = v;
				return true;
			}
		}
		while (*s && *s != ' ')
			s++;
	}
	return false;
}

/* Sets U/S on the 2 MiB pages of entry.S's identity map that hold
 * [base, base+len), then flushes this CPU's TLB. */
void user_map(uint64_t base, uint64_t len)
{
	extern uint64_t pml4[];
	uint64_t *pdpt = (uint64_t *)(pml4[0] & ~0xfffull), cr3;

	for (uint64_t a = base & ~0x1fffffull; a < base + len; a += 0x200000) {
		uint64_t *pd = (uint64_t *)(pdpt[a >> 30] & ~0xfffull);
		pd[(a >> 21) & 511] |= 4;
	}
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}

/* Entered from entry.S on the boot stack; cmdline is a physical address. */
NORETURN void start_c(const char *cmdline)
{
	memset(__bss_start, 0, __bss_end - __bss_start);
	/* Copy: the boot_params/start_info area may be reused (SMP trampoline). */
	if (cmdline) {
		size_t n = 0;
		while (n < sizeof(cmdline_buf) - 1 && cmdline[n])
			n++;
		memcpy(cmdline_buf, cmdline, n);
	}
	for (unsigned v = 0; v < 48; v++)
		idt_set(v, isr_table[v]);
	idt_set(255, isr_table[48]);
	cpu_init(0);
	guest_main(cmdline_buf);
	reset();
}
