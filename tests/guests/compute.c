/*
 * compute: a deterministic computation in steps, for snapshot tests: a run
 * restored from a snapshot taken half-way must print the same result as an
 * uninterrupted one.
 *
 *   mode=user|kernel  where the work runs (default user). Kernel mode is
 *                     emulated on some hosts (~1000x slower), so it does
 *                     far fewer iterations per step.
 *   cpus=N            1 or 2 (default 1); with 2 the AP (APIC id 1) is
 *                     started (common/ap.c) and each step's iterations
 *                     are split between the CPUs.
 *   steps=S           number of steps (default 10).
 *   iters=N           iterations per step, all CPUs together (default by mode).
 *
 * Every CPU keeps a 64-bit state and a 4 KiB table of its own and runs a
 * non-linear chain (xorshift, multiply, table-dependent reads and writes)
 * that also mixes in the global iteration number. After each step the BSP
 * folds all states into a key that every CPU mixes in at the next step,
 * releases the AP into that step and prints "step K" (so a snapshot taken at
 * that line finds the AP working); at the end "result 0x<16 hex digits>" (a
 * hash of every state and table), then it resets. A repeated, skipped or
 * reordered iteration or step changes the result.
 */
#include "guest.h"

#define NCPUS_MAX 2
#define TABLE_WORDS 512 /* a power of two */
#define DEFAULT_STEPS 10
/* Per step, all CPUs together: ~2-4 s per 10-step run on an emulating host. */
#define USER_ITERS   40000000UL
#define KERNEL_ITERS 24000UL

#define M1 0x9e3779b97f4a7c15UL
#define M2 0xbf58476d1ce4e5b9UL
#define M3 0x94d049bb133111ebUL

/* One CPU's work; in the user page so that CPL3 code can use it. */
struct work {
	uint64_t state;
	uint64_t key;   /* the BSP's fold of all states after the previous step */
	uint64_t first; /* global number of this step's first iteration */
	uint64_t iters; /* this step's iterations on this CPU */
	uint64_t table[TABLE_WORDS];
} __attribute__((aligned(64)));

static struct work work[NCPUS_MAX] USER_DATA;

static volatile unsigned long go, ap_done; /* steps released / finished by the AP */
static bool kernel_mode;
static unsigned long steps = DEFAULT_STEPS;

/* One step of one CPU. Runs at CPL3 (run_user) or CPL0 (a plain call). */
USER_TEXT static uint64_t compute_step(void *arg)
{
	struct work *w = arg;
	uint64_t x = w->state ^ w->key, n = w->iters, g = w->first;
	uint64_t *t = w->table;

	for (uint64_t i = 0; i < n; i++, g++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t *p = &t[(x >> 37) & (TABLE_WORDS - 1)];
		uint64_t v = *p;
		*p = (v ^ x) * M1 + g;
		x = ((x + v) * M2) ^ g;
		x = x << 29 | x >> 35;
	}
	w->state = x;
	return 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h = (h ^ v) * M3;
	return h ^ h >> 31;
}

static void run_step(unsigned idx)
{
	if (kernel_mode)
		compute_step(&work[idx]);
	else
		run_user(compute_step, &work[idx], user_stack_top(idx));
}

/* Called on the AP's own stack once it is in long mode (ap_tramp.S). */
void ap_main(void)
{
	ap_started();
	for (unsigned long k = 0; k < steps; k++) {
		while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) <= k)
			;
		run_step(1);
		__atomic_store_n(&ap_done, k + 1, __ATOMIC_RELEASE);
	}
}

static bool wait_for(volatile unsigned long *v, unsigned long want, uint64_t us)
{
	uint64_t t0 = pit_clock_us();

	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want)
		if (pit_clock_us() - t0 > us)
			return false;
	return true;
}

/* A space-separated word of the command line is "prefix..." (whole word if exact). */
static bool cmdline_word(const char *cmdline, const char *word, bool exact)
{
	size_t n = strlen(word);

	for (const char *s = cmdline; *s; s++)
		if ((s == cmdline || s[-1] == ' ') && !memcmp(s, word, n) &&
		    (!exact || s[n] == ' ' || s[n] == 0))
			return true;
	return false;
}

/* Hands out step k's iterations and key, then lets the AP start it. */
static void prepare_step(unsigned long k, unsigned ncpus, uint64_t iters, uint64_t key)
{
	uint64_t first = k * iters;

	for (unsigned c = 0; c < ncpus; c++) {
		uint64_t share = iters / ncpus + (c < iters % ncpus);
		work[c].key = key;
		work[c].first = first;
		work[c].iters = share;
		first += share;
	}
	__atomic_store_n(&go, k + 1, __ATOMIC_RELEASE);
}

void guest_main(const char *cmdline)
{
	unsigned long ncpus = 1, iters;

	if (cmdline_word(cmdline, "mode=kernel", true))
		kernel_mode = true;
	else if (!cmdline_word(cmdline, "mode=user", true) && cmdline_word(cmdline, "mode=", false))
		fail("mode: user or kernel\n");
	cmdline_uint(cmdline, "cpus", &ncpus);
	cmdline_uint(cmdline, "steps", &steps);
	iters = kernel_mode ? KERNEL_ITERS : USER_ITERS;
	cmdline_uint(cmdline, "iters", &iters);
	if (ncpus < 1 || ncpus > NCPUS_MAX)
		fail("cpus=%lu not in 1..%d\n", ncpus, NCPUS_MAX);
	if (ncpus > 1 && lapic_id() != 0)
		fail("boot CPU's APIC id is %u, not 0\n", lapic_id());
	kprintf("compute: mode=%s cpus=%lu steps=%lu iters=%lu\n",
		kernel_mode ? "kernel" : "user", ncpus, steps, iters);

	for (unsigned c = 0; c < ncpus; c++) {
		uint64_t s = mix(0x636f6d70757465UL, c + 1); /* "compute" */
		work[c].state = s;
		for (unsigned i = 0; i < TABLE_WORDS; i++)
			work[c].table[i] = s = mix(s, i);
	}
	pic_mask_all();
	lapic_enable();
	pit_clock_start();
	if (ncpus > 1)
		ap_start(1, 1);

	uint64_t key = 0;
	prepare_step(0, ncpus, iters, key);
	for (unsigned long k = 0; k < steps; k++) {
		run_step(0);
		if (ncpus > 1 && !wait_for(&ap_done, k + 1, 60000000))
			fail("cpu 1 did not finish step %lu\n", k);
		for (unsigned c = 0; c < ncpus; c++)
			key = mix(key, work[c].state);
		/* The AP starts the next step while we print: a snapshot taken at
		 * "step K" finds it in the middle of its work. */
		if (k + 1 < steps)
			prepare_step(k + 1, ncpus, iters, key);
		kprintf("step %lu\n", k);
	}

	uint64_t h = key;
	for (unsigned c = 0; c < ncpus; c++)
		for (unsigned i = 0; i < TABLE_WORDS; i++)
			h = mix(h, work[c].table[i]);
	char hex[17];
	for (int i = 0; i < 16; i++)
		hex[i] = "0123456789abcdef"[h >> (60 - 4 * i) & 0xf];
	hex[16] = 0;
	kprintf("result 0x%s\n", hex);
}
