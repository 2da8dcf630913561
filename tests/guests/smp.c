/*
 * smp: starts the other CPUs with INIT-SIPI-SIPI; every CPU adds COUNT to
 * a shared counter with "lock incq" from user mode (native on emulating
 * hosts, where kernel mode would take ~0.5 s per 100000), then the BSP
 * checks the sum. CPU count: cmdline "cpus=N" (APIC IDs 0..N-1), else the
 * MP table, else 1.
 */
#include "guest.h"

#define COUNT 100000
#define MP_FLOAT_SIG 0x5f504d5f /* "_MP_" */
#define MP_CONF_SIG  0x504d4350 /* "PCMP" */

static volatile unsigned aps_done;
static volatile uint64_t counter USER_DATA;

USER_TEXT static uint64_t count_user(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < COUNT; i++)
		__asm__ volatile("lock incq %0" : "+m"(counter));
	return 0;
}

/* Called on the AP's own stack once it is in long mode. */
void ap_main(void)
{
	unsigned idx = ap_started();

	kprintf("cpu %u up\n", idx);
	run_user(count_user, NULL, user_stack_top(idx));
	__atomic_fetch_add(&aps_done, 1, __ATOMIC_RELEASE);
}

static const uint8_t *mp_scan(uintptr_t base, size_t len)
{
	for (uintptr_t p = base; p + 16 <= base + len; p += 16) {
		if (*(const volatile uint32_t *)p != MP_FLOAT_SIG)
			continue;
		uint8_t sum = 0;
		for (int i = 0; i < 16; i++)
			sum += ((const uint8_t *)p)[i];
		if (!sum)
			return (const uint8_t *)p;
	}
	return NULL;
}

/* Enabled processors in the MP table: count, and the APIC IDs of the first MAX_CPUS. */
static unsigned mp_cpus(uint32_t *ids)
{
	const uint8_t *f = mp_scan(0x9fc00, 0x400);

	if (!f)
		f = mp_scan(0xf0000, 0x10000);
	if (!f)
		return 0;
	uint32_t conf = *(const uint32_t *)(f + 4);
	if (!conf) { /* MP spec default configuration: two CPUs */
		ids[0] = 0;
		ids[1] = 1;
		return 2;
	}
	const uint8_t *c = (const uint8_t *)(uintptr_t)conf;
	if (*(const uint32_t *)c != MP_CONF_SIG)
		return 0;
	const uint8_t *e = c + 44, *end = c + *(const uint16_t *)(c + 4);
	unsigned entries = *(const uint16_t *)(c + 34), n = 0;
	for (unsigned i = 0; i < entries && e < end; i++) {
		if (e[0] == 0) { /* processor: [1] APIC ID, [3] flags bit 0 = enabled */
			if (e[3] & 1) {
				if (n < MAX_CPUS)
					ids[n] = e[1];
				n++;
			}
			e += 20;
		} else if (e[0] <= 4) { /* bus, I/O APIC, interrupt entries */
			e += 8;
		} else {
			break;
		}
	}
	return n;
}

void guest_main(const char *cmdline)
{
	uint32_t ids[MAX_CPUS], self = lapic_id();
	unsigned long v;
	unsigned n;
	const char *src;

	if (cmdline_uint(cmdline, "cpus", &v)) {
		if (v < 1 || v > MAX_CPUS)
			fail("cpus=%lu not in 1..%d\n", v, MAX_CPUS);
		n = v;
		for (unsigned i = 0; i < n; i++)
			ids[i] = i;
		src = "command line";
	} else if ((n = mp_cpus(ids)) > 0) {
		if (n > MAX_CPUS)
			fail("MP table lists %u cpus, at most %d supported\n", n, MAX_CPUS);
		src = "MP table";
	} else {
		n = 1;
		ids[0] = self;
		src = "default";
	}
	bool found = false;
	for (unsigned i = 0; i < n; i++)
		found |= ids[i] == self;
	if (!found)
		fail("boot CPU's APIC id %u is not among the %u cpus\n", self, n);
	kprintf("smp: starting %u cpus (%s)\n", n, src);

	pic_mask_all();
	lapic_enable();
	pit_clock_start();
	unsigned idx = 1;
	for (unsigned i = 0; i < n; i++)
		if (ids[i] != self)
			ap_start(idx++, ids[i]);

	run_user(count_user, NULL, user_stack_top(0));
	uint64_t t0 = pit_clock_us();
	while (aps_done != n - 1)
		if (pit_clock_us() - t0 > 10000000)
			fail("only %u of %u APs finished\n", aps_done, n - 1);

	uint64_t got = counter, want = (uint64_t)n * COUNT;
	kprintf("smp: %u cpus, counter=%lu\n", n, got);
	if (got != want)
		fail("counter=%lu, expected %lu\n", got, want);
	kprintf("smp: ok\n");
}
