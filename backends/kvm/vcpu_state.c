/* A vCPU's state in a snapshot (see vcpu_state.h).
 *
 * Layout (sections, then fields):
 *   vcpu      index, mp_state, tsc_khz
 *   cpuid     nent, entries (kvm_cpuid_entry2[nent])
 *   regs      rax .. r15, rip, rflags
 *   sregs     cs ds es fs gs ss tr ldt {base limit selector type present dpl
 *             db s l g avl unusable}, gdt idt {base limit}, cr0 cr2 cr3 cr4
 *             cr8 efer apic_base; pdptr0..3 (KVM_GET_SREGS2, PAE paging) or
 *             interrupt_bitmap (KVM_GET_SREGS)
 *   fpu       xsave_size + xsave (KVM_GET_XSAVE[2]) or legacy (kvm_fpu)
 *   xcrs      nr, xcr<N>                     (hosts with KVM_CAP_XCRS)
 *   debugregs db0..db3, dr6, dr7
 *   msrs      count, indices (le32[count]), one U64 per MSR named "0x<index>",
 *             tsc_kvmclock
 *   lapic     regs (kvm_lapic_state)
 *   events    the kvm_vcpu_events members by name ("exception.nr", ...)
 *
 * Time: each vCPU's TSC moves forward with the kvmclock (which
 * vm_state.c's restore moved forward by the host's wall time since the
 * save): the TSC is saved with the kvmclock it was read at
 * ("msrs.tsc_kvmclock") and restored as TSC + (kvmclock now - that) *
 * tsc_khz, so TSC and kvmclock stay consistent (KVM's documented migration
 * rule) and a guest whose clocksource is the TSC sees the same jump;
 * TSC-deadline timers that expired meanwhile fire at once. The vCPUs' TSCs
 * stay in step (the same rule for each; KVM also matches TSC writes made
 * within a second). On kvm_pvm the guest's TSC is the host's and writes to
 * it are ignored, which amounts to the same thing.
 *
 * Restore reads and checks everything before its first KVM_SET_* call. */
#include "vcpu_state.h"

#include <asm/kvm_para.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "cpuid.h"

#define MAX_MSRS 1024
#define MAX_XSAVE (1u << 20)
#define XSAVE_LEGACY_SIZE 4096 /* struct kvm_xsave */
#define RFLAGS_VALID 0x3f7fd7ull /* defined bits, bit 1 included */
/* SCE LME LMA NXE SVME LMSLE FFXSR TCE AUTOIBRS: KVM_SET_SREGS does not
 * check EFER's reserved bits itself. */
#define EFER_VALID 0x20fd01ull
#define MAX_TSC_KHZ 100000000u /* 100 GHz */

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* ---- MSRs -------------------------------------------------------------------- */

/* KVM_GET_MSR_INDEX_LIST. */
static int msr_index_list(const struct kvm_state_env *e, struct kvm_msr_list **out)
{
	for (uint32_t n = 256;; n *= 2) {
		struct kvm_msr_list *l = calloc(1, sizeof(*l) + n * sizeof(uint32_t));
		if (!l)
			return kvm_state_fail(e, -ENOMEM, "out of memory");
		l->nmsrs = n;
		if (ioctl(e->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0) {
			*out = l;
			return 0;
		}
		int code = errno;
		free(l);
		if (code != E2BIG || n >= 16 * MAX_MSRS) {
			errno = code;
			return kvm_state_fail_ioctl(e, "KVM_GET_MSR_INDEX_LIST");
		}
	}
}

/* MSRs saved besides KVM_GET_MSR_INDEX_LIST (which leaves out those KVM
 * also exposes elsewhere, e.g. EFER and APIC base in sregs); kept only
 * when KVM_GET_MSRS can read them. */
static const uint32_t extra_msrs[] = {
	MSR_IA32_TSC, 0x1b /* APIC_BASE */, 0x3b /* TSC_ADJUST */, 0x48 /* SPEC_CTRL */,
	0x174, 0x175, 0x176 /* SYSENTER_CS/ESP/EIP */, 0x1a0 /* MISC_ENABLE */,
	0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* MTRR variable */
	0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
	0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, /* MTRR fixed */
	0x26c, 0x26d, 0x26e, 0x26f,
	0x277 /* PAT */, 0x2ff /* MTRR_DEF_TYPE */, MSR_IA32_TSC_DEADLINE, 0xda0 /* XSS */,
	0xc0000080 /* EFER */, 0xc0000081 /* STAR */, 0xc0000082 /* LSTAR */,
	0xc0000083 /* CSTAR */, 0xc0000084 /* SFMASK */, 0xc0000100 /* FS_BASE */,
	0xc0000101 /* GS_BASE */, 0xc0000102 /* KERNEL_GS_BASE */, 0xc0000103 /* TSC_AUX */,
	MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME, MSR_KVM_WALL_CLOCK_NEW,
	MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME,
	MSR_KVM_PV_EOI_EN, MSR_KVM_POLL_CONTROL, MSR_KVM_ASYNC_PF_INT,
};

static int msr_listed(const struct kvm_msr_list *l, uint32_t index)
{
	for (uint32_t i = 0; i < l->nmsrs; i++)
		if (l->indices[i] == index)
			return 1;
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(extra_msrs); i++)
		if (extra_msrs[i] == index)
			return 1;
	return 0;
}

/* ---- field tables ------------------------------------------------------ */

#define U8 SMOLVM_STATE_U8
#define U16 SMOLVM_STATE_U16
#define U32 SMOLVM_STATE_U32
#define U64 SMOLVM_STATE_U64

#define REG(m) SMOLVM_FIELD(struct kvm_regs, m, U64, 1)
static const struct smolvm_state_field regs_fields[] = {
	REG(rax), REG(rbx), REG(rcx), REG(rdx), REG(rsi), REG(rdi), REG(rsp), REG(rbp),
	REG(r8), REG(r9), REG(r10), REG(r11), REG(r12), REG(r13), REG(r14), REG(r15),
	REG(rip), REG(rflags),
};

#define SEG(m, t) SMOLVM_FIELD(struct kvm_segment, m, t, 1)
static const struct smolvm_state_field seg_fields[] = {
	SEG(base, U64), SEG(limit, U32), SEG(selector, U16), SEG(type, U8),
	SEG(present, U8), SEG(dpl, U8), SEG(db, U8), SEG(s, U8), SEG(l, U8),
	SEG(g, U8), SEG(avl, U8), SEG(unusable, U8),
};

#define SEG_LIMIT(m, max) SMOLVM_LIMIT(struct kvm_segment, m, max)
static const struct smolvm_state_limit seg_limits[] = {
	SEG_LIMIT(type, 15), SEG_LIMIT(present, 1), SEG_LIMIT(dpl, 3), SEG_LIMIT(db, 1),
	SEG_LIMIT(s, 1), SEG_LIMIT(l, 1), SEG_LIMIT(g, 1), SEG_LIMIT(avl, 1),
	SEG_LIMIT(unusable, 1),
};

static const struct smolvm_state_field dtable_fields[] = {
	SMOLVM_FIELD(struct kvm_dtable, base, U64, 1),
	SMOLVM_FIELD(struct kvm_dtable, limit, U16, 1),
};

/* The part kvm_sregs and kvm_sregs2 share, cs .. apic_base. */
_Static_assert(offsetof(struct kvm_sregs, interrupt_bitmap) ==
	       offsetof(struct kvm_sregs2, flags), "sregs layouts differ");
#define SREGS_COMMON offsetof(struct kvm_sregs2, flags)

static const struct {
	const char *name;
	size_t offset;
} sregs_segs[] = {
	{ "cs", offsetof(struct kvm_sregs2, cs) }, { "ds", offsetof(struct kvm_sregs2, ds) },
	{ "es", offsetof(struct kvm_sregs2, es) }, { "fs", offsetof(struct kvm_sregs2, fs) },
	{ "gs", offsetof(struct kvm_sregs2, gs) }, { "ss", offsetof(struct kvm_sregs2, ss) },
	{ "tr", offsetof(struct kvm_sregs2, tr) }, { "ldt", offsetof(struct kvm_sregs2, ldt) },
}, sregs_dtables[] = {
	{ "gdt", offsetof(struct kvm_sregs2, gdt) }, { "idt", offsetof(struct kvm_sregs2, idt) },
};

#define SREG(m) SMOLVM_FIELD(struct kvm_sregs2, m, U64, 1)
static const struct smolvm_state_field sregs_fields[] = {
	SREG(cr0), SREG(cr2), SREG(cr3), SREG(cr4), SREG(cr8), SREG(efer), SREG(apic_base),
};

static const struct smolvm_state_field debugregs_fields[] = {
	SMOLVM_FIELD_NAMED("db0", struct kvm_debugregs, db[0], U64, 1),
	SMOLVM_FIELD_NAMED("db1", struct kvm_debugregs, db[1], U64, 1),
	SMOLVM_FIELD_NAMED("db2", struct kvm_debugregs, db[2], U64, 1),
	SMOLVM_FIELD_NAMED("db3", struct kvm_debugregs, db[3], U64, 1),
	SMOLVM_FIELD(struct kvm_debugregs, dr6, U64, 1),
	SMOLVM_FIELD(struct kvm_debugregs, dr7, U64, 1),
};

#define EV(m, t) SMOLVM_FIELD(struct kvm_vcpu_events, m, t, 1)
static const struct smolvm_state_field events_fields[] = {
	EV(exception.injected, U8), EV(exception.nr, U8), EV(exception.has_error_code, U8),
	EV(exception.pending, U8), EV(exception.error_code, U32),
	EV(interrupt.injected, U8), EV(interrupt.nr, U8), EV(interrupt.soft, U8),
	EV(interrupt.shadow, U8),
	EV(nmi.injected, U8), EV(nmi.pending, U8), EV(nmi.masked, U8),
	EV(sipi_vector, U32), EV(flags, U32),
	EV(smi.smm, U8), EV(smi.pending, U8), EV(smi.smm_inside_nmi, U8),
	EV(smi.latched_init, U8), EV(triple_fault.pending, U8),
	EV(exception_has_payload, U8), EV(exception_payload, U64),
};

#define EV_LIMIT(m, max) SMOLVM_LIMIT(struct kvm_vcpu_events, m, max)
static const struct smolvm_state_limit events_limits[] = {
	EV_LIMIT(exception.injected, 1), EV_LIMIT(exception.nr, 31),
	EV_LIMIT(exception.has_error_code, 1), EV_LIMIT(exception.pending, 1),
	EV_LIMIT(interrupt.injected, 1), EV_LIMIT(interrupt.soft, 1),
	EV_LIMIT(interrupt.shadow, KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI),
	EV_LIMIT(nmi.injected, 1), EV_LIMIT(nmi.pending, 1), EV_LIMIT(nmi.masked, 1),
	EV_LIMIT(smi.smm, 0), EV_LIMIT(smi.pending, 1), EV_LIMIT(smi.smm_inside_nmi, 0),
	EV_LIMIT(smi.latched_init, 1), EV_LIMIT(triple_fault.pending, 0),
	EV_LIMIT(exception_has_payload, 0),
};

/* ---- vCPU save --------------------------------------------------------- */

static int save_sregs(const struct kvm_state_env *e, struct smolvm_state_out *o)
{
	struct kvm_sregs2 s2;
	struct kvm_sregs s;
	int have_bitmap = 0;

	memset(&s2, 0, sizeof(s2));
	if (kvm_state_has_cap(e, KVM_CAP_SREGS2)) {
		if (ioctl(e->vcpu_fd, KVM_GET_SREGS2, &s2) < 0)
			return kvm_state_fail_ioctl(e, "KVM_GET_SREGS2");
	} else {
		if (ioctl(e->vcpu_fd, KVM_GET_SREGS, &s) < 0)
			return kvm_state_fail_ioctl(e, "KVM_GET_SREGS");
		memcpy(&s2, &s, SREGS_COMMON);
		have_bitmap = 1;
	}
	smolvm_state_begin(o, "sregs");
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_segs); i++) {
		smolvm_state_begin(o, sregs_segs[i].name);
		KVM_PUT_TABLE(o, seg_fields, (const char *)&s2 + sregs_segs[i].offset);
		smolvm_state_end(o);
	}
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_dtables); i++) {
		smolvm_state_begin(o, sregs_dtables[i].name);
		KVM_PUT_TABLE(o, dtable_fields, (const char *)&s2 + sregs_dtables[i].offset);
		smolvm_state_end(o);
	}
	KVM_PUT_TABLE(o, sregs_fields, &s2);
	if (s2.flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		smolvm_state_put_u64(o, "pdptr0", s2.pdptrs[0]);
		smolvm_state_put_u64(o, "pdptr1", s2.pdptrs[1]);
		smolvm_state_put_u64(o, "pdptr2", s2.pdptrs[2]);
		smolvm_state_put_u64(o, "pdptr3", s2.pdptrs[3]);
	}
	/* The injected interrupt is in the events too; kept for old hosts. */
	if (have_bitmap)
		smolvm_state_put_bytes(o, "interrupt_bitmap", s.interrupt_bitmap,
				       sizeof(s.interrupt_bitmap));
	smolvm_state_end(o);
	return 0;
}

static int save_fpu(const struct kvm_state_env *e, struct smolvm_state_out *o)
{
	smolvm_state_begin(o, "fpu");
	if (kvm_state_has_cap(e, KVM_CAP_XSAVE)) {
		int xsave2 = kvm_state_has_cap(e, KVM_CAP_XSAVE2);
		uint32_t size = xsave2 > XSAVE_LEGACY_SIZE ? (uint32_t)xsave2 : XSAVE_LEGACY_SIZE;
		void *buf;

		if (size > MAX_XSAVE)
			return kvm_state_fail(e, -E2BIG, "KVM's XSAVE area has %u bytes", size);
		buf = calloc(1, size);
		if (!buf)
			return kvm_state_fail(e, -ENOMEM, "out of memory");
		if (ioctl(e->vcpu_fd, xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf) < 0) {
			int rc = kvm_state_fail_ioctl(e, xsave2 ? "KVM_GET_XSAVE2"
								: "KVM_GET_XSAVE");
			free(buf);
			return rc;
		}
		smolvm_state_put_u32(o, "xsave_size", size);
		smolvm_state_put_bytes(o, "xsave", buf, size);
		free(buf);
	} else {
		struct kvm_fpu fpu;
		if (ioctl(e->vcpu_fd, KVM_GET_FPU, &fpu) < 0)
			return kvm_state_fail_ioctl(e, "KVM_GET_FPU");
		smolvm_state_put_bytes(o, "legacy", &fpu, sizeof(fpu));
	}
	smolvm_state_end(o);
	return 0;
}

static int save_xcrs(const struct kvm_state_env *e, struct smolvm_state_out *o)
{
	struct kvm_xcrs x;

	if (!kvm_state_has_cap(e, KVM_CAP_XCRS))
		return 0;
	memset(&x, 0, sizeof(x));
	if (ioctl(e->vcpu_fd, KVM_GET_XCRS, &x) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_XCRS");
	if (x.nr_xcrs > KVM_MAX_XCRS)
		return kvm_state_fail(e, -EIO, "KVM_GET_XCRS returned %u registers", x.nr_xcrs);
	smolvm_state_begin(o, "xcrs");
	smolvm_state_put_u32(o, "nr", x.nr_xcrs);
	for (uint32_t i = 0; i < x.nr_xcrs; i++) {
		char name[16];
		if (x.xcrs[i].xcr >= KVM_MAX_XCRS)
			return kvm_state_fail(e, -EIO, "KVM_GET_XCRS returned XCR%u",
					      x.xcrs[i].xcr);
		snprintf(name, sizeof(name), "xcr%u", x.xcrs[i].xcr);
		smolvm_state_put_u64(o, name, x.xcrs[i].value);
	}
	smolvm_state_end(o);
	return 0;
}

/* The MSRs KVM lists plus extra_msrs, minus those KVM_GET_MSRS refuses. */
static int save_msrs(const struct kvm_state_env *e, struct smolvm_state_out *o)
{
	struct kvm_msr_list *list = NULL;
	struct kvm_msrs *m = NULL;
	struct kvm_clock_data clock;
	uint32_t *indices = NULL;
	uint32_t n = 0, cap;
	int rc = msr_index_list(e, &list);

	if (rc)
		return rc;
	cap = list->nmsrs + (uint32_t)SMOLVM_ARRAY_LEN(extra_msrs);
	m = calloc(1, sizeof(*m) + cap * sizeof(struct kvm_msr_entry));
	indices = calloc(cap, sizeof(*indices));
	if (!m || !indices) {
		rc = kvm_state_fail(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < cap; i++) {
		uint32_t idx = i < list->nmsrs ? list->indices[i]
					       : extra_msrs[i - list->nmsrs];
		int dup = 0;
		for (uint32_t j = 0; j < n && !dup; j++)
			dup = m->entries[j].index == idx;
		if (!dup)
			m->entries[n++].index = idx;
	}
	/* KVM_GET_MSRS stops at the first MSR it cannot read: drop that one
	 * and go on from there. */
	for (uint32_t done = 0; done < n;) {
		struct kvm_msrs *part = calloc(1, sizeof(*part) +
					       (n - done) * sizeof(struct kvm_msr_entry));
		int got;

		if (!part) {
			rc = kvm_state_fail(e, -ENOMEM, "out of memory");
			goto out;
		}
		part->nmsrs = n - done;
		memcpy(part->entries, &m->entries[done],
		       (n - done) * sizeof(struct kvm_msr_entry));
		got = ioctl(e->vcpu_fd, KVM_GET_MSRS, part);
		if (got < 0) {
			free(part);
			rc = kvm_state_fail_ioctl(e, "KVM_GET_MSRS");
			goto out;
		}
		memcpy(&m->entries[done], part->entries,
		       (size_t)got * sizeof(struct kvm_msr_entry));
		free(part);
		done += (uint32_t)got;
		if (done < n) {
			memmove(&m->entries[done], &m->entries[done + 1],
				(n - done - 1) * sizeof(struct kvm_msr_entry));
			n--;
		}
	}
	if (n > MAX_MSRS) {
		rc = kvm_state_fail(e, -E2BIG, "%u MSRs, more than the %u a restore accepts", n,
				    MAX_MSRS);
		goto out;
	}
	/* The kvmclock at (about) the time the TSC was read. */
	memset(&clock, 0, sizeof(clock));
	if (ioctl(e->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		rc = kvm_state_fail_ioctl(e, "KVM_GET_CLOCK");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		indices[i] = htole32(m->entries[i].index);
	smolvm_state_begin(o, "msrs");
	smolvm_state_put_u32(o, "count", n);
	smolvm_state_put_bytes(o, "indices", indices, n * (uint32_t)sizeof(*indices));
	smolvm_state_put_u64(o, "tsc_kvmclock", clock.clock);
	for (uint32_t i = 0; i < n; i++) {
		char name[16];
		snprintf(name, sizeof(name), "0x%x", m->entries[i].index);
		smolvm_state_put_u64(o, name, m->entries[i].data);
	}
	smolvm_state_end(o);
out:
	free(indices);
	free(m);
	free(list);
	return rc;
}

int kvm_state_vcpu_save(const struct kvm_state_env *e, struct smolvm_state_writer *w)
{
	struct kvm_state_prefix p;
	struct smolvm_state_out o;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_cpuid2 *cpuid = NULL;
	int tsc_khz, rc;

	/* KVM_GET_MP_STATE first: it accepts pending INIT/SIPI, which
	 * changes the registers and the LAPIC. */
	if (ioctl(e->vcpu_fd, KVM_GET_MP_STATE, &mp) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_MP_STATE");
	tsc_khz = ioctl(e->vcpu_fd, KVM_GET_TSC_KHZ, 0);
	kvm_state_out_init(e, &p, &o, w);
	smolvm_state_begin(&o, "vcpu");
	smolvm_state_put_u32(&o, "index", e->vcpu_index);
	smolvm_state_put_u32(&o, "mp_state", mp.mp_state);
	smolvm_state_put_u32(&o, "tsc_khz", tsc_khz > 0 ? (uint32_t)tsc_khz : 0);
	smolvm_state_end(&o);

	rc = kvm_cpuid_read(e, e->vcpu_fd, KVM_GET_CPUID2, "KVM_GET_CPUID2", &cpuid);
	if (rc)
		return rc;
	smolvm_state_begin(&o, "cpuid");
	smolvm_state_put_u32(&o, "nent", cpuid->nent);
	smolvm_state_put_bytes(&o, "entries", cpuid->entries,
			       cpuid->nent * (uint32_t)sizeof(struct kvm_cpuid_entry2));
	smolvm_state_end(&o);
	free(cpuid);

	if (ioctl(e->vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_REGS");
	smolvm_state_begin(&o, "regs");
	KVM_PUT_TABLE(&o, regs_fields, &regs);
	smolvm_state_end(&o);

	if ((rc = save_sregs(e, &o)) || (rc = save_fpu(e, &o)) || (rc = save_xcrs(e, &o)))
		return rc;

	if (ioctl(e->vcpu_fd, KVM_GET_DEBUGREGS, &dregs) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_DEBUGREGS");
	smolvm_state_begin(&o, "debugregs");
	KVM_PUT_TABLE(&o, debugregs_fields, &dregs);
	smolvm_state_end(&o);

	if ((rc = save_msrs(e, &o)))
		return rc;

	if (ioctl(e->vcpu_fd, KVM_GET_LAPIC, &lapic) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_LAPIC");
	smolvm_state_begin(&o, "lapic");
	smolvm_state_put_bytes(&o, "regs", lapic.regs, sizeof(lapic.regs));
	smolvm_state_end(&o);

	/* Last: the other GETs may still move pending events. */
	memset(&ev, 0, sizeof(ev));
	if (ioctl(e->vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return kvm_state_fail_ioctl(e, "KVM_GET_VCPU_EVENTS");
	smolvm_state_begin(&o, "events");
	KVM_PUT_TABLE(&o, events_fields, &ev);
	smolvm_state_end(&o);
	return smolvm_state_out_done(&o);
}

/* ---- vCPU restore ------------------------------------------------------ */

struct vcpu_state {
	uint32_t mp_state, tsc_khz;
	struct kvm_cpuid2 *cpuid;
	struct kvm_regs regs;
	struct kvm_sregs2 sregs;
	uint64_t bitmap[(KVM_NR_INTERRUPTS + 63) / 64];
	void *xsave; /* or fpu */
	struct kvm_fpu fpu;
	int have_xcrs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_msrs *msrs; /* without TSC_DEADLINE */
	int tsc_slot;          /* MSR_IA32_TSC in msrs, or -1 */
	uint64_t tsc_kvmclock; /* the kvmclock when the TSC was read */
	int have_deadline;
	uint64_t deadline;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
};

static int load_cpuid(struct smolvm_state_in *in, const struct kvm_state_env *e,
		      struct vcpu_state *s)
{
	uint32_t nent;
	int rc;

	if ((rc = smolvm_state_enter(in, "cpuid")) ||
	    (rc = smolvm_state_get_u32(in, "nent", &nent)))
		return rc;
	if (!nent || nent > KVM_CPUID_MAX_ENTRIES)
		return smolvm_state_bad(in, "nent", "%u entries (1..%u)", nent,
					KVM_CPUID_MAX_ENTRIES);
	s->cpuid = kvm_cpuid_alloc(nent);
	if (!s->cpuid)
		return smolvm_state_in_fail(in, -ENOMEM, "out of memory");
	rc = smolvm_state_get(in, "entries", SMOLVM_STATE_BYTES, s->cpuid->entries,
			      nent * (uint32_t)sizeof(struct kvm_cpuid_entry2));
	if (rc)
		return rc;
	smolvm_state_leave(in);
	return kvm_cpuid_check_host(e, s->cpuid);
}

static int load_sregs(struct smolvm_state_in *in, struct vcpu_state *s)
{
	uint64_t pdptr[4];
	int rc, n = 0;

	if ((rc = smolvm_state_enter(in, "sregs")))
		return rc;
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_segs); i++) {
		void *seg = (char *)&s->sregs + sregs_segs[i].offset;
		if ((rc = smolvm_state_enter(in, sregs_segs[i].name)) ||
		    (rc = KVM_GET_TABLE(in, seg_fields, seg)) ||
		    (rc = KVM_CHECK_LIMITS(in, seg_limits, seg)))
			return rc;
		smolvm_state_leave(in);
	}
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_dtables); i++) {
		if ((rc = smolvm_state_enter(in, sregs_dtables[i].name)) ||
		    (rc = KVM_GET_TABLE(in, dtable_fields,
					(char *)&s->sregs + sregs_dtables[i].offset)))
			return rc;
		smolvm_state_leave(in);
	}
	if ((rc = KVM_GET_TABLE(in, sregs_fields, &s->sregs)))
		return rc;
	if (s->sregs.efer & ~EFER_VALID)
		return smolvm_state_bad(in, "efer", "0x%llx has reserved bits set",
					(unsigned long long)s->sregs.efer);
	if (s->sregs.cr8 > 15)
		return smolvm_state_bad(in, "cr8", "0x%llx is not a task priority (0..15)",
					(unsigned long long)s->sregs.cr8);
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "pdptr%d", i);
		rc = smolvm_state_get_opt(in, name, SMOLVM_STATE_U64, &pdptr[i], sizeof(pdptr[i]));
		if (rc && rc != -ENOENT)
			return rc;
		n += !rc;
	}
	if (n != 0 && n != 4)
		return smolvm_state_bad(in, "pdptr0", "%d of the 4 PDPTRs saved", n);
	if (n == 4) {
		s->sregs.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
		memcpy(s->sregs.pdptrs, pdptr, sizeof(pdptr));
	}
	rc = smolvm_state_get_opt(in, "interrupt_bitmap", SMOLVM_STATE_BYTES, s->bitmap,
				  sizeof(s->bitmap));
	if (rc && rc != -ENOENT)
		return rc;
	smolvm_state_leave(in);
	return 0;
}

static int load_fpu(struct smolvm_state_in *in, const struct kvm_state_env *e,
		    struct vcpu_state *s)
{
	uint32_t size;
	int rc;

	if ((rc = smolvm_state_enter(in, "fpu")))
		return rc;
	rc = smolvm_state_get_opt(in, "xsave_size", SMOLVM_STATE_U32, &size, sizeof(size));
	if (rc == -ENOENT) {
		if ((rc = smolvm_state_get(in, "legacy", SMOLVM_STATE_BYTES, &s->fpu,
					   sizeof(s->fpu))))
			return rc;
		if (s->fpu.mxcsr & 0xffff0000u)
			return smolvm_state_bad(in, "legacy", "MXCSR 0x%x has reserved bits set",
						s->fpu.mxcsr);
		smolvm_state_leave(in);
		return 0;
	}
	if (rc)
		return rc;
	if (size < XSAVE_LEGACY_SIZE || size > MAX_XSAVE || size % 4)
		return smolvm_state_bad(in, "xsave_size", "%u bytes (a multiple of 4 in %u..%u)",
					size, XSAVE_LEGACY_SIZE, MAX_XSAVE);
	if (!kvm_state_has_cap(e, KVM_CAP_XSAVE))
		return kvm_state_fail(e, -ENOTSUP,
				      "fpu.xsave: this host's KVM lacks KVM_CAP_XSAVE");

	int xsave2 = kvm_state_has_cap(e, KVM_CAP_XSAVE2);
	uint32_t host = xsave2 > XSAVE_LEGACY_SIZE ? (uint32_t)xsave2 : XSAVE_LEGACY_SIZE;
	uint32_t alloc = size > host ? size : host;
	uint8_t *p = calloc(1, alloc);
	uint64_t xstate_bv, xcomp_bv, supported;
	uint32_t mxcsr;

	if (!p)
		return kvm_state_fail(e, -ENOMEM, "out of memory");
	s->xsave = p; /* KVM_SET_XSAVE reads `host` bytes */
	if ((rc = smolvm_state_get(in, "xsave", SMOLVM_STATE_BYTES, p, size)))
		return rc;
	/* A larger area from another host is fine when its tail is unused. */
	for (uint32_t i = host; i < size; i++)
		if (p[i])
			return smolvm_state_bad(in, "xsave",
						"uses %u bytes, this host's KVM takes %u", size, host);
	memcpy(&mxcsr, p + 24, 4);
	memcpy(&xstate_bv, p + 512, 8);
	memcpy(&xcomp_bv, p + 520, 8);
	supported = kvm_cpuid_reg(kvm_cpuid_find(e->supported, 0xd, 0), CPUID_EAX) |
		    (uint64_t)kvm_cpuid_reg(kvm_cpuid_find(e->supported, 0xd, 0), CPUID_EDX) << 32;
	if (mxcsr & 0xffff0000u)
		return smolvm_state_bad(in, "xsave", "MXCSR 0x%x has reserved bits set", mxcsr);
	if (xstate_bv & ~(supported | 3))
		return smolvm_state_bad(in, "xsave",
					"XSTATE_BV 0x%llx has components 0x%llx this host's "
					"KVM does not support (it supports 0x%llx)",
					(unsigned long long)xstate_bv,
					(unsigned long long)(xstate_bv & ~(supported | 3)),
					(unsigned long long)supported);
	if (xcomp_bv)
		return smolvm_state_bad(in, "xsave", "XCOMP_BV 0x%llx: not the standard format",
					(unsigned long long)xcomp_bv);
	smolvm_state_leave(in);
	return 0;
}

static int load_xcrs(struct smolvm_state_in *in, const struct kvm_state_env *e,
		     struct vcpu_state *s)
{
	uint32_t nr, found = 0;
	int missing, rc;

	if ((rc = smolvm_state_enter_opt(in, "xcrs", &missing)) || missing)
		return rc; /* saved on a host without KVM_CAP_XCRS */
	if (!kvm_state_has_cap(e, KVM_CAP_XCRS))
		return smolvm_state_in_fail(in, -ENOTSUP,
					    "xcrs: this host's KVM lacks KVM_CAP_XCRS");
	if ((rc = smolvm_state_get_u32(in, "nr", &nr)))
		return rc;
	if (nr > KVM_MAX_XCRS)
		return smolvm_state_bad(in, "nr", "%u registers (at most %u)", nr, KVM_MAX_XCRS);
	for (uint32_t x = 0; x < KVM_MAX_XCRS && found < nr; x++) {
		char name[16];
		uint64_t v;
		snprintf(name, sizeof(name), "xcr%u", x);
		rc = smolvm_state_get_opt(in, name, SMOLVM_STATE_U64, &v, sizeof(v));
		if (rc == -ENOENT)
			continue;
		if (rc)
			return rc;
		if (x == 0 && !(v & 1))
			return smolvm_state_bad(in, name, "0x%llx lacks x87 (bit 0)",
						(unsigned long long)v);
		s->xcrs.xcrs[found].xcr = x;
		s->xcrs.xcrs[found++].value = v;
	}
	if (found != nr)
		return smolvm_state_bad(in, "nr", "%u registers announced, %u found", nr, found);
	s->xcrs.nr_xcrs = nr;
	s->have_xcrs = 1;
	smolvm_state_leave(in);
	return 0;
}

static int load_msrs(struct smolvm_state_in *in, const struct kvm_state_env *e,
		     struct vcpu_state *s)
{
	struct kvm_msr_list *host = NULL;
	uint32_t count, *idx = NULL, n = 0;
	uint64_t early_data = 0;
	int rc, early = 0;

	if ((rc = smolvm_state_enter(in, "msrs")) ||
	    (rc = smolvm_state_get_u32(in, "count", &count)))
		return rc;
	if (count > MAX_MSRS)
		return smolvm_state_bad(in, "count", "%u MSRs (at most %u)", count, MAX_MSRS);
	if ((rc = smolvm_state_get_u64(in, "tsc_kvmclock", &s->tsc_kvmclock)) ||
	    (rc = msr_index_list(e, &host)))
		return rc;
	s->tsc_slot = -1;
	idx = calloc(count ? count : 1, sizeof(*idx));
	s->msrs = calloc(1, sizeof(*s->msrs) + (size_t)count * sizeof(struct kvm_msr_entry));
	if (!idx || !s->msrs) {
		rc = kvm_state_fail(e, -ENOMEM, "out of memory");
		goto out;
	}
	rc = smolvm_state_get(in, "indices", SMOLVM_STATE_BYTES, idx,
			      count * (uint32_t)sizeof(*idx));
	if (rc)
		goto out;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t index = le32toh(idx[i]);
		char name[16];
		uint64_t v;

		snprintf(name, sizeof(name), "0x%x", index);
		if (!msr_listed(host, index)) {
			rc = smolvm_state_bad(in, name, "MSR not supported by this host's KVM");
			goto out;
		}
		for (uint32_t j = 0; j < i; j++)
			if (le32toh(idx[j]) == index) {
				rc = smolvm_state_bad(in, name, "MSR listed twice");
				goto out;
			}
		if ((rc = smolvm_state_get_u64(in, name, &v)))
			goto out;
		if (index == MSR_IA32_TSC_DEADLINE) {
			/* Ignored unless the LAPIC timer is in TSC-deadline
			 * mode: written after the LAPIC. */
			s->have_deadline = 1;
			s->deadline = v;
		} else if (index == MSR_KVM_ASYNC_PF_INT) {
			early = 1; /* before MSR_KVM_ASYNC_PF_EN, as KVM expects */
			early_data = v;
		} else {
			if (index == MSR_IA32_TSC)
				s->tsc_slot = (int)n;
			s->msrs->entries[n].index = index;
			s->msrs->entries[n++].data = v;
		}
	}
	if (early) {
		memmove(&s->msrs->entries[1], &s->msrs->entries[0],
			n * sizeof(struct kvm_msr_entry));
		s->msrs->entries[0].index = MSR_KVM_ASYNC_PF_INT;
		s->msrs->entries[0].data = early_data;
		n++;
		if (s->tsc_slot >= 0)
			s->tsc_slot++;
	}
	s->msrs->nmsrs = n;
	smolvm_state_leave(in);
out:
	free(idx);
	free(host);
	return rc;
}

static int load_events(struct smolvm_state_in *in, struct vcpu_state *s)
{
	struct kvm_vcpu_events *ev = &s->ev;
	const uint32_t known = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			       KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	int rc;

	if ((rc = smolvm_state_enter(in, "events")) ||
	    (rc = KVM_GET_TABLE(in, events_fields, ev)) ||
	    (rc = KVM_CHECK_LIMITS(in, events_limits, ev)))
		return rc;
	/* Payloads and triple-fault events need VM capabilities smolvm does
	 * not enable, so KVM never reports them. */
	if (ev->flags & ~known)
		return smolvm_state_bad(in, "flags", "0x%x has unknown or unsupported bits 0x%x",
					ev->flags, ev->flags & ~known);
	if ((ev->exception.injected || ev->exception.pending) && ev->exception.nr == 2)
		return smolvm_state_bad(in, "exception.nr", "2 (NMI) is not an exception");
	/* Without the payload capability KVM reports a pending exception as
	 * injected and pending at once, and ignores `pending` when it is set
	 * back: the exception is injected, as KVM itself would take it. */
	if (ev->exception.injected && ev->exception.pending)
		ev->exception.pending = 0;
	if (ev->sipi_vector > 0xff)
		return smolvm_state_bad(in, "sipi_vector", "0x%x is not a vector", ev->sipi_vector);
	smolvm_state_leave(in);
	return 0;
}

static int load_vcpu(struct smolvm_state_in *in, const struct kvm_state_env *e,
		     struct vcpu_state *s)
{
	uint32_t index;
	int rc;

	if ((rc = smolvm_state_enter(in, "vcpu")) ||
	    (rc = smolvm_state_get_u32(in, "index", &index)) ||
	    (rc = smolvm_state_get_u32(in, "mp_state", &s->mp_state)) ||
	    (rc = smolvm_state_get_u32(in, "tsc_khz", &s->tsc_khz)))
		return rc;
	if (index != e->vcpu_index)
		return smolvm_state_bad(in, "index", "state of vcpu %u, restoring vcpu %u", index,
					e->vcpu_index);
	if (s->tsc_khz > MAX_TSC_KHZ)
		return smolvm_state_bad(in, "tsc_khz", "%u kHz is not a TSC rate", s->tsc_khz);
	if (s->mp_state > KVM_MP_STATE_SIPI_RECEIVED)
		return smolvm_state_bad(in, "mp_state", "%u is not an x86 run state", s->mp_state);
	smolvm_state_leave(in);

	if ((rc = load_cpuid(in, e, s)))
		return rc;

	if ((rc = smolvm_state_enter(in, "regs")) ||
	    (rc = KVM_GET_TABLE(in, regs_fields, &s->regs)))
		return rc;
	if (s->regs.rflags & ~RFLAGS_VALID)
		return smolvm_state_bad(in, "rflags", "0x%llx has reserved bits set",
					(unsigned long long)s->regs.rflags);
	smolvm_state_leave(in);

	if ((rc = load_sregs(in, s)) || (rc = load_fpu(in, e, s)) || (rc = load_xcrs(in, e, s)))
		return rc;

	if ((rc = smolvm_state_enter(in, "debugregs")) ||
	    (rc = KVM_GET_TABLE(in, debugregs_fields, &s->dregs)))
		return rc;
	if (s->dregs.dr6 >> 32)
		return smolvm_state_bad(in, "dr6", "0x%llx has reserved bits set",
					(unsigned long long)s->dregs.dr6);
	if (s->dregs.dr7 >> 32)
		return smolvm_state_bad(in, "dr7", "0x%llx has reserved bits set",
					(unsigned long long)s->dregs.dr7);
	smolvm_state_leave(in);

	if ((rc = load_msrs(in, e, s)))
		return rc;

	if ((rc = smolvm_state_enter(in, "lapic")) ||
	    (rc = smolvm_state_get(in, "regs", SMOLVM_STATE_BYTES, s->lapic.regs,
				   sizeof(s->lapic.regs))))
		return rc;
	smolvm_state_leave(in);

	return load_events(in, s);
}

/* The saved TSC frequency: the guest calibrated on it. */
static void restore_tsc_khz(const struct kvm_state_env *e, uint32_t khz)
{
	int now = ioctl(e->vcpu_fd, KVM_GET_TSC_KHZ, 0);
	uint32_t diff;

	if (!khz || now <= 0 || (uint32_t)now == khz)
		return;
	diff = (uint32_t)now > khz ? (uint32_t)now - khz : khz - (uint32_t)now;
	if ((uint64_t)diff * 4000 <= khz) /* within 250 ppm, QEMU's tolerance */
		return;
	if (kvm_state_has_cap(e, KVM_CAP_TSC_CONTROL) &&
	    ioctl(e->vcpu_fd, KVM_SET_TSC_KHZ, khz) == 0)
		return;
	e->api->log(e->ctx, SMOLVM_LOG_WARN,
		    "vcpu %u: the guest's TSC ran at %u kHz, this host's at %d kHz and KVM "
		    "cannot scale it: guest time read from the TSC drifts",
		    e->vcpu_index, khz, now);
}

/* The guest's TSC moves forward with the kvmclock (which vm_restore moved
 * forward by the wall time since the save): by the kvmclock's advance since
 * the TSC was read, at the guest's TSC rate. The same rule for every vCPU
 * keeps their TSCs in step. */
static uint64_t advance_tsc(const struct kvm_state_env *e, const struct vcpu_state *s,
			    uint64_t tsc)
{
	struct kvm_clock_data now;
	unsigned __int128 t;

	memset(&now, 0, sizeof(now));
	if (!s->tsc_khz || ioctl(e->vm_fd, KVM_GET_CLOCK, &now) < 0 ||
	    now.clock <= s->tsc_kvmclock)
		return tsc;
	t = tsc + (unsigned __int128)(now.clock - s->tsc_kvmclock) * s->tsc_khz / 1000000u;
	return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

static int apply_vcpu(const struct kvm_state_env *e, struct vcpu_state *s)
{
	struct kvm_mp_state mp = { .mp_state = s->mp_state };
	struct kvm_msrs *rest;
	int fd = e->vcpu_fd, r, rc;

	if (ioctl(fd, KVM_SET_CPUID2, s->cpuid) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_CPUID2 (saved CPUID)");
	restore_tsc_khz(e, s->tsc_khz);

	if (kvm_state_has_cap(e, KVM_CAP_SREGS2)) {
		if (ioctl(fd, KVM_SET_SREGS2, &s->sregs) < 0)
			return kvm_state_fail_ioctl(e, "KVM_SET_SREGS2");
	} else {
		struct kvm_sregs old;
		memcpy(&old, &s->sregs, SREGS_COMMON);
		memcpy(old.interrupt_bitmap, s->bitmap, sizeof(old.interrupt_bitmap));
		if (ioctl(fd, KVM_SET_SREGS, &old) < 0)
			return kvm_state_fail_ioctl(e, "KVM_SET_SREGS");
	}
	if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_REGS");
	if (s->xsave) {
		if (ioctl(fd, KVM_SET_XSAVE, s->xsave) < 0)
			return kvm_state_fail_ioctl(e, "KVM_SET_XSAVE");
	} else if (ioctl(fd, KVM_SET_FPU, &s->fpu) < 0) {
		return kvm_state_fail_ioctl(e, "KVM_SET_FPU");
	}
	if (s->have_xcrs && ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_XCRS");
	if (ioctl(fd, KVM_SET_DEBUGREGS, &s->dregs) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_DEBUGREGS");

	if (s->tsc_slot >= 0)
		s->msrs->entries[s->tsc_slot].data =
			advance_tsc(e, s, s->msrs->entries[s->tsc_slot].data);

	/* KVM_SET_MSRS stops at the first MSR it refuses. Writing 0 is refused
	 * for an MSR the guest's CPUID does not have (e.g. XSS without
	 * xsaves): 0 is its reset value, so skip it and go on. */
	rest = calloc(1, sizeof(*rest) + (s->msrs->nmsrs + 1) * sizeof(struct kvm_msr_entry));
	if (!rest)
		return kvm_state_fail(e, -ENOMEM, "out of memory");
	for (uint32_t done = 0; done < s->msrs->nmsrs;) {
		const struct kvm_msr_entry *refused;

		rest->nmsrs = s->msrs->nmsrs - done;
		memcpy(rest->entries, &s->msrs->entries[done],
		       rest->nmsrs * sizeof(struct kvm_msr_entry));
		r = ioctl(fd, KVM_SET_MSRS, rest);
		if (r < 0) {
			rc = kvm_state_fail_ioctl(e, "KVM_SET_MSRS");
			goto out;
		}
		done += (uint32_t)r;
		if (done == s->msrs->nmsrs)
			break;
		refused = &s->msrs->entries[done++];
		if (refused->data) {
			rc = kvm_state_fail(e, -EINVAL, "KVM refused MSR 0x%x = 0x%llx",
					    refused->index, (unsigned long long)refused->data);
			goto out;
		}
	}

	if (ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0) {
		rc = kvm_state_fail_ioctl(e, "KVM_SET_LAPIC");
		goto out;
	}
	if (s->have_deadline) {
		rest->nmsrs = 1;
		rest->entries[0].index = MSR_IA32_TSC_DEADLINE;
		rest->entries[0].data = s->deadline;
		r = ioctl(fd, KVM_SET_MSRS, rest);
		if (r != 1) {
			rc = r < 0 ? kvm_state_fail_ioctl(e, "KVM_SET_MSRS (TSC deadline)")
				   : kvm_state_fail(e, -EINVAL, "KVM refused MSR 0x%x = 0x%llx",
						    MSR_IA32_TSC_DEADLINE,
						    (unsigned long long)s->deadline);
			goto out;
		}
	}
	free(rest);
	rest = NULL;

	if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_MP_STATE");
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &s->ev) < 0)
		return kvm_state_fail_ioctl(e, "KVM_SET_VCPU_EVENTS");
	/* Tell a kvm-clock guest it was stopped (its soft-lockup watchdog
	 * then ignores the jump); EINVAL when it has no kvm-clock. */
	(void)ioctl(fd, KVM_KVMCLOCK_CTRL, 0);
	return 0;
out:
	free(rest);
	return rc;
}

int kvm_state_vcpu_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r)
{
	struct kvm_state_prefix p;
	struct smolvm_state_in in;
	struct vcpu_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return kvm_state_fail(e, -ENOMEM, "out of memory");
	kvm_state_in_init(e, &p, &in, r);
	rc = load_vcpu(&in, e, s);
	smolvm_state_in_done(&in);
	if (!rc)
		rc = apply_vcpu(e, s);
	free(s->cpuid);
	free(s->xsave);
	free(s->msrs);
	free(s);
	return rc;
}

