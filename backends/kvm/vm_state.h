/* The VM's state in a snapshot: PIC master and slave, IOAPIC, PIT and
 * kvmclock, as named, typed fields through the host's state writer. */
#ifndef SMOLVM_KVM_VM_STATE_H
#define SMOLVM_KVM_VM_STATE_H

#include "state_env.h"

/* Restore after the VM, its memory, irqchip and PIT exist, before the
 * vCPUs are restored (the MSR writes of kvm-clock use the clock). */
int kvm_state_vm_save(const struct kvm_state_env *e, struct smolvm_state_writer *w);
int kvm_state_vm_restore(const struct kvm_state_env *e, struct smolvm_state_reader *r);

#endif
