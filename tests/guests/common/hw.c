/* LAPIC (xAPIC MMIO), IOAPIC, 8259 PIC and i8254 PIT helpers. */
#include "guest.h"

#define LAPIC 0xfee00000UL
#define LAPIC_ID    0x020
#define LAPIC_TPR   0x080
#define LAPIC_EOI   0x0b0
#define LAPIC_SVR   0x0f0
#define LAPIC_ICRLO 0x300
#define LAPIC_ICRHI 0x310
#define ICR_BUSY    (1u << 12)

#define IOAPIC 0xfec00000UL

#define PIT_HZ 1193182u

void pic_mask_all(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void lapic_enable(void)
{
	mmio_write32(LAPIC + LAPIC_TPR, 0);
	mmio_write32(LAPIC + LAPIC_SVR, 0x100 | 0xff); /* enabled, spurious vector 255 */
}

uint32_t lapic_id(void)
{
	return mmio_read32(LAPIC + LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
	mmio_write32(LAPIC + LAPIC_EOI, 0);
}

void lapic_ipi(uint32_t apic_id, uint32_t icr_low)
{
	mmio_write32(LAPIC + LAPIC_ICRHI, apic_id << 24);
	mmio_write32(LAPIC + LAPIC_ICRLO, icr_low); /* this write sends */
	while (mmio_read32(LAPIC + LAPIC_ICRLO) & ICR_BUSY)
		;
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC, reg);
	mmio_write32(IOAPIC + 0x10, v);
}

/* Fixed delivery, physical destination, edge, active high, unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, uint32_t apic_id)
{
	ioapic_write(0x11 + 2 * pin, apic_id << 24);
	ioapic_write(0x10 + 2 * pin, vector);
}

/* Channel 0, mode 2 (rate generator): one IRQ0 every 1/hz s. */
void pit_periodic(unsigned hz)
{
	unsigned div = (PIT_HZ + hz / 2) / hz;

	outb(0x43, 0x34);
	outb(0x40, div & 0xff);
	outb(0x40, div >> 8);
}

/*
 * A polled clock from PIT channel 0 running freely (mode 2, 65536 counts =
 * 55 ms per wrap; its IRQ must stay masked). Only the CPU that started it
 * may read it, at least once per wrap.
 */
static uint64_t pit_ticks;
static uint16_t pit_last;

static uint16_t pit_read(void)
{
	outb(0x43, 0x00); /* latch channel 0 */
	uint8_t lo = inb(0x40);
	return (uint16_t)(lo | inb(0x40) << 8);
}

void pit_clock_start(void)
{
	outb(0x43, 0x34);
	outb(0x40, 0);
	outb(0x40, 0);
	pit_ticks = 0;
	pit_last = pit_read();
}

uint64_t pit_clock_us(void)
{
	uint16_t now = pit_read();

	pit_ticks += (uint16_t)(pit_last - now); /* counts down */
	pit_last = now;
	return pit_ticks * 1000000 / PIT_HZ;
}
