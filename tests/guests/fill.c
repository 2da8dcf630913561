/*
 * fill: fills guest memory with a known pattern and reads it back, for the
 * lazy restore's tests and the scale benchmark (bench/scale.sh).
 *
 *   fill=MIB   MiB to fill, from 16 MiB up (default 64; the machine needs
 *              16 + MIB MiB of RAM at least)
 *   cpus=N     1 or 2 (default 1); with 2 the AP (APIC id 1) is started
 *              (common/ap.c) and every pass is shared: CPU c takes the
 *              4 KiB pages c, c+N, c+2N, ... so both walk the same 1 MiB
 *              chunks at the same time
 *   rounds=R   verify passes (default 1)
 *   hold=1     after the last round every CPU stops (interrupts off, hlt)
 *              instead of the reset: a save taken after the last line finds
 *              the same memory however long after it comes
 *   wait=1     after "filled", wait for a byte on the serial port before
 *              the first round: a VMM stopped a little after that line
 *              (QEMU's stop, bench/scale.sh) finds the guest where smolvm's
 *              pack does, not part-way through the round
 *
 * Every 8-byte word at address A holds pattern(A), a bijection of A (so
 * distinct per address) that looks random (so it does not compress). The
 * passes run in user mode, native on hosts that emulate guest kernel mode:
 * the 2 MiB pages of the range are made user-accessible first. Prints
 * "filled MIB MiB" once the fill is done (the line to pack at), then per
 * round "verify ok MIB MiB round K", or "verify BAD at 0x... (want 0x...,
 * got 0x...)" and it resets at once; after the last round it resets (or
 * holds). After "filled" nothing reads a clock or writes memory that depends
 * on timing: two restores of one bundle run the same instructions on the
 * same data, whatever their memory was filled by.
 */
#include "guest.h"

#define NCPUS_MAX 2
#define FILL_BASE (16ull << 20)
#define FILL_MAX_MIB 3056 /* RAM ends below 3 GiB here: board.h, QEMU microvm */
#define PAGE 4096

/* x * odd, then xorshift: both invertible, so no two addresses collide. */
#define PATTERN(a) ({ uint64_t x_ = (a) * 0x9e3779b97f4a7c15ull; x_ ^ x_ >> 29; })

/* One CPU's share of a pass: the pages start, start + step, ... below end. */
struct job {
	uint64_t start, step, end;
	uint64_t bad, got; /* verify: the first wrong word's address (0: none) and value */
} __attribute__((aligned(64)));

static struct job jobs[NCPUS_MAX] USER_DATA;
static volatile unsigned long go, ap_done; /* passes released / finished by the AP */
static unsigned long rounds = 1;

USER_TEXT static uint64_t fill_pass(void *arg)
{
	struct job *j = arg;

	for (uint64_t pg = j->start; pg < j->end; pg += j->step)
		for (uint64_t *p = (uint64_t *)pg; p < (uint64_t *)(pg + PAGE); p++)
			*p = PATTERN((uint64_t)p);
	return 0;
}

USER_TEXT static uint64_t verify_pass(void *arg)
{
	struct job *j = arg;

	for (uint64_t pg = j->start; pg < j->end; pg += j->step)
		for (uint64_t *p = (uint64_t *)pg; p < (uint64_t *)(pg + PAGE); p++) {
			uint64_t v = *p;
			if (v != PATTERN((uint64_t)p)) {
				j->bad = (uint64_t)p;
				j->got = v;
				return 1;
			}
		}
	j->bad = 0;
	return 0;
}

/* Pass 0 fills, passes 1..rounds verify. */
static void run_pass(unsigned cpu, unsigned long pass)
{
	run_user(pass ? verify_pass : fill_pass, &jobs[cpu], user_stack_top(cpu));
}

void ap_main(void)
{
	unsigned cpu = ap_started();

	for (unsigned long pass = 0; pass <= rounds; pass++) {
		while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) <= pass)
			__asm__ volatile("pause");
		run_pass(cpu, pass);
		__atomic_store_n(&ap_done, pass + 1, __ATOMIC_RELEASE);
	}
	/* ap_tramp.S parks this CPU (cli; hlt) */
}

/* Both CPUs' part of one pass. No timeout on the AP: a clock read here
 * would leave timing in memory (see above); a lost AP hangs the guest, and
 * whoever runs it has a timeout. */
static void pass_all(unsigned long ncpus, unsigned long pass)
{
	__atomic_store_n(&go, pass + 1, __ATOMIC_RELEASE);
	run_pass(0, pass);
	if (ncpus > 1)
		while (__atomic_load_n(&ap_done, __ATOMIC_ACQUIRE) <= pass)
			__asm__ volatile("pause");
}

void guest_main(const char *cmdline)
{
	unsigned long mib = 64, ncpus = 1, hold = 0, wait = 0;

	cmdline_uint(cmdline, "fill", &mib);
	cmdline_uint(cmdline, "cpus", &ncpus);
	cmdline_uint(cmdline, "rounds", &rounds);
	cmdline_uint(cmdline, "hold", &hold);
	cmdline_uint(cmdline, "wait", &wait);
	if (mib < 1 || mib > FILL_MAX_MIB)
		fail("fill=%lu not in 1..%d\n", mib, FILL_MAX_MIB);
	if (ncpus < 1 || ncpus > NCPUS_MAX)
		fail("cpus=%lu not in 1..%d\n", ncpus, NCPUS_MAX);
	if (ncpus > 1 && lapic_id() != 0)
		fail("boot CPU's APIC id is %u, not 0\n", lapic_id());
	kprintf("fill: %lu MiB at 0x%lx, %lu cpus, %lu rounds\n", mib,
		(unsigned long)FILL_BASE, ncpus, rounds);

	uint64_t end = FILL_BASE + (mib << 20);
	for (unsigned c = 0; c < ncpus; c++)
		jobs[c] = (struct job){ .start = FILL_BASE + c * PAGE, .step = ncpus * PAGE, .end = end };
	user_map(FILL_BASE, mib << 20);
	pic_mask_all();
	lapic_enable();
	pit_clock_start();
	if (ncpus > 1)
		ap_start(1, 1);

	pass_all(ncpus, 0);
	kprintf("filled %lu MiB\n", mib);
	if (wait)
		serial_getc();
	for (unsigned long k = 1; k <= rounds; k++) {
		pass_all(ncpus, k);
		for (unsigned c = 0; c < ncpus; c++)
			if (jobs[c].bad) {
				kprintf("verify BAD at 0x%lx (want 0x%lx, got 0x%lx)\n", jobs[c].bad,
					PATTERN(jobs[c].bad), jobs[c].got);
				reset();
			}
		kprintf("verify ok %lu MiB round %lu\n", mib, k);
	}
	if (hold)
		for (;;)
			__asm__ volatile("cli; hlt");
}
