/* What the KVM backend's snapshot files (vcpu_state.c, vm_state.c,
 * cpuid.c) share: the handles kvm.c hands them and how they report.
 *
 * kvm.c owns the VM and vCPU structs; it hands the state code the few
 * things it needs in a kvm_state_env. */
#ifndef SMOLVM_KVM_STATE_ENV_H
#define SMOLVM_KVM_STATE_ENV_H

#include <linux/kvm.h>
#include <smolvm/plugin.h>
#include <smolvm/state.h>

struct kvm_state_env {
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	int kvm_fd;  /* /dev/kvm */
	int vm_fd;
	int vcpu_fd; /* -1 for the VM-wide calls */
	uint32_t vcpu_index;
	const struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
};

/* What every message starts with: "vcpu N state: " or "VM state: ". */
struct kvm_state_prefix {
	char text[32];
};

void kvm_state_prefix(const struct kvm_state_env *e, struct kvm_state_prefix *p);

/* Sets the error (the prefix, then the message) and returns `rc` (-errno). */
int kvm_state_fail(const struct kvm_state_env *e, int rc, const char *fmt, ...)
	SMOLVM_PRINTF(3, 4);
/* An ioctl failed: "<what>: <strerror(errno)>", -errno. */
int kvm_state_fail_ioctl(const struct kvm_state_env *e, const char *what);
/* KVM_CHECK_EXTENSION on the VM: its value, 0 when absent. */
int kvm_state_has_cap(const struct kvm_state_env *e, long cap);

/* The SDK's typed writer and reader, their messages prefixed like the
 * others; `p` must outlive them. */
void kvm_state_out_init(const struct kvm_state_env *e, struct kvm_state_prefix *p,
			struct smolvm_state_out *o, struct smolvm_state_writer *w);
void kvm_state_in_init(const struct kvm_state_env *e, struct kvm_state_prefix *p,
		       struct smolvm_state_in *in, struct smolvm_state_reader *r);

/* A whole table: every field written or read (all are state version 1),
 * every limit checked. */
#define KVM_PUT_TABLE(o, t, base) smolvm_state_put_fields((o), (t), SMOLVM_ARRAY_LEN(t), (base))
#define KVM_GET_TABLE(in, t, base)                                              \
	smolvm_state_get_fields((in), (t), SMOLVM_ARRAY_LEN(t), (base), 1)
#define KVM_CHECK_LIMITS(in, t, base)                                           \
	smolvm_state_check_limits((in), (t), SMOLVM_ARRAY_LEN(t), (base))

#endif
