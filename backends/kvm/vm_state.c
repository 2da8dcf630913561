/* The VM's state in a snapshot (see vm_state.h).
 *
 * Layout (sections, then fields):
 *   pic_master, pic_slave   the kvm_pic_state members
 *   ioapic    base_address ioregsel id irr redirtbl[0..23]
 *   pit       flags; ch0 ch1 ch2 {count latched_count ... count_load_time}
 *   clock     kvmclock, realtime_ns
 *
 * Time: the guest must not live in the past. The restore moves the
 * kvmclock forward by the host's wall time between save and restore (as
 * after a suspend), never backwards; each vCPU's TSC follows it (see
 * vcpu_state.c).
 *
 * Restore reads and checks everything before its first KVM_SET_* call. */
#include "vm_state.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define IOAPIC_DEFAULT_BASE 0xfec00000ull
#define MAX_CLOCK_NS ((uint64_t)INT64_MAX) /* KVM keeps the offset signed */

#define U8 SMOLVM_STATE_U8
#define U16 SMOLVM_STATE_U16
#define U32 SMOLVM_STATE_U32
#define U64 SMOLVM_STATE_U64

#define PIC(m) SMOLVM_FIELD(struct kvm_pic_state, m, U8, 1)
static const struct smolvm_state_field pic_fields[] = {
	PIC(last_irr), PIC(irr), PIC(imr), PIC(isr), PIC(priority_add), PIC(irq_base),
	PIC(read_reg_select), PIC(poll), PIC(special_mask), PIC(init_state), PIC(auto_eoi),
	PIC(rotate_on_auto_eoi), PIC(special_fully_nested_mode), PIC(init4), PIC(elcr),
	PIC(elcr_mask),
};

#define PIC_LIMIT(m, max) SMOLVM_LIMIT(struct kvm_pic_state, m, max)
static const struct smolvm_state_limit pic_limits[] = {
	PIC_LIMIT(priority_add, 7), PIC_LIMIT(read_reg_select, 1), PIC_LIMIT(poll, 1),
	PIC_LIMIT(special_mask, 1), PIC_LIMIT(init_state, 3), PIC_LIMIT(auto_eoi, 1),
	PIC_LIMIT(rotate_on_auto_eoi, 1), PIC_LIMIT(special_fully_nested_mode, 1),
	PIC_LIMIT(init4, 1),
};

static const struct smolvm_state_field ioapic_fields[] = {
	SMOLVM_FIELD(struct kvm_ioapic_state, base_address, U64, 1),
	SMOLVM_FIELD(struct kvm_ioapic_state, ioregsel, U32, 1),
	SMOLVM_FIELD(struct kvm_ioapic_state, id, U32, 1),
	SMOLVM_FIELD(struct kvm_ioapic_state, irr, U32, 1),
};

#define PITC(m, t) SMOLVM_FIELD(struct kvm_pit_channel_state, m, t, 1)
static const struct smolvm_state_field pit_fields[] = {
	PITC(count, U32), PITC(latched_count, U16), PITC(count_latched, U8),
	PITC(status_latched, U8), PITC(status, U8), PITC(read_state, U8),
	PITC(write_state, U8), PITC(write_latch, U8), PITC(rw_mode, U8), PITC(mode, U8),
	PITC(bcd, U8), PITC(gate, U8), PITC(count_load_time, U64),
};

#define PIT_LIMIT(m, max) SMOLVM_LIMIT(struct kvm_pit_channel_state, m, max)
static const struct smolvm_state_limit pit_limits[] = {
	PIT_LIMIT(count_latched, 3), PIT_LIMIT(status_latched, 1), PIT_LIMIT(read_state, 4),
	PIT_LIMIT(write_state, 4), PIT_LIMIT(rw_mode, 3),
	PIT_LIMIT(bcd, 1), PIT_LIMIT(gate, 1),
};

static const struct {
	const char *name;
	uint32_t chip;
} pics[] = {
	{ "pic_master", KVM_IRQCHIP_PIC_MASTER },
	{ "pic_slave", KVM_IRQCHIP_PIC_SLAVE },
};

int kvm_state_vm_save(const struct kvm_state_env *e, struct smolvm_state_writer *w)
{
	struct kvm_state_prefix p;
	struct smolvm_state_out o;
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct timespec ts;
	uint64_t realtime;

	kvm_state_out_init(e, &p, &o, w);
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = pics[i].chip;
		if (ioctl(e->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return kvm_state_fail_ioctl(e, "KVM_GET_IRQCHIP (PIC)");
		smolvm_state_begin(&o, pics[i].name);
		KVM_PUT_TABLE(&o, pic_fields, &chip.chip.pic);
		smolvm_state_end(&o);
	}

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(e->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_IRQCHIP (IOAPIC)");
	smolvm_state_begin(&o, "ioapic");
	KVM_PUT_TABLE(&o, ioapic_fields, &chip.chip.ioapic);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "redirtbl[%d]", i);
		smolvm_state_put_u64(&o, name, chip.chip.ioapic.redirtbl[i].bits);
	}
	smolvm_state_end(&o);

	if (ioctl(e->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_PIT2");
	smolvm_state_begin(&o, "pit");
	smolvm_state_put_u32(&o, "flags", pit.flags);
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "ch%d", i);
		smolvm_state_begin(&o, name);
		KVM_PUT_TABLE(&o, pit_fields, &pit.channels[i]);
		smolvm_state_end(&o);
	}
	smolvm_state_end(&o);

	/* The kvmclock and the wall time it was read at, as one pair. */
	memset(&clock, 0, sizeof(clock));
	if (ioctl(e->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_CLOCK");
	clock_gettime(CLOCK_REALTIME, &ts);
	realtime = (clock.flags & KVM_CLOCK_REALTIME)
			   ? clock.realtime
			   : (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	smolvm_state_begin(&o, "clock");
	smolvm_state_put_u64(&o, "kvmclock", clock.clock);
	smolvm_state_put_u64(&o, "realtime_ns", realtime);
	smolvm_state_end(&o);
	return smolvm_state_out_done(&o);
}

struct vm_state {
	struct kvm_irqchip pic[2], ioapic;
	struct kvm_pit_state2 pit;
	uint64_t kvmclock, realtime;
};

static int load_vm(struct smolvm_state_in *in, struct vm_state *s)
{
	struct kvm_ioapic_state *io = &s->ioapic.chip.ioapic;
	uint32_t flags;
	int rc;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++) {
		s->pic[i].chip_id = pics[i].chip;
		if ((rc = smolvm_state_enter(in, pics[i].name)) ||
		    (rc = KVM_GET_TABLE(in, pic_fields, &s->pic[i].chip.pic)) ||
		    (rc = KVM_CHECK_LIMITS(in, pic_limits, &s->pic[i].chip.pic)))
			return rc;
		smolvm_state_leave(in);
	}

	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if ((rc = smolvm_state_enter(in, "ioapic")) ||
	    (rc = KVM_GET_TABLE(in, ioapic_fields, io)))
		return rc;
	/* KVM takes base_address as the IOAPIC's MMIO window. */
	if (io->base_address != IOAPIC_DEFAULT_BASE)
		return smolvm_state_bad(in, "base_address", "0x%llx (the IOAPIC is at 0x%llx)",
					(unsigned long long)io->base_address, IOAPIC_DEFAULT_BASE);
	if (io->ioregsel > 0xff)
		return smolvm_state_bad(in, "ioregsel", "0x%x is not an 8-bit register index",
					io->ioregsel);
	if (io->id > 0xf)
		return smolvm_state_bad(in, "id", "%u is not a 4-bit IOAPIC id", io->id);
	if (io->irr >> KVM_IOAPIC_NUM_PINS)
		return smolvm_state_bad(in, "irr", "0x%x has bits above pin %d", io->irr,
					KVM_IOAPIC_NUM_PINS - 1);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "redirtbl[%d]", i);
		uint64_t v;
		if ((rc = smolvm_state_get_u64(in, name, &v)))
			return rc;
		io->redirtbl[i].bits = v;
	}
	smolvm_state_leave(in);

	if ((rc = smolvm_state_enter(in, "pit")) ||
	    (rc = smolvm_state_get_u32(in, "flags", &flags)))
		return rc;
	if (flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON))
		return smolvm_state_bad(in, "flags", "0x%x has unknown bits", flags);
	s->pit.flags = flags;
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &s->pit.channels[i];
		char name[8];
		snprintf(name, sizeof(name), "ch%d", i);
		if ((rc = smolvm_state_enter(in, name)) ||
		    (rc = KVM_GET_TABLE(in, pit_fields, c)) ||
		    (rc = KVM_CHECK_LIMITS(in, pit_limits, c)))
			return rc;
		if (c->count > 0x10000)
			return smolvm_state_bad(in, "count", "%u is above 65536", c->count);
		if (c->mode > 5 && c->mode != 0xff) /* 0xff: never programmed */
			return smolvm_state_bad(in, "mode", "%u is not a PIT mode (0..5, 255)",
						c->mode);
		smolvm_state_leave(in);
	}
	smolvm_state_leave(in);

	if ((rc = smolvm_state_enter(in, "clock")) ||
	    (rc = smolvm_state_get_u64(in, "kvmclock", &s->kvmclock)) ||
	    (rc = smolvm_state_get_u64(in, "realtime_ns", &s->realtime)))
		return rc;
	if (s->kvmclock > MAX_CLOCK_NS)
		return smolvm_state_bad(in, "kvmclock", "%llu ns is out of range",
					(unsigned long long)s->kvmclock);
	smolvm_state_leave(in);
	return 0;
}

int kvm_state_vm_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r)
{
	struct kvm_state_prefix p;
	struct smolvm_state_in in;
	struct vm_state s;
	struct kvm_clock_data clock;
	struct timespec ts;
	uint64_t now, elapsed;
	int rc;

	memset(&s, 0, sizeof(s));
	kvm_state_in_init(e, &p, &in, r);
	rc = load_vm(&in, &s);
	smolvm_state_in_done(&in);
	if (rc)
		return rc;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++)
		if (ioctl(e->vm_fd, KVM_SET_IRQCHIP, &s.pic[i]) < 0)
			return kvm_state_fail_ioctl(e, "KVM_SET_IRQCHIP (PIC)");
	if (ioctl(e->vm_fd, KVM_SET_IRQCHIP, &s.ioapic) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_IRQCHIP (IOAPIC)");
	if (ioctl(e->vm_fd, KVM_SET_PIT2, &s.pit) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_PIT2");

	/* Forward by the wall time since the save, never backwards. */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	elapsed = now > s.realtime ? now - s.realtime : 0;
	memset(&clock, 0, sizeof(clock));
	clock.clock = elapsed > MAX_CLOCK_NS - s.kvmclock ? MAX_CLOCK_NS : s.kvmclock + elapsed;
	if (ioctl(e->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_CLOCK");
	return 0;
}
