/* MP table: how a kernel without ACPI learns its CPUs, its IOAPIC and how
 * interrupts reach it. ISA IRQ 0 (the PIT) arrives on IOAPIC pin 2, as on
 * PCs and in the KVM backend's routing; every other line n on pin n. */
#include "arch/x86/boot.h"

#include <errno.h>
#include <string.h>

#define MPC_SPEC 4
#define APIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
#define IOAPIC_PINS 24

struct mpf_intel {
	char signature[4];
	uint32_t physptr;
	uint8_t length, specification, checksum, feature1, feature2, feature3,
		feature4, feature5;
} __attribute__((packed));

struct mpc_table {
	char signature[4];
	uint16_t length;
	uint8_t spec, checksum;
	char oem[8], productid[12];
	uint32_t oemptr;
	uint16_t oemsize, oemcount;
	uint32_t lapic;
	uint32_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag, reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstirq;
} __attribute__((packed));

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };
#define CPU_ENABLED 1
#define CPU_BOOTPROCESSOR 2
#define MPC_APIC_USABLE 1

uint8_t x86_checksum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + ((const uint8_t *)p)[i]);
	return sum;
}

int x86_mptable_write(struct guest_mem *m, uint64_t addr, uint32_t ncpus, struct err *e)
{
	size_t size = sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
		      ncpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
		      sizeof(struct mpc_ioapic) + IOAPIC_PINS * sizeof(struct mpc_intsrc) +
		      2 * sizeof(struct mpc_intsrc);
	uint8_t *base, *p;
	struct mpf_intel *mpf;
	struct mpc_table *mpc;
	uint16_t count = 0;
	const uint8_t ioapic_id = (uint8_t)ncpus;

	if (ncpus < 1 || ncpus > X86_MAX_CPUS)
		return err_set(e, -EINVAL, "cpus: %u is outside 1..%d", ncpus, X86_MAX_CPUS);
	base = mem_ptr(m, addr, size);
	if (!base)
		return err_set(e, -E2BIG, "MP table does not fit in guest RAM");
	memset(base, 0, size);

	mpf = (struct mpf_intel *)base;
	mpc = (struct mpc_table *)(mpf + 1);
	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(addr + sizeof(*mpf));
	mpf->length = 1; /* in 16-byte units */
	mpf->specification = MPC_SPEC;

	memcpy(mpc->signature, "PCMP", 4);
	mpc->spec = MPC_SPEC;
	memcpy(mpc->oem, "SMOLVM  ", 8);
	memcpy(mpc->productid, "SMOLVM 1    ", 12);
	mpc->lapic = X86_LAPIC_ADDR;
	p = (uint8_t *)(mpc + 1);

	for (uint32_t i = 0; i < ncpus; i++) {
		struct mpc_cpu *c = (struct mpc_cpu *)p;
		c->type = MP_PROCESSOR;
		c->apicid = (uint8_t)i;
		c->apicver = APIC_VERSION;
		c->cpuflag = CPU_ENABLED | (i == 0 ? CPU_BOOTPROCESSOR : 0);
		c->cpufeature = 0x600; /* family 6 */
		c->featureflag = 0x201; /* FPU, APIC */
		p += sizeof(*c);
		count++;
	}

	struct mpc_bus *bus = (struct mpc_bus *)p;
	bus->type = MP_BUS;
	bus->busid = 0;
	memcpy(bus->bustype, "ISA   ", 6);
	p += sizeof(*bus);
	count++;

	struct mpc_ioapic *io = (struct mpc_ioapic *)p;
	io->type = MP_IOAPIC;
	io->apicid = ioapic_id;
	io->apicver = IOAPIC_VERSION;
	io->flags = MPC_APIC_USABLE;
	io->apicaddr = X86_IOAPIC_ADDR;
	p += sizeof(*io);
	count++;

	/* Pin 0 carries the 8259's ExtINT; ISA IRQ 0 goes to pin 2 and
	 * IRQ 2 (the cascade) is not wired; lines 16-23 (device interrupts)
	 * are listed on the same bus, edge-triggered like the rest. */
	for (uint8_t irq = 0; irq < IOAPIC_PINS; irq++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;
		if (irq == 2)
			continue;
		s->type = MP_INTSRC;
		s->irqtype = MP_INT;
		s->srcbus = 0;
		s->srcbusirq = irq;
		s->dstapic = ioapic_id;
		s->dstirq = irq == 0 ? 2 : irq;
		p += sizeof(*s);
		count++;
	}
	struct mpc_intsrc *ext = (struct mpc_intsrc *)p;
	ext->type = MP_INTSRC;
	ext->irqtype = MP_EXTINT;
	ext->srcbus = 0;
	ext->srcbusirq = 0;
	ext->dstapic = ioapic_id;
	ext->dstirq = 0;
	p += sizeof(*ext);
	count++;

	/* Every local APIC: LINT0 ExtINT, LINT1 NMI. */
	for (uint8_t lint = 0; lint < 2; lint++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)p;
		s->type = MP_LINTSRC;
		s->irqtype = lint ? MP_NMI : MP_EXTINT;
		s->srcbus = 0;
		s->dstapic = 0xff;
		s->dstirq = lint;
		p += sizeof(*s);
		count++;
	}

	mpc->length = (uint16_t)(p - (uint8_t *)mpc);
	mpc->oemcount = count;
	mpc->checksum = (uint8_t)-x86_checksum(mpc, mpc->length);
	mpf->checksum = (uint8_t)-x86_checksum(mpf, sizeof(*mpf));
	return 0;
}
