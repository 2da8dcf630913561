/* CPUID tables for the KVM backend's snapshots: reading KVM's, looking up
 * a leaf, and the host contract of a restore (the saved CPUID may show the
 * guest only features this host's KVM can give it). */
#ifndef SMOLVM_KVM_CPUID_H
#define SMOLVM_KVM_CPUID_H

#include "state_env.h"

#define KVM_CPUID_MAX_ENTRIES 256 /* the kernel's KVM_MAX_CPUID_ENTRIES */

enum kvm_cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

/* A zeroed table of `nent` entries, or NULL. */
struct kvm_cpuid2 *kvm_cpuid_alloc(uint32_t nent);
/* KVM_GET_CPUID2 (vCPU fd) or KVM_GET_EMULATED_CPUID (/dev/kvm) into a new
 * table: 0, or -errno after set_error naming `what`. */
int kvm_cpuid_read(const struct kvm_state_env *e, int fd, unsigned long req, const char *what,
		   struct kvm_cpuid2 **out);
/* The entry for leaf `function` (and `index` where it is significant), or
 * NULL (also for a NULL table). */
const struct kvm_cpuid_entry2 *kvm_cpuid_find(const struct kvm_cpuid2 *c, uint32_t function,
					      uint32_t index);
/* A register of an entry; 0 for a NULL entry. */
uint32_t kvm_cpuid_reg(const struct kvm_cpuid_entry2 *x, enum kvm_cpuid_reg reg);
/* Refuses (-ENOTSUP, naming the features) a saved CPUID with feature bits
 * this host's KVM cannot show a guest. Needs the vCPU (e->vcpu_fd). */
int kvm_cpuid_check_host(const struct kvm_state_env *e, const struct kvm_cpuid2 *saved);

#endif
