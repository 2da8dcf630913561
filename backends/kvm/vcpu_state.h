/* A vCPU's state in a snapshot: registers, FPU/XSAVE, MSRs, LAPIC, events
 * and CPUID, as named, typed fields through the host's state writer. */
#ifndef SMOLVM_KVM_VCPU_STATE_H
#define SMOLVM_KVM_VCPU_STATE_H

#include "state_env.h"

/* Save with the vCPU parked outside KVM_RUN; restore into a vCPU just
 * created (CPUID set) that has never run, after the VM's state (the MSR
 * writes of kvm-clock use the clock). */
int kvm_state_vcpu_save(const struct kvm_state_env *e, struct smolvm_state_writer *w);
int kvm_state_vcpu_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r);

#endif
