/*
 * ticker: PIT at 100 Hz -> IOAPIC pin 2 -> LAPIC; prints "tick N" every
 * 10th interrupt (~100 ms), halting in between. "ticks=N" ends after N;
 * "pit_pin=P" uses IOAPIC pin P instead (a VMM keeping KVM's default
 * routing delivers GSI 0 on pin 0).
 */
#include "guest.h"

#define TIMER_VECTOR 0x20
#define PIT_IOAPIC_PIN 2 /* ISA IRQ0 is wired to pin 2 (as on PCs and QEMU) */
#define IRQS_PER_TICK 10

static volatile unsigned long irqs;

static void timer_irq(struct trap_frame *f)
{
	(void)f;
	irqs++;
	lapic_eoi();
}

void guest_main(const char *cmdline)
{
	unsigned long limit = 0, pin = PIT_IOAPIC_PIN;
	bool bounded = cmdline_uint(cmdline, "ticks", &limit);

	cmdline_uint(cmdline, "pit_pin", &pin);
	if (pin > 23)
		fail("pit_pin=%lu: the IOAPIC has pins 0..23\n", pin);

	kprintf("ticker: start\n");
	if (bounded && limit == 0)
		return;
	pic_mask_all();
	lapic_enable();
	trap_set_handler(TIMER_VECTOR, timer_irq);
	ioapic_route(pin, TIMER_VECTOR, lapic_id());
	pit_periodic(100);

	/* tick 0 on the first interrupt, then one per IRQS_PER_TICK. */
	unsigned long next = 1, tick = 0;
	for (;;) {
		/* sti's one-instruction shadow: no IRQ is lost before hlt. */
		__asm__ volatile("sti; hlt; cli" : : : "memory");
		if (irqs < next)
			continue;
		kprintf("tick %lu\n", tick++);
		next += IRQS_PER_TICK;
		if (bounded && tick == limit)
			return; /* start_c resets */
	}
}
