/* Shared definitions for the freestanding test guests (C and .S). */
#ifndef GUEST_H
#define GUEST_H

#define MAX_CPUS 16

/* GDT layout. 0x10/0x18 match the Linux 64-bit boot protocol, so the
 * selectors stay valid across our own lgdt. User data/code follow the
 * SYSRET layout: STAR[63:48] = 0x18 -> SS = 0x20|3, CS = 0x28|3. */
#define KCODE32 0x08
#define KCODE64 0x10
#define KDATA   0x18
#define UDATA   0x23
#define UCODE64 0x2b
#define TSS_SEL(cpu) (0x30 + 16 * (cpu))
#define GDT_LIMIT (0x30 + 16 * MAX_CPUS - 1)

/* The one 2 MiB page that CPL3 may touch (user code, data, stacks). */
#define USER_BASE 0x400000

/* Real-mode AP start code is copied here (SIPI vector 0x08). */
#define TRAMP_ADDR 0x8000

#define STACK_SIZE      16384 /* kernel stack per CPU */
#define TRAP_STACK_SIZE 4096  /* TSS.RSP0 stack per CPU */
#define USTACK_SIZE     4096  /* user stack per CPU */

/* Offsets into struct cpu used from assembly (%gs:OFF). */
#define CPU_SELF 0
#define CPU_KSP  8

#define MSR_EFER   0xc0000080
#define MSR_STAR   0xc0000081
#define MSR_LSTAR  0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_GSBASE 0xc0000101

#ifndef __ASSEMBLER__
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NORETURN __attribute__((noreturn))
/* Code that runs at CPL3: lives in the user-accessible page and must not
 * call kernel code; noipa keeps GCC from inlining or cloning it. */
#define USER_TEXT __attribute__((section(".user.text"), noipa))
#define USER_DATA __attribute__((section(".user.data")))

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32)));
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

/* Register state pushed by the stubs in isr.S (lowest address first). */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* Per-CPU data; GS base points here (offsets CPU_SELF/CPU_KSP above). */
struct cpu {
	struct cpu *self;
	uint64_t ksp; /* kernel RSP saved by run_user, restored by user_return */
	unsigned idx;
	struct tss tss;
};

typedef void (*trap_handler_t)(struct trap_frame *f);

/* entry.S / isr.S */
extern char cpu_stacks[], trap_stacks[], user_stacks[];
extern uint64_t gdt[];
extern const uint64_t isr_table[];
extern char user_exit[]; /* "ud2" in the user page: user functions return here */
uint64_t run_user(uint64_t (*fn)(void *), void *arg, void *ustack_top);
NORETURN void user_return(uint64_t value);

/* start.c */
void guest_main(const char *cmdline); /* one per guest */
void cpu_init(unsigned idx);
struct cpu *this_cpu(void);
void *user_stack_top(unsigned idx);
void trap_set_handler(unsigned vector, trap_handler_t h);
NORETURN void reset(void);
bool cmdline_uint(const char *cmdline, const char *key, unsigned long *val);
void user_map(uint64_t base, uint64_t len); /* CPL3 may touch [base, base+len) */

/* ap.c (with ap_tramp.S): application processors; pit_clock_start() first */
void ap_start(unsigned idx, uint32_t apic_id); /* returns once it runs */
unsigned ap_started(void); /* ap_main's first call: sets the AP up, its index */
void ap_main(void);        /* one per guest that starts APs, entered on the AP */

/* print.c */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
NORETURN void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void spin_lock(volatile uint32_t *l);
void spin_unlock(volatile uint32_t *l);
char serial_getc(void); /* waits for a byte on COM1 */

/* hw.c: LAPIC, IOAPIC, PIC, PIT */
void pic_mask_all(void);
void lapic_enable(void);
uint32_t lapic_id(void);
void lapic_eoi(void);
void lapic_ipi(uint32_t apic_id, uint32_t icr_low);
void ioapic_route(unsigned pin, uint8_t vector, uint32_t apic_id);
void pit_periodic(unsigned hz);
void pit_clock_start(void);
uint64_t pit_clock_us(void);

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#endif /* __ASSEMBLER__ */
#endif /* GUEST_H */
