/*
 * Starting application processors, one at a time: INIT-SIPI(-SIPI) into the
 * real-mode trampoline (ap_tramp.S), which enters long mode and calls the
 * guest's ap_main() on the AP's own kernel stack. ap_main() calls
 * ap_started() first; ap_start() returns once it has.
 */
#include "guest.h"

#define ICR_INIT 0x4500 /* INIT, level assert */
#define ICR_SIPI 0x4600 /* start-up; low byte = start page */

extern char tramp_start[], tramp_end[];
volatile uint64_t ap_stack_top; /* read by ap_entry64 (ap_tramp.S) */
static volatile unsigned ap_booting, ap_up;

unsigned ap_started(void)
{
	unsigned idx = ap_booting;

	cpu_init(idx);
	__atomic_store_n(&ap_up, idx, __ATOMIC_RELEASE);
	return idx;
}

static bool wait_up(unsigned idx, uint64_t us)
{
	uint64_t t0 = pit_clock_us();

	while (__atomic_load_n(&ap_up, __ATOMIC_ACQUIRE) != idx)
		if (pit_clock_us() - t0 > us)
			return false;
	return true;
}

void ap_start(unsigned idx, uint32_t apic_id)
{
	memcpy((void *)TRAMP_ADDR, tramp_start, tramp_end - tramp_start);
	ap_booting = idx;
	ap_stack_top = (uint64_t)cpu_stacks + (idx + 1) * STACK_SIZE;
	lapic_ipi(apic_id, ICR_INIT);
	lapic_ipi(apic_id, ICR_SIPI | TRAMP_ADDR >> 12);
	if (wait_up(idx, 10000))
		return;
	lapic_ipi(apic_id, ICR_SIPI | TRAMP_ADDR >> 12); /* second SIPI, as the MP spec says */
	if (!wait_up(idx, 1000000))
		fail("cpu %u (APIC id %u) did not start\n", idx, apic_id);
}
