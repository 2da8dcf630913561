/* KVM backend snapshots: the state KVM keeps for a vCPU (registers, FPU,
 * MSRs, LAPIC, events, CPUID) and for the VM (PIC, IOAPIC, PIT, kvmclock),
 * written as named, typed fields through the host's state writer.
 *
 * kvm.c owns the VM and vCPU structs; it hands these functions the few
 * things they need in a kvm_state_env. */
#ifndef SMOLVM_KVM_STATE_H
#define SMOLVM_KVM_STATE_H

#include <linux/kvm.h>
#include <smolvm/plugin.h>

struct kvm_state_env {
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	int kvm_fd;  /* /dev/kvm */
	int vm_fd;
	int vcpu_fd; /* -1 for the VM-wide calls */
	uint32_t vcpu_index;
	const struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
};

/* Machine-wide state: PIC master and slave, IOAPIC, PIT, kvmclock.
 * Restore after the VM, its memory, irqchip and PIT exist, before the
 * vCPUs are restored (the MSR writes of kvm-clock use the clock). */
int kvm_state_vm_save(const struct kvm_state_env *e, struct smolvm_state_writer *w);
int kvm_state_vm_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r);

/* One vCPU. Save with the vCPU parked outside KVM_RUN; restore into a
 * vCPU just created (CPUID set) that has never run. */
int kvm_state_vcpu_save(const struct kvm_state_env *e, struct smolvm_state_writer *w);
int kvm_state_vcpu_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r);

#endif
