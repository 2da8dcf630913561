/* KVM backend snapshots (see state.h).
 *
 * Layout of a vCPU's state (sections, then fields):
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
 * and of the VM:
 *   pic_master, pic_slave   the kvm_pic_state members
 *   ioapic    base_address ioregsel id irr redirtbl[0..23]
 *   pit       flags; ch0 ch1 ch2 {count latched_count ... count_load_time}
 *   clock     kvmclock, realtime_ns
 *
 * Time: the guest must not live in the past. vm_restore moves the kvmclock
 * forward by the host's wall time between save and restore (as after a
 * suspend), never backwards. Each vCPU's TSC moves forward with it: the
 * TSC is saved with the kvmclock it was read at ("msrs.tsc_kvmclock") and
 * restored as TSC + (kvmclock now - that) * tsc_khz, so TSC and kvmclock
 * stay consistent (KVM's documented migration rule) and a guest whose
 * clocksource is the TSC sees the same jump; TSC-deadline timers that
 * expired meanwhile fire at once. The vCPUs' TSCs stay in step (the same
 * rule for each; KVM also matches TSC writes made within a second). On
 * kvm_pvm the guest's TSC is the host's and writes to it are ignored,
 * which amounts to the same thing.
 *
 * Restore reads and checks everything before its first KVM_SET_* call. */
#include "state.h"

#include <asm/kvm_para.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <smolvm/state.h>

#define MAX_CPUID_ENTRIES 256 /* the kernel's KVM_MAX_CPUID_ENTRIES */
#define MAX_MSRS 1024
#define MAX_XSAVE (1u << 20)
#define XSAVE_LEGACY_SIZE 4096 /* struct kvm_xsave */
#define IOAPIC_DEFAULT_BASE 0xfec00000ull
#define RFLAGS_VALID 0x3f7fd7ull /* defined bits, bit 1 included */
/* SCE LME LMA NXE SVME LMSLE FFXSR TCE AUTOIBRS: KVM_SET_SREGS does not
 * check EFER's reserved bits itself. */
#define EFER_VALID 0x20fd01ull
#define MAX_TSC_KHZ 100000000u /* 100 GHz */
#define MAX_CLOCK_NS ((uint64_t)INT64_MAX) /* KVM keeps the offset signed */

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

enum { EAX, EBX, ECX, EDX };

/* ---- errors ------------------------------------------------------------ */

static int fail(const struct kvm_state_env *e, int code, const char *fmt, ...)
	SMOLVM_PRINTF(3, 4);

/* Sets the error ("vcpu N state: ..." / "VM state: ...") and returns -code. */
static int fail(const struct kvm_state_env *e, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->vcpu_fd >= 0)
		e->api->set_error(e->ctx, "vcpu %u state: %s", e->vcpu_index, msg);
	else
		e->api->set_error(e->ctx, "VM state: %s", msg);
	return -code;
}

static int fail_ioctl(const struct kvm_state_env *e, const char *what)
{
	int code = errno ? errno : EIO;

	return fail(e, code, "%s: %s", what, strerror(code));
}

/* ---- writing ----------------------------------------------------------- */

struct out {
	const struct kvm_state_env *e;
	struct smolvm_state_writer *w;
	int rc; /* first failure of the writer */
};

static void put(struct out *o, const char *name, enum smolvm_state_type t,
		const void *p, uint32_t len)
{
	if (!o->rc) {
		int rc = o->e->api->state_put(o->w, name, t, p, len);
		if (rc < 0)
			o->rc = rc;
	}
}

static void put_u32(struct out *o, const char *name, uint32_t v)
{
	put(o, name, SMOLVM_STATE_U32, &v, sizeof(v));
}

static void put_u64(struct out *o, const char *name, uint64_t v)
{
	put(o, name, SMOLVM_STATE_U64, &v, sizeof(v));
}

static void put_bytes(struct out *o, const char *name, const void *p, uint32_t len)
{
	put(o, name, SMOLVM_STATE_BYTES, p, len);
}

static void put_fields(struct out *o, const struct smolvm_state_field *f, size_t n,
		       const void *base)
{
	for (size_t i = 0; i < n; i++)
		put(o, f[i].name, (enum smolvm_state_type)f[i].type,
		    (const char *)base + f[i].offset, f[i].size);
}

static void begin(struct out *o, const char *name)
{
	if (!o->rc) {
		int rc = o->e->api->state_begin(o->w, name, 0);
		if (rc < 0)
			o->rc = rc;
	}
}

static void end(struct out *o)
{
	if (!o->rc) {
		int rc = o->e->api->state_end(o->w);
		if (rc < 0)
			o->rc = rc;
	}
}

static int out_done(struct out *o)
{
	if (o->rc)
		return fail(o->e, -o->rc, "cannot write the state: %s", strerror(-o->rc));
	return 0;
}

/* ---- reading ----------------------------------------------------------- */

#define IN_MAX_DEPTH 4

struct in {
	const struct kvm_state_env *e;
	struct smolvm_state_reader *r;
	char path[96]; /* "sregs.cs", for messages */
	size_t mark[IN_MAX_DEPTH];
	int depth;
};

static const char *sep(const struct in *in)
{
	return in->path[0] ? "." : "";
}

/* Enters section `name`; *missing (when not NULL) says it is absent
 * instead of failing. */
static int enter_opt(struct in *in, const char *name, int *missing)
{
	int rc = in->depth < IN_MAX_DEPTH ? in->e->api->state_enter(in->r, name) : -E2BIG;
	size_t len = strlen(in->path);

	if (missing)
		*missing = rc == -ENOENT;
	if (rc == -ENOENT && missing)
		return 0;
	if (rc < 0)
		return fail(in->e, -rc, "section %s%s%s: %s", in->path, sep(in), name,
			    rc == -ENOENT ? "missing" : strerror(-rc));
	in->mark[in->depth++] = len;
	snprintf(in->path + len, sizeof(in->path) - len, "%s%s", len ? "." : "", name);
	return 0;
}

static int enter(struct in *in, const char *name)
{
	return enter_opt(in, name, NULL);
}

static void leave(struct in *in)
{
	in->e->api->state_leave(in->r);
	in->path[in->mark[--in->depth]] = '\0';
}

/* Returns -ENOENT without an error message when the field is absent. */
static int get_opt(struct in *in, const char *name, enum smolvm_state_type t, void *p,
		   uint32_t len)
{
	int rc = in->e->api->state_get(in->r, name, t, p, len);

	if (rc == -ENOENT || rc >= 0)
		return rc < 0 ? rc : 0;
	if (rc == -EBADMSG)
		return fail(in->e, EBADMSG, "%s%s%s: wrong type or size (want %s of %u bytes)",
			    in->path, sep(in), name,
			    t == SMOLVM_STATE_BYTES ? "bytes" : "an integer", len);
	return fail(in->e, -rc, "%s%s%s: %s", in->path, sep(in), name, strerror(-rc));
}

static int get(struct in *in, const char *name, enum smolvm_state_type t, void *p,
	       uint32_t len)
{
	int rc = get_opt(in, name, t, p, len);

	if (rc == -ENOENT)
		return fail(in->e, ENOENT, "%s%s%s: field missing", in->path, sep(in), name);
	return rc;
}

static int get_u32(struct in *in, const char *name, uint32_t *v)
{
	return get(in, name, SMOLVM_STATE_U32, v, sizeof(*v));
}

static int get_u64(struct in *in, const char *name, uint64_t *v)
{
	return get(in, name, SMOLVM_STATE_U64, v, sizeof(*v));
}

static int get_fields(struct in *in, const struct smolvm_state_field *f, size_t n,
		      void *base)
{
	for (size_t i = 0; i < n; i++) {
		int rc = get(in, f[i].name, (enum smolvm_state_type)f[i].type,
			     (char *)base + f[i].offset, f[i].size);
		if (rc)
			return rc;
	}
	return 0;
}

static int bad(struct in *in, const char *field, const char *fmt, ...) SMOLVM_PRINTF(3, 4);

/* A value that fails validation: "<path>.<field>: <why>". */
static int bad(struct in *in, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(in->e, EINVAL, "%s%s%s: %s", in->path, sep(in), field, msg);
}

/* Each U8 member of a table must be <= its limit. */
struct u8_limit {
	const char *name;
	size_t offset;
	uint8_t max;
};

static int check_u8s(struct in *in, const struct u8_limit *l, size_t n, const void *base)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t v = ((const uint8_t *)base)[l[i].offset];
		if (v > l[i].max)
			return bad(in, l[i].name, "%u is out of range (at most %u)", v, l[i].max);
	}
	return 0;
}

/* ---- small KVM helpers ------------------------------------------------- */

static int has_cap(const struct kvm_state_env *e, long cap)
{
	int r = ioctl(e->vm_fd, KVM_CHECK_EXTENSION, cap);

	return r > 0 ? r : 0;
}

static struct kvm_cpuid2 *cpuid_alloc(uint32_t nent)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));

	if (c)
		c->nent = nent;
	return c;
}

/* KVM_GET_CPUID2 (vCPU) or KVM_GET_EMULATED_CPUID (system) into a new table. */
static int read_cpuid(const struct kvm_state_env *e, int fd, unsigned long req,
		      const char *what, struct kvm_cpuid2 **out)
{
	for (uint32_t n = MAX_CPUID_ENTRIES;; n *= 2) {
		struct kvm_cpuid2 *c = cpuid_alloc(n);
		if (!c)
			return fail(e, ENOMEM, "out of memory");
		if (ioctl(fd, req, c) == 0) {
			*out = c;
			return 0;
		}
		int code = errno;
		free(c);
		if (code != E2BIG || n >= 4 * MAX_CPUID_ENTRIES) {
			errno = code;
			return fail_ioctl(e, what);
		}
	}
}

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c,
						 uint32_t function, uint32_t index)
{
	if (!c)
		return NULL;
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *x = &c->entries[i];
		if (x->function != function)
			continue;
		if ((x->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && x->index != index)
			continue;
		return x;
	}
	return NULL;
}

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *x, int reg)
{
	if (!x)
		return 0;
	switch (reg) {
	case EAX: return x->eax;
	case EBX: return x->ebx;
	case ECX: return x->ecx;
	default: return x->edx;
	}
}

/* KVM_GET_MSR_INDEX_LIST. */
static int msr_index_list(const struct kvm_state_env *e, struct kvm_msr_list **out)
{
	for (uint32_t n = 256;; n *= 2) {
		struct kvm_msr_list *l = calloc(1, sizeof(*l) + n * sizeof(uint32_t));
		if (!l)
			return fail(e, ENOMEM, "out of memory");
		l->nmsrs = n;
		if (ioctl(e->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) == 0) {
			*out = l;
			return 0;
		}
		int code = errno;
		free(l);
		if (code != E2BIG || n >= 16 * MAX_MSRS) {
			errno = code;
			return fail_ioctl(e, "KVM_GET_MSR_INDEX_LIST");
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

#define SEG_LIMIT(m, max) { #m, offsetof(struct kvm_segment, m), max }
static const struct u8_limit seg_limits[] = {
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
	{ "db0", U64, offsetof(struct kvm_debugregs, db) + 0, 8, 1 },
	{ "db1", U64, offsetof(struct kvm_debugregs, db) + 8, 8, 1 },
	{ "db2", U64, offsetof(struct kvm_debugregs, db) + 16, 8, 1 },
	{ "db3", U64, offsetof(struct kvm_debugregs, db) + 24, 8, 1 },
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

#define EV_LIMIT(m, max) { #m, offsetof(struct kvm_vcpu_events, m), max }
static const struct u8_limit events_limits[] = {
	EV_LIMIT(exception.injected, 1), EV_LIMIT(exception.nr, 31),
	EV_LIMIT(exception.has_error_code, 1), EV_LIMIT(exception.pending, 1),
	EV_LIMIT(interrupt.injected, 1), EV_LIMIT(interrupt.soft, 1),
	EV_LIMIT(interrupt.shadow, KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI),
	EV_LIMIT(nmi.injected, 1), EV_LIMIT(nmi.pending, 1), EV_LIMIT(nmi.masked, 1),
	EV_LIMIT(smi.smm, 0), EV_LIMIT(smi.pending, 1), EV_LIMIT(smi.smm_inside_nmi, 0),
	EV_LIMIT(smi.latched_init, 1), EV_LIMIT(triple_fault.pending, 0),
	EV_LIMIT(exception_has_payload, 0),
};

#define PIC(m) SMOLVM_FIELD(struct kvm_pic_state, m, U8, 1)
static const struct smolvm_state_field pic_fields[] = {
	PIC(last_irr), PIC(irr), PIC(imr), PIC(isr), PIC(priority_add), PIC(irq_base),
	PIC(read_reg_select), PIC(poll), PIC(special_mask), PIC(init_state), PIC(auto_eoi),
	PIC(rotate_on_auto_eoi), PIC(special_fully_nested_mode), PIC(init4), PIC(elcr),
	PIC(elcr_mask),
};

#define PIC_LIMIT(m, max) { #m, offsetof(struct kvm_pic_state, m), max }
static const struct u8_limit pic_limits[] = {
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

#define PIT_LIMIT(m, max) { #m, offsetof(struct kvm_pit_channel_state, m), max }
static const struct u8_limit pit_limits[] = {
	PIT_LIMIT(count_latched, 3), PIT_LIMIT(status_latched, 1), PIT_LIMIT(read_state, 4),
	PIT_LIMIT(write_state, 4), PIT_LIMIT(rw_mode, 3),
	PIT_LIMIT(bcd, 1), PIT_LIMIT(gate, 1),
};

/* ---- CPUID host contract ----------------------------------------------- */

static const char *const leaf1_ecx[32] = {
	[0] = "sse3", [1] = "pclmulqdq", [2] = "dtes64", [3] = "monitor", [4] = "ds_cpl",
	[5] = "vmx", [6] = "smx", [7] = "est", [8] = "tm2", [9] = "ssse3", [10] = "cid",
	[11] = "sdbg", [12] = "fma", [13] = "cx16", [14] = "xtpr", [15] = "pdcm",
	[17] = "pcid", [18] = "dca", [19] = "sse4_1", [20] = "sse4_2", [21] = "x2apic",
	[22] = "movbe", [23] = "popcnt", [24] = "tsc_deadline_timer", [25] = "aes",
	[26] = "xsave", [28] = "avx", [29] = "f16c", [30] = "rdrand", [31] = "hypervisor",
};
static const char *const leaf1_edx[32] = {
	[0] = "fpu", [1] = "vme", [2] = "de", [3] = "pse", [4] = "tsc", [5] = "msr",
	[6] = "pae", [7] = "mce", [8] = "cx8", [9] = "apic", [11] = "sep", [12] = "mtrr",
	[13] = "pge", [14] = "mca", [15] = "cmov", [16] = "pat", [17] = "pse36",
	[18] = "pn", [19] = "clflush", [21] = "ds", [22] = "acpi", [23] = "mmx",
	[24] = "fxsr", [25] = "sse", [26] = "sse2", [27] = "ss", [28] = "ht", [29] = "tm",
	[30] = "ia64", [31] = "pbe",
};
static const char *const leaf7_ebx[32] = {
	[0] = "fsgsbase", [1] = "tsc_adjust", [2] = "sgx", [3] = "bmi1", [4] = "hle",
	[5] = "avx2", [7] = "smep", [8] = "bmi2", [9] = "erms", [10] = "invpcid",
	[11] = "rtm", [12] = "pqm", [14] = "mpx", [15] = "rdt_a", [16] = "avx512f",
	[17] = "avx512dq", [18] = "rdseed", [19] = "adx", [20] = "smap",
	[21] = "avx512ifma", [23] = "clflushopt", [24] = "clwb", [25] = "intel_pt",
	[26] = "avx512pf", [27] = "avx512er", [28] = "avx512cd", [29] = "sha_ni",
	[30] = "avx512bw", [31] = "avx512vl",
};
static const char *const leaf7_ecx[32] = {
	[0] = "prefetchwt1", [1] = "avx512vbmi", [2] = "umip", [3] = "pku", [4] = "ospke",
	[5] = "waitpkg", [6] = "avx512_vbmi2", [7] = "shstk", [8] = "gfni", [9] = "vaes",
	[10] = "vpclmulqdq", [11] = "avx512_vnni", [12] = "avx512_bitalg", [13] = "tme",
	[14] = "avx512_vpopcntdq", [16] = "la57", [22] = "rdpid", [23] = "bus_lock_detect",
	[24] = "cldemote", [27] = "movdiri", [28] = "movdir64b", [29] = "enqcmd",
	[30] = "sgx_lc", [31] = "pks",
};
static const char *const leaf7_edx[32] = {
	[2] = "avx512_4vnniw", [3] = "avx512_4fmaps", [4] = "fsrm", [5] = "uintr",
	[8] = "avx512_vp2intersect", [10] = "md_clear", [14] = "serialize", [15] = "hybrid",
	[16] = "tsxldtrk", [18] = "pconfig", [19] = "arch_lbr", [20] = "ibt",
	[22] = "amx_bf16", [23] = "avx512_fp16", [24] = "amx_tile", [25] = "amx_int8",
	[26] = "spec_ctrl", [27] = "intel_stibp", [28] = "flush_l1d",
	[29] = "arch_capabilities", [30] = "core_capabilities", [31] = "spec_ctrl_ssbd",
};
static const char *const ext1_ecx[32] = {
	[0] = "lahf_lm", [1] = "cmp_legacy", [2] = "svm", [3] = "extapic",
	[4] = "cr8_legacy", [5] = "abm", [6] = "sse4a", [7] = "misalignsse",
	[8] = "3dnowprefetch", [9] = "osvw", [10] = "ibs", [11] = "xop", [12] = "skinit",
	[13] = "wdt", [15] = "lwp", [16] = "fma4", [17] = "tce", [19] = "nodeid_msr",
	[21] = "tbm", [22] = "topoext", [23] = "perfctr_core", [24] = "perfctr_nb",
	[26] = "bpext", [27] = "ptsc", [28] = "perfctr_llc", [29] = "mwaitx",
};
static const char *const ext1_edx[32] = {
	[11] = "syscall", [19] = "mp", [20] = "nx", [22] = "mmxext", [25] = "fxsr_opt",
	[26] = "pdpe1gb", [27] = "rdtscp", [29] = "lm", [30] = "3dnowext", [31] = "3dnow",
};
static const char *const xsave_components[32] = {
	[0] = "x87", [1] = "sse", [2] = "avx", [3] = "mpx_bndregs", [4] = "mpx_bndcsr",
	[5] = "avx512_opmask", [6] = "avx512_zmm_hi256", [7] = "avx512_hi16_zmm",
	[8] = "pt", [9] = "pkru", [11] = "cet_user", [12] = "cet_supervisor",
	[14] = "uintr", [15] = "lbr", [17] = "amx_tilecfg", [18] = "amx_tiledata",
};
static const char *const xsave_leaf1[32] = {
	[0] = "xsaveopt", [1] = "xsavec", [2] = "xgetbv1", [3] = "xsaves", [4] = "xfd",
};

static const struct {
	uint32_t leaf, subleaf;
	int reg;
	uint32_t dynamic; /* bits that mirror guest control registers */
	const char *const *names;
} feature_regs[] = {
	{ 1, 0, ECX, 1u << 27 /* osxsave: CR4.OSXSAVE */, leaf1_ecx },
	{ 1, 0, EDX, 0, leaf1_edx },
	{ 7, 0, EBX, 0, leaf7_ebx },
	{ 7, 0, ECX, 1u << 4 /* ospke: CR4.PKE */, leaf7_ecx },
	{ 7, 0, EDX, 0, leaf7_edx },
	{ 0x80000001, 0, ECX, 0, ext1_ecx },
	{ 0x80000001, 0, EDX, 0, ext1_edx },
	{ 0xd, 0, EAX, 0, xsave_components },  /* XCR0 bits 0..31 */
	{ 0xd, 0, EDX, 0, NULL },              /* XCR0 bits 32..63 */
	{ 0xd, 1, EAX, 0, xsave_leaf1 },
	{ 0xd, 1, ECX, 0, NULL },              /* IA32_XSS bits */
	{ 0xd, 1, EDX, 0, NULL },
	{ KVM_CPUID_FEATURES, 0, EAX, 0, NULL }, /* paravirtual features */
};

static const char *const reg_names[] = { "EAX", "EBX", "ECX", "EDX" };

/* What this host's KVM can show a guest: KVM_GET_SUPPORTED_CPUID, plus
 * KVM_GET_EMULATED_CPUID, plus what it shows a fresh vCPU (on kvm_pvm,
 * KVM_GET_CPUID2 reports the host's own leaf 1/7 bits whatever was set). */
static int check_cpuid(const struct kvm_state_env *e, const struct kvm_cpuid2 *saved)
{
	struct kvm_cpuid2 *emulated = NULL, *fresh = NULL;
	int rc = 0;

	/* Both are best effort: the supported table alone is the baseline. */
	if (read_cpuid(e, e->kvm_fd, KVM_GET_EMULATED_CPUID, "KVM_GET_EMULATED_CPUID",
		       &emulated))
		emulated = NULL;
	if (read_cpuid(e, e->vcpu_fd, KVM_GET_CPUID2, "KVM_GET_CPUID2", &fresh))
		fresh = NULL;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(feature_regs) && !rc; i++) {
		uint32_t leaf = feature_regs[i].leaf, sub = feature_regs[i].subleaf;
		int reg = feature_regs[i].reg;
		const struct kvm_cpuid_entry2 *s = cpuid_find(saved, leaf, sub);
		uint32_t want, have, missing;
		char names[256] = "";
		size_t len = 0;

		if (!s)
			continue;
		want = cpuid_reg(s, reg) & ~feature_regs[i].dynamic;
		have = cpuid_reg(cpuid_find(e->supported, leaf, sub), reg) |
		       cpuid_reg(cpuid_find(emulated, leaf, sub), reg) |
		       cpuid_reg(cpuid_find(fresh, leaf, sub), reg);
		missing = want & ~have;
		if (!missing)
			continue;
		for (int b = 0; b < 32; b++) {
			const char *n = feature_regs[i].names ? feature_regs[i].names[b] : NULL;
			if (!(missing & (1u << b)) || len >= sizeof(names))
				continue;
			if (n)
				len += (size_t)snprintf(names + len, sizeof(names) - len,
							"%s%s (bit %d)", len ? ", " : "", n, b);
			else
				len += (size_t)snprintf(names + len, sizeof(names) - len,
							"%sbit %d", len ? ", " : "", b);
		}
		/* Restored from a foreign host: refuse rather than show the guest
		 * features it would fault on. */
		rc = fail(e, ENOTSUP,
			  "the saved CPUID leaf 0x%x subleaf %u %s has bits 0x%08x that this "
			  "host's KVM does not support: %s",
			  leaf, sub, reg_names[reg], missing, names);
	}
	free(emulated);
	free(fresh);
	return rc;
}

/* ---- vCPU save --------------------------------------------------------- */

static int save_sregs(const struct kvm_state_env *e, struct out *o)
{
	struct kvm_sregs2 s2;
	struct kvm_sregs s;
	int have_bitmap = 0;

	memset(&s2, 0, sizeof(s2));
	if (has_cap(e, KVM_CAP_SREGS2)) {
		if (ioctl(e->vcpu_fd, KVM_GET_SREGS2, &s2) < 0)
			return fail_ioctl(e, "KVM_GET_SREGS2");
	} else {
		if (ioctl(e->vcpu_fd, KVM_GET_SREGS, &s) < 0)
			return fail_ioctl(e, "KVM_GET_SREGS");
		memcpy(&s2, &s, SREGS_COMMON);
		have_bitmap = 1;
	}
	begin(o, "sregs");
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_segs); i++) {
		begin(o, sregs_segs[i].name);
		put_fields(o, seg_fields, SMOLVM_ARRAY_LEN(seg_fields),
			   (const char *)&s2 + sregs_segs[i].offset);
		end(o);
	}
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_dtables); i++) {
		begin(o, sregs_dtables[i].name);
		put_fields(o, dtable_fields, SMOLVM_ARRAY_LEN(dtable_fields),
			   (const char *)&s2 + sregs_dtables[i].offset);
		end(o);
	}
	put_fields(o, sregs_fields, SMOLVM_ARRAY_LEN(sregs_fields), &s2);
	if (s2.flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) {
		put_u64(o, "pdptr0", s2.pdptrs[0]);
		put_u64(o, "pdptr1", s2.pdptrs[1]);
		put_u64(o, "pdptr2", s2.pdptrs[2]);
		put_u64(o, "pdptr3", s2.pdptrs[3]);
	}
	/* The injected interrupt is in the events too; kept for old hosts. */
	if (have_bitmap)
		put_bytes(o, "interrupt_bitmap", s.interrupt_bitmap, sizeof(s.interrupt_bitmap));
	end(o);
	return 0;
}

static int save_fpu(const struct kvm_state_env *e, struct out *o)
{
	begin(o, "fpu");
	if (has_cap(e, KVM_CAP_XSAVE)) {
		int xsave2 = has_cap(e, KVM_CAP_XSAVE2);
		uint32_t size = xsave2 > XSAVE_LEGACY_SIZE ? (uint32_t)xsave2 : XSAVE_LEGACY_SIZE;
		void *buf;

		if (size > MAX_XSAVE)
			return fail(e, E2BIG, "KVM's XSAVE area has %u bytes", size);
		buf = calloc(1, size);
		if (!buf)
			return fail(e, ENOMEM, "out of memory");
		if (ioctl(e->vcpu_fd, xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf) < 0) {
			int rc = fail_ioctl(e, xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
			free(buf);
			return rc;
		}
		put_u32(o, "xsave_size", size);
		put_bytes(o, "xsave", buf, size);
		free(buf);
	} else {
		struct kvm_fpu fpu;
		if (ioctl(e->vcpu_fd, KVM_GET_FPU, &fpu) < 0)
			return fail_ioctl(e, "KVM_GET_FPU");
		put_bytes(o, "legacy", &fpu, sizeof(fpu));
	}
	end(o);
	return 0;
}

static int save_xcrs(const struct kvm_state_env *e, struct out *o)
{
	struct kvm_xcrs x;

	if (!has_cap(e, KVM_CAP_XCRS))
		return 0;
	memset(&x, 0, sizeof(x));
	if (ioctl(e->vcpu_fd, KVM_GET_XCRS, &x) < 0)
		return fail_ioctl(e, "KVM_GET_XCRS");
	if (x.nr_xcrs > KVM_MAX_XCRS)
		return fail(e, EIO, "KVM_GET_XCRS returned %u registers", x.nr_xcrs);
	begin(o, "xcrs");
	put_u32(o, "nr", x.nr_xcrs);
	for (uint32_t i = 0; i < x.nr_xcrs; i++) {
		char name[16];
		if (x.xcrs[i].xcr >= KVM_MAX_XCRS)
			return fail(e, EIO, "KVM_GET_XCRS returned XCR%u", x.xcrs[i].xcr);
		snprintf(name, sizeof(name), "xcr%u", x.xcrs[i].xcr);
		put_u64(o, name, x.xcrs[i].value);
	}
	end(o);
	return 0;
}

/* The MSRs KVM lists plus extra_msrs, minus those KVM_GET_MSRS refuses. */
static int save_msrs(const struct kvm_state_env *e, struct out *o)
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
		rc = fail(e, ENOMEM, "out of memory");
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
			rc = fail(e, ENOMEM, "out of memory");
			goto out;
		}
		part->nmsrs = n - done;
		memcpy(part->entries, &m->entries[done],
		       (n - done) * sizeof(struct kvm_msr_entry));
		got = ioctl(e->vcpu_fd, KVM_GET_MSRS, part);
		if (got < 0) {
			free(part);
			rc = fail_ioctl(e, "KVM_GET_MSRS");
			goto out;
		}
		memcpy(&m->entries[done], part->entries, (size_t)got * sizeof(struct kvm_msr_entry));
		free(part);
		done += (uint32_t)got;
		if (done < n) {
			memmove(&m->entries[done], &m->entries[done + 1],
				(n - done - 1) * sizeof(struct kvm_msr_entry));
			n--;
		}
	}
	if (n > MAX_MSRS) {
		rc = fail(e, E2BIG, "%u MSRs, more than the %u a restore accepts", n, MAX_MSRS);
		goto out;
	}
	/* The kvmclock at (about) the time the TSC was read. */
	memset(&clock, 0, sizeof(clock));
	if (ioctl(e->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		rc = fail_ioctl(e, "KVM_GET_CLOCK");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		indices[i] = htole32(m->entries[i].index);
	begin(o, "msrs");
	put_u32(o, "count", n);
	put_bytes(o, "indices", indices, n * (uint32_t)sizeof(*indices));
	put_u64(o, "tsc_kvmclock", clock.clock);
	for (uint32_t i = 0; i < n; i++) {
		char name[16];
		snprintf(name, sizeof(name), "0x%x", m->entries[i].index);
		put_u64(o, name, m->entries[i].data);
	}
	end(o);
out:
	free(indices);
	free(m);
	free(list);
	return rc;
}

int kvm_state_vcpu_save(const struct kvm_state_env *e, struct smolvm_state_writer *w)
{
	struct out o = { .e = e, .w = w };
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
		return fail_ioctl(e, "KVM_GET_MP_STATE");
	tsc_khz = ioctl(e->vcpu_fd, KVM_GET_TSC_KHZ, 0);
	begin(&o, "vcpu");
	put_u32(&o, "index", e->vcpu_index);
	put_u32(&o, "mp_state", mp.mp_state);
	put_u32(&o, "tsc_khz", tsc_khz > 0 ? (uint32_t)tsc_khz : 0);
	end(&o);

	rc = read_cpuid(e, e->vcpu_fd, KVM_GET_CPUID2, "KVM_GET_CPUID2", &cpuid);
	if (rc)
		return rc;
	begin(&o, "cpuid");
	put_u32(&o, "nent", cpuid->nent);
	put_bytes(&o, "entries", cpuid->entries,
		  cpuid->nent * (uint32_t)sizeof(struct kvm_cpuid_entry2));
	end(&o);
	free(cpuid);

	if (ioctl(e->vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return fail_ioctl(e, "KVM_GET_REGS");
	begin(&o, "regs");
	put_fields(&o, regs_fields, SMOLVM_ARRAY_LEN(regs_fields), &regs);
	end(&o);

	if ((rc = save_sregs(e, &o)) || (rc = save_fpu(e, &o)) || (rc = save_xcrs(e, &o)))
		return rc;

	if (ioctl(e->vcpu_fd, KVM_GET_DEBUGREGS, &dregs) < 0)
		return fail_ioctl(e, "KVM_GET_DEBUGREGS");
	begin(&o, "debugregs");
	put_fields(&o, debugregs_fields, SMOLVM_ARRAY_LEN(debugregs_fields), &dregs);
	end(&o);

	if ((rc = save_msrs(e, &o)))
		return rc;

	if (ioctl(e->vcpu_fd, KVM_GET_LAPIC, &lapic) < 0)
		return fail_ioctl(e, "KVM_GET_LAPIC");
	begin(&o, "lapic");
	put_bytes(&o, "regs", lapic.regs, sizeof(lapic.regs));
	end(&o);

	/* Last: the other GETs may still move pending events. */
	memset(&ev, 0, sizeof(ev));
	if (ioctl(e->vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return fail_ioctl(e, "KVM_GET_VCPU_EVENTS");
	begin(&o, "events");
	put_fields(&o, events_fields, SMOLVM_ARRAY_LEN(events_fields), &ev);
	end(&o);
	return out_done(&o);
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

static int load_cpuid(struct in *in, struct vcpu_state *s)
{
	uint32_t nent;
	int rc;

	if ((rc = enter(in, "cpuid")) || (rc = get_u32(in, "nent", &nent)))
		return rc;
	if (!nent || nent > MAX_CPUID_ENTRIES)
		return bad(in, "nent", "%u entries (1..%u)", nent, MAX_CPUID_ENTRIES);
	s->cpuid = cpuid_alloc(nent);
	if (!s->cpuid)
		return fail(in->e, ENOMEM, "out of memory");
	rc = get(in, "entries", SMOLVM_STATE_BYTES, s->cpuid->entries,
		 nent * (uint32_t)sizeof(struct kvm_cpuid_entry2));
	if (rc)
		return rc;
	leave(in);
	return check_cpuid(in->e, s->cpuid);
}

static int load_sregs(struct in *in, struct vcpu_state *s)
{
	uint64_t pdptr[4];
	int rc, n = 0;

	if ((rc = enter(in, "sregs")))
		return rc;
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_segs); i++) {
		void *seg = (char *)&s->sregs + sregs_segs[i].offset;
		if ((rc = enter(in, sregs_segs[i].name)) ||
		    (rc = get_fields(in, seg_fields, SMOLVM_ARRAY_LEN(seg_fields), seg)) ||
		    (rc = check_u8s(in, seg_limits, SMOLVM_ARRAY_LEN(seg_limits), seg)))
			return rc;
		leave(in);
	}
	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(sregs_dtables); i++) {
		if ((rc = enter(in, sregs_dtables[i].name)) ||
		    (rc = get_fields(in, dtable_fields, SMOLVM_ARRAY_LEN(dtable_fields),
				     (char *)&s->sregs + sregs_dtables[i].offset)))
			return rc;
		leave(in);
	}
	if ((rc = get_fields(in, sregs_fields, SMOLVM_ARRAY_LEN(sregs_fields), &s->sregs)))
		return rc;
	if (s->sregs.efer & ~EFER_VALID)
		return bad(in, "efer", "0x%llx has reserved bits set",
			   (unsigned long long)s->sregs.efer);
	if (s->sregs.cr8 > 15)
		return bad(in, "cr8", "0x%llx is not a task priority (0..15)",
			   (unsigned long long)s->sregs.cr8);
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "pdptr%d", i);
		rc = get_opt(in, name, SMOLVM_STATE_U64, &pdptr[i], sizeof(pdptr[i]));
		if (rc && rc != -ENOENT)
			return rc;
		n += !rc;
	}
	if (n != 0 && n != 4)
		return bad(in, "pdptr0", "%d of the 4 PDPTRs saved", n);
	if (n == 4) {
		s->sregs.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
		memcpy(s->sregs.pdptrs, pdptr, sizeof(pdptr));
	}
	rc = get_opt(in, "interrupt_bitmap", SMOLVM_STATE_BYTES, s->bitmap, sizeof(s->bitmap));
	if (rc && rc != -ENOENT)
		return rc;
	leave(in);
	return 0;
}

static int load_fpu(struct in *in, struct vcpu_state *s)
{
	const struct kvm_state_env *e = in->e;
	uint32_t size;
	int rc;

	if ((rc = enter(in, "fpu")))
		return rc;
	rc = get_opt(in, "xsave_size", SMOLVM_STATE_U32, &size, sizeof(size));
	if (rc == -ENOENT) {
		if ((rc = get(in, "legacy", SMOLVM_STATE_BYTES, &s->fpu, sizeof(s->fpu))))
			return rc;
		if (s->fpu.mxcsr & 0xffff0000u)
			return bad(in, "legacy", "MXCSR 0x%x has reserved bits set", s->fpu.mxcsr);
		leave(in);
		return 0;
	}
	if (rc)
		return rc;
	if (size < XSAVE_LEGACY_SIZE || size > MAX_XSAVE || size % 4)
		return bad(in, "xsave_size", "%u bytes (a multiple of 4 in %u..%u)", size,
			   XSAVE_LEGACY_SIZE, MAX_XSAVE);
	if (!has_cap(e, KVM_CAP_XSAVE))
		return fail(e, ENOTSUP, "fpu.xsave: this host's KVM lacks KVM_CAP_XSAVE");

	int xsave2 = has_cap(e, KVM_CAP_XSAVE2);
	uint32_t host = xsave2 > XSAVE_LEGACY_SIZE ? (uint32_t)xsave2 : XSAVE_LEGACY_SIZE;
	uint32_t alloc = size > host ? size : host;
	uint8_t *p = calloc(1, alloc);
	uint64_t xstate_bv, xcomp_bv, supported;
	uint32_t mxcsr;

	if (!p)
		return fail(e, ENOMEM, "out of memory");
	s->xsave = p; /* KVM_SET_XSAVE reads `host` bytes */
	if ((rc = get(in, "xsave", SMOLVM_STATE_BYTES, p, size)))
		return rc;
	/* A larger area from another host is fine when its tail is unused. */
	for (uint32_t i = host; i < size; i++)
		if (p[i])
			return bad(in, "xsave", "uses %u bytes, this host's KVM takes %u",
				   size, host);
	memcpy(&mxcsr, p + 24, 4);
	memcpy(&xstate_bv, p + 512, 8);
	memcpy(&xcomp_bv, p + 520, 8);
	supported = cpuid_reg(cpuid_find(e->supported, 0xd, 0), EAX) |
		    (uint64_t)cpuid_reg(cpuid_find(e->supported, 0xd, 0), EDX) << 32;
	if (mxcsr & 0xffff0000u)
		return bad(in, "xsave", "MXCSR 0x%x has reserved bits set", mxcsr);
	if (xstate_bv & ~(supported | 3))
		return bad(in, "xsave", "XSTATE_BV 0x%llx has components 0x%llx this host's "
			   "KVM does not support (it supports 0x%llx)",
			   (unsigned long long)xstate_bv,
			   (unsigned long long)(xstate_bv & ~(supported | 3)),
			   (unsigned long long)supported);
	if (xcomp_bv)
		return bad(in, "xsave", "XCOMP_BV 0x%llx: not the standard format",
			   (unsigned long long)xcomp_bv);
	leave(in);
	return 0;
}

static int load_xcrs(struct in *in, struct vcpu_state *s)
{
	uint32_t nr, found = 0;
	int missing, rc;

	if ((rc = enter_opt(in, "xcrs", &missing)) || missing)
		return rc; /* saved on a host without KVM_CAP_XCRS */
	if (!has_cap(in->e, KVM_CAP_XCRS))
		return fail(in->e, ENOTSUP, "xcrs: this host's KVM lacks KVM_CAP_XCRS");
	if ((rc = get_u32(in, "nr", &nr)))
		return rc;
	if (nr > KVM_MAX_XCRS)
		return bad(in, "nr", "%u registers (at most %u)", nr, KVM_MAX_XCRS);
	for (uint32_t x = 0; x < KVM_MAX_XCRS && found < nr; x++) {
		char name[16];
		uint64_t v;
		snprintf(name, sizeof(name), "xcr%u", x);
		rc = get_opt(in, name, SMOLVM_STATE_U64, &v, sizeof(v));
		if (rc == -ENOENT)
			continue;
		if (rc)
			return rc;
		if (x == 0 && !(v & 1))
			return bad(in, name, "0x%llx lacks x87 (bit 0)", (unsigned long long)v);
		s->xcrs.xcrs[found].xcr = x;
		s->xcrs.xcrs[found++].value = v;
	}
	if (found != nr)
		return bad(in, "nr", "%u registers announced, %u found", nr, found);
	s->xcrs.nr_xcrs = nr;
	s->have_xcrs = 1;
	leave(in);
	return 0;
}

static int load_msrs(struct in *in, struct vcpu_state *s)
{
	const struct kvm_state_env *e = in->e;
	struct kvm_msr_list *host = NULL;
	uint32_t count, *idx = NULL, n = 0;
	uint64_t early_data = 0;
	int rc, early = 0;

	if ((rc = enter(in, "msrs")) || (rc = get_u32(in, "count", &count)))
		return rc;
	if (count > MAX_MSRS)
		return bad(in, "count", "%u MSRs (at most %u)", count, MAX_MSRS);
	if ((rc = get_u64(in, "tsc_kvmclock", &s->tsc_kvmclock)) ||
	    (rc = msr_index_list(e, &host)))
		return rc;
	s->tsc_slot = -1;
	idx = calloc(count ? count : 1, sizeof(*idx));
	s->msrs = calloc(1, sizeof(*s->msrs) + (size_t)count * sizeof(struct kvm_msr_entry));
	if (!idx || !s->msrs) {
		rc = fail(e, ENOMEM, "out of memory");
		goto out;
	}
	rc = get(in, "indices", SMOLVM_STATE_BYTES, idx, count * (uint32_t)sizeof(*idx));
	if (rc)
		goto out;
	for (uint32_t i = 0; i < count; i++) {
		uint32_t index = le32toh(idx[i]);
		char name[16];
		uint64_t v;

		snprintf(name, sizeof(name), "0x%x", index);
		if (!msr_listed(host, index)) {
			rc = bad(in, name, "MSR not supported by this host's KVM");
			goto out;
		}
		for (uint32_t j = 0; j < i; j++)
			if (le32toh(idx[j]) == index) {
				rc = bad(in, name, "MSR listed twice");
				goto out;
			}
		if ((rc = get_u64(in, name, &v)))
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
		memmove(&s->msrs->entries[1], &s->msrs->entries[0], n * sizeof(struct kvm_msr_entry));
		s->msrs->entries[0].index = MSR_KVM_ASYNC_PF_INT;
		s->msrs->entries[0].data = early_data;
		n++;
		if (s->tsc_slot >= 0)
			s->tsc_slot++;
	}
	s->msrs->nmsrs = n;
	leave(in);
out:
	free(idx);
	free(host);
	return rc;
}

static int load_events(struct in *in, struct vcpu_state *s)
{
	struct kvm_vcpu_events *ev = &s->ev;
	const uint32_t known = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			       KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	int rc;

	if ((rc = enter(in, "events")) ||
	    (rc = get_fields(in, events_fields, SMOLVM_ARRAY_LEN(events_fields), ev)) ||
	    (rc = check_u8s(in, events_limits, SMOLVM_ARRAY_LEN(events_limits), ev)))
		return rc;
	/* Payloads and triple-fault events need VM capabilities smolvm does
	 * not enable, so KVM never reports them. */
	if (ev->flags & ~known)
		return bad(in, "flags", "0x%x has unknown or unsupported bits 0x%x", ev->flags,
			   ev->flags & ~known);
	if ((ev->exception.injected || ev->exception.pending) && ev->exception.nr == 2)
		return bad(in, "exception.nr", "2 (NMI) is not an exception");
	if (ev->exception.injected && ev->exception.pending)
		return bad(in, "exception.pending", "both injected and pending");
	if (ev->sipi_vector > 0xff)
		return bad(in, "sipi_vector", "0x%x is not a vector", ev->sipi_vector);
	leave(in);
	return 0;
}

static int load_vcpu(struct in *in, struct vcpu_state *s)
{
	const struct kvm_state_env *e = in->e;
	uint32_t index;
	int rc;

	if ((rc = enter(in, "vcpu")) || (rc = get_u32(in, "index", &index)) ||
	    (rc = get_u32(in, "mp_state", &s->mp_state)) ||
	    (rc = get_u32(in, "tsc_khz", &s->tsc_khz)))
		return rc;
	if (index != e->vcpu_index)
		return bad(in, "index", "state of vcpu %u, restoring vcpu %u", index, e->vcpu_index);
	if (s->tsc_khz > MAX_TSC_KHZ)
		return bad(in, "tsc_khz", "%u kHz is not a TSC rate", s->tsc_khz);
	if (s->mp_state > KVM_MP_STATE_SIPI_RECEIVED)
		return bad(in, "mp_state", "%u is not an x86 run state", s->mp_state);
	leave(in);

	if ((rc = load_cpuid(in, s)))
		return rc;

	if ((rc = enter(in, "regs")) ||
	    (rc = get_fields(in, regs_fields, SMOLVM_ARRAY_LEN(regs_fields), &s->regs)))
		return rc;
	if (s->regs.rflags & ~RFLAGS_VALID)
		return bad(in, "rflags", "0x%llx has reserved bits set",
			   (unsigned long long)s->regs.rflags);
	leave(in);

	if ((rc = load_sregs(in, s)) || (rc = load_fpu(in, s)) || (rc = load_xcrs(in, s)))
		return rc;

	if ((rc = enter(in, "debugregs")) ||
	    (rc = get_fields(in, debugregs_fields, SMOLVM_ARRAY_LEN(debugregs_fields),
			     &s->dregs)))
		return rc;
	if (s->dregs.dr6 >> 32)
		return bad(in, "dr6", "0x%llx has reserved bits set",
			   (unsigned long long)s->dregs.dr6);
	if (s->dregs.dr7 >> 32)
		return bad(in, "dr7", "0x%llx has reserved bits set",
			   (unsigned long long)s->dregs.dr7);
	leave(in);

	if ((rc = load_msrs(in, s)))
		return rc;

	if ((rc = enter(in, "lapic")) ||
	    (rc = get(in, "regs", SMOLVM_STATE_BYTES, s->lapic.regs, sizeof(s->lapic.regs))))
		return rc;
	leave(in);

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
	if (has_cap(e, KVM_CAP_TSC_CONTROL) && ioctl(e->vcpu_fd, KVM_SET_TSC_KHZ, khz) == 0)
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
		return fail_ioctl(e, "KVM_SET_CPUID2 (saved CPUID)");
	restore_tsc_khz(e, s->tsc_khz);

	if (has_cap(e, KVM_CAP_SREGS2)) {
		if (ioctl(fd, KVM_SET_SREGS2, &s->sregs) < 0)
			return fail_ioctl(e, "KVM_SET_SREGS2");
	} else {
		struct kvm_sregs old;
		memcpy(&old, &s->sregs, SREGS_COMMON);
		memcpy(old.interrupt_bitmap, s->bitmap, sizeof(old.interrupt_bitmap));
		if (ioctl(fd, KVM_SET_SREGS, &old) < 0)
			return fail_ioctl(e, "KVM_SET_SREGS");
	}
	if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
		return fail_ioctl(e, "KVM_SET_REGS");
	if (s->xsave) {
		if (ioctl(fd, KVM_SET_XSAVE, s->xsave) < 0)
			return fail_ioctl(e, "KVM_SET_XSAVE");
	} else if (ioctl(fd, KVM_SET_FPU, &s->fpu) < 0) {
		return fail_ioctl(e, "KVM_SET_FPU");
	}
	if (s->have_xcrs && ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
		return fail_ioctl(e, "KVM_SET_XCRS");
	if (ioctl(fd, KVM_SET_DEBUGREGS, &s->dregs) < 0)
		return fail_ioctl(e, "KVM_SET_DEBUGREGS");

	if (s->tsc_slot >= 0)
		s->msrs->entries[s->tsc_slot].data =
			advance_tsc(e, s, s->msrs->entries[s->tsc_slot].data);

	/* KVM_SET_MSRS stops at the first MSR it refuses. Writing 0 is refused
	 * for an MSR the guest's CPUID does not have (e.g. XSS without
	 * xsaves): 0 is its reset value, so skip it and go on. */
	rest = calloc(1, sizeof(*rest) + (s->msrs->nmsrs + 1) * sizeof(struct kvm_msr_entry));
	if (!rest)
		return fail(e, ENOMEM, "out of memory");
	for (uint32_t done = 0; done < s->msrs->nmsrs;) {
		const struct kvm_msr_entry *refused;

		rest->nmsrs = s->msrs->nmsrs - done;
		memcpy(rest->entries, &s->msrs->entries[done],
		       rest->nmsrs * sizeof(struct kvm_msr_entry));
		r = ioctl(fd, KVM_SET_MSRS, rest);
		if (r < 0) {
			rc = fail_ioctl(e, "KVM_SET_MSRS");
			goto out;
		}
		done += (uint32_t)r;
		if (done == s->msrs->nmsrs)
			break;
		refused = &s->msrs->entries[done++];
		if (refused->data) {
			rc = fail(e, EINVAL, "KVM refused MSR 0x%x = 0x%llx", refused->index,
				  (unsigned long long)refused->data);
			goto out;
		}
	}

	if (ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0) {
		rc = fail_ioctl(e, "KVM_SET_LAPIC");
		goto out;
	}
	if (s->have_deadline) {
		rest->nmsrs = 1;
		rest->entries[0].index = MSR_IA32_TSC_DEADLINE;
		rest->entries[0].data = s->deadline;
		r = ioctl(fd, KVM_SET_MSRS, rest);
		if (r != 1) {
			rc = r < 0 ? fail_ioctl(e, "KVM_SET_MSRS (TSC deadline)")
				   : fail(e, EINVAL, "KVM refused MSR 0x%x = 0x%llx",
					  MSR_IA32_TSC_DEADLINE, (unsigned long long)s->deadline);
			goto out;
		}
	}
	free(rest);
	rest = NULL;

	if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
		return fail_ioctl(e, "KVM_SET_MP_STATE");
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &s->ev) < 0)
		return fail_ioctl(e, "KVM_SET_VCPU_EVENTS");
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
	struct in in = { .e = e, .r = r };
	struct vcpu_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return fail(e, ENOMEM, "out of memory");
	rc = load_vcpu(&in, s);
	while (in.depth)
		leave(&in);
	if (!rc)
		rc = apply_vcpu(e, s);
	free(s->cpuid);
	free(s->xsave);
	free(s->msrs);
	free(s);
	return rc;
}

/* ---- VM ---------------------------------------------------------------- */

static const struct {
	const char *name;
	uint32_t chip;
} pics[] = {
	{ "pic_master", KVM_IRQCHIP_PIC_MASTER },
	{ "pic_slave", KVM_IRQCHIP_PIC_SLAVE },
};

int kvm_state_vm_save(const struct kvm_state_env *e, struct smolvm_state_writer *w)
{
	struct out o = { .e = e, .w = w };
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct timespec ts;
	uint64_t realtime;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = pics[i].chip;
		if (ioctl(e->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return fail_ioctl(e, "KVM_GET_IRQCHIP (PIC)");
		begin(&o, pics[i].name);
		put_fields(&o, pic_fields, SMOLVM_ARRAY_LEN(pic_fields), &chip.chip.pic);
		end(&o);
	}

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(e->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return fail_ioctl(e, "KVM_GET_IRQCHIP (IOAPIC)");
	begin(&o, "ioapic");
	put_fields(&o, ioapic_fields, SMOLVM_ARRAY_LEN(ioapic_fields), &chip.chip.ioapic);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "redirtbl[%d]", i);
		put_u64(&o, name, chip.chip.ioapic.redirtbl[i].bits);
	}
	end(&o);

	if (ioctl(e->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return fail_ioctl(e, "KVM_GET_PIT2");
	begin(&o, "pit");
	put_u32(&o, "flags", pit.flags);
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "ch%d", i);
		begin(&o, name);
		put_fields(&o, pit_fields, SMOLVM_ARRAY_LEN(pit_fields), &pit.channels[i]);
		end(&o);
	}
	end(&o);

	/* The kvmclock and the wall time it was read at, as one pair. */
	memset(&clock, 0, sizeof(clock));
	if (ioctl(e->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return fail_ioctl(e, "KVM_GET_CLOCK");
	clock_gettime(CLOCK_REALTIME, &ts);
	realtime = (clock.flags & KVM_CLOCK_REALTIME)
			   ? clock.realtime
			   : (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	begin(&o, "clock");
	put_u64(&o, "kvmclock", clock.clock);
	put_u64(&o, "realtime_ns", realtime);
	end(&o);
	return out_done(&o);
}

struct vm_state {
	struct kvm_irqchip pic[2], ioapic;
	struct kvm_pit_state2 pit;
	uint64_t kvmclock, realtime;
};

static int load_vm(struct in *in, struct vm_state *s)
{
	struct kvm_ioapic_state *io = &s->ioapic.chip.ioapic;
	uint32_t flags;
	int rc;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++) {
		s->pic[i].chip_id = pics[i].chip;
		if ((rc = enter(in, pics[i].name)) ||
		    (rc = get_fields(in, pic_fields, SMOLVM_ARRAY_LEN(pic_fields),
				     &s->pic[i].chip.pic)) ||
		    (rc = check_u8s(in, pic_limits, SMOLVM_ARRAY_LEN(pic_limits),
				    &s->pic[i].chip.pic)))
			return rc;
		leave(in);
	}

	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if ((rc = enter(in, "ioapic")) ||
	    (rc = get_fields(in, ioapic_fields, SMOLVM_ARRAY_LEN(ioapic_fields), io)))
		return rc;
	/* KVM takes base_address as the IOAPIC's MMIO window. */
	if (io->base_address != IOAPIC_DEFAULT_BASE)
		return bad(in, "base_address", "0x%llx (the IOAPIC is at 0x%llx)",
			   (unsigned long long)io->base_address, IOAPIC_DEFAULT_BASE);
	if (io->ioregsel > 0xff)
		return bad(in, "ioregsel", "0x%x is not an 8-bit register index", io->ioregsel);
	if (io->id > 0xf)
		return bad(in, "id", "%u is not a 4-bit IOAPIC id", io->id);
	if (io->irr >> KVM_IOAPIC_NUM_PINS)
		return bad(in, "irr", "0x%x has bits above pin %d", io->irr, KVM_IOAPIC_NUM_PINS - 1);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "redirtbl[%d]", i);
		uint64_t v;
		if ((rc = get_u64(in, name, &v)))
			return rc;
		io->redirtbl[i].bits = v;
	}
	leave(in);

	if ((rc = enter(in, "pit")) || (rc = get_u32(in, "flags", &flags)))
		return rc;
	if (flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON))
		return bad(in, "flags", "0x%x has unknown bits", flags);
	s->pit.flags = flags;
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &s->pit.channels[i];
		char name[8];
		snprintf(name, sizeof(name), "ch%d", i);
		if ((rc = enter(in, name)) ||
		    (rc = get_fields(in, pit_fields, SMOLVM_ARRAY_LEN(pit_fields), c)) ||
		    (rc = check_u8s(in, pit_limits, SMOLVM_ARRAY_LEN(pit_limits), c)))
			return rc;
		if (c->count > 0x10000)
			return bad(in, "count", "%u is above 65536", c->count);
		if (c->mode > 5 && c->mode != 0xff) /* 0xff: never programmed */
			return bad(in, "mode", "%u is not a PIT mode (0..5, 255)", c->mode);
		leave(in);
	}
	leave(in);

	if ((rc = enter(in, "clock")) || (rc = get_u64(in, "kvmclock", &s->kvmclock)) ||
	    (rc = get_u64(in, "realtime_ns", &s->realtime)))
		return rc;
	if (s->kvmclock > MAX_CLOCK_NS)
		return bad(in, "kvmclock", "%llu ns is out of range",
			   (unsigned long long)s->kvmclock);
	leave(in);
	return 0;
}

int kvm_state_vm_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r)
{
	struct in in = { .e = e, .r = r };
	struct vm_state s;
	struct kvm_clock_data clock;
	struct timespec ts;
	uint64_t now, elapsed;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = load_vm(&in, &s);
	while (in.depth)
		leave(&in);
	if (rc)
		return rc;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(pics); i++)
		if (ioctl(e->vm_fd, KVM_SET_IRQCHIP, &s.pic[i]) < 0)
			return fail_ioctl(e, "KVM_SET_IRQCHIP (PIC)");
	if (ioctl(e->vm_fd, KVM_SET_IRQCHIP, &s.ioapic) < 0)
		return fail_ioctl(e, "KVM_SET_IRQCHIP (IOAPIC)");
	if (ioctl(e->vm_fd, KVM_SET_PIT2, &s.pit) < 0)
		return fail_ioctl(e, "KVM_SET_PIT2");

	/* Forward by the wall time since the save, never backwards. */
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	elapsed = now > s.realtime ? now - s.realtime : 0;
	memset(&clock, 0, sizeof(clock));
	clock.clock = elapsed > MAX_CLOCK_NS - s.kvmclock ? MAX_CLOCK_NS : s.kvmclock + elapsed;
	if (ioctl(e->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return fail_ioctl(e, "KVM_SET_CLOCK");
	return 0;
}
