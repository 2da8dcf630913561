/* CPUID tables and the host contract of a restore (see cpuid.h): the
 * names of the feature bits a refusal lists, and the check itself. */
#include "cpuid.h"

#include <asm/kvm_para.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>

struct kvm_cpuid2 *kvm_cpuid_alloc(uint32_t nent)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));

	if (c)
		c->nent = nent;
	return c;
}

int kvm_cpuid_read(const struct kvm_state_env *e, int fd, unsigned long req, const char *what,
		   struct kvm_cpuid2 **out)
{
	for (uint32_t n = KVM_CPUID_MAX_ENTRIES;; n *= 2) {
		struct kvm_cpuid2 *c = kvm_cpuid_alloc(n);
		if (!c)
			return kvm_state_fail(e, -ENOMEM, "out of memory");
		if (ioctl(fd, req, c) == 0) {
			*out = c;
			return 0;
		}
		int code = errno;
		free(c);
		if (code != E2BIG || n >= 4 * KVM_CPUID_MAX_ENTRIES) {
			errno = code;
			return kvm_state_fail_ioctl(e, what);
		}
	}
}

const struct kvm_cpuid_entry2 *kvm_cpuid_find(const struct kvm_cpuid2 *c, uint32_t function,
					      uint32_t index)
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

uint32_t kvm_cpuid_reg(const struct kvm_cpuid_entry2 *x, enum kvm_cpuid_reg reg)
{
	if (!x)
		return 0;
	switch (reg) {
	case CPUID_EAX: return x->eax;
	case CPUID_EBX: return x->ebx;
	case CPUID_ECX: return x->ecx;
	default: return x->edx;
	}
}

/* ---- the feature dictionary --------------------------------------------- */

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
	enum kvm_cpuid_reg reg;
	uint32_t dynamic; /* bits that mirror guest control registers */
	const char *const *names;
} feature_regs[] = {
	{ 1, 0, CPUID_ECX, 1u << 27 /* osxsave: CR4.OSXSAVE */, leaf1_ecx },
	{ 1, 0, CPUID_EDX, 0, leaf1_edx },
	{ 7, 0, CPUID_EBX, 0, leaf7_ebx },
	{ 7, 0, CPUID_ECX, 1u << 4 /* ospke: CR4.PKE */, leaf7_ecx },
	{ 7, 0, CPUID_EDX, 0, leaf7_edx },
	{ 0x80000001, 0, CPUID_ECX, 0, ext1_ecx },
	{ 0x80000001, 0, CPUID_EDX, 0, ext1_edx },
	{ 0xd, 0, CPUID_EAX, 0, xsave_components },  /* XCR0 bits 0..31 */
	{ 0xd, 0, CPUID_EDX, 0, NULL },              /* XCR0 bits 32..63 */
	{ 0xd, 1, CPUID_EAX, 0, xsave_leaf1 },
	{ 0xd, 1, CPUID_ECX, 0, NULL },              /* IA32_XSS bits */
	{ 0xd, 1, CPUID_EDX, 0, NULL },
	{ KVM_CPUID_FEATURES, 0, CPUID_EAX, 0, NULL }, /* paravirtual features */
};

static const char *const reg_names[] = { "EAX", "EBX", "ECX", "EDX" };

/* ---- the host contract ---------------------------------------------------- */

/* What this host's KVM can show a guest: KVM_GET_SUPPORTED_CPUID, plus
 * KVM_GET_EMULATED_CPUID, plus what it shows a fresh vCPU (on kvm_pvm,
 * KVM_GET_CPUID2 reports the host's own leaf 1/7 bits whatever was set). */
int kvm_cpuid_check_host(const struct kvm_state_env *e, const struct kvm_cpuid2 *saved)
{
	struct kvm_cpuid2 *emulated = NULL, *fresh = NULL;
	int rc = 0;

	/* Both are best effort: the supported table alone is the baseline. */
	if (kvm_cpuid_read(e, e->kvm_fd, KVM_GET_EMULATED_CPUID, "KVM_GET_EMULATED_CPUID",
			   &emulated))
		emulated = NULL;
	if (kvm_cpuid_read(e, e->vcpu_fd, KVM_GET_CPUID2, "KVM_GET_CPUID2", &fresh))
		fresh = NULL;

	for (size_t i = 0; i < SMOLVM_ARRAY_LEN(feature_regs) && !rc; i++) {
		uint32_t leaf = feature_regs[i].leaf, sub = feature_regs[i].subleaf;
		enum kvm_cpuid_reg reg = feature_regs[i].reg;
		const struct kvm_cpuid_entry2 *s = kvm_cpuid_find(saved, leaf, sub);
		uint32_t want, have, missing;
		char names[256] = "";
		size_t len = 0;

		if (!s)
			continue;
		want = kvm_cpuid_reg(s, reg) & ~feature_regs[i].dynamic;
		have = kvm_cpuid_reg(kvm_cpuid_find(e->supported, leaf, sub), reg) |
		       kvm_cpuid_reg(kvm_cpuid_find(emulated, leaf, sub), reg) |
		       kvm_cpuid_reg(kvm_cpuid_find(fresh, leaf, sub), reg);
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
		rc = kvm_state_fail(e, -ENOTSUP,
				    "the saved CPUID leaf 0x%x subleaf %u %s has bits 0x%08x that "
				    "this host's KVM does not support: %s",
				    leaf, sub, reg_names[reg], missing, names);
	}
	free(emulated);
	free(fresh);
	return rc;
}

