/*
 * LSTAR target for the probe guest. It sits in kernel text, a supervisor
 * page: if SYSCALL leaves the CPU at CPL3 (the host defect) fetching it
 * faults with a user-mode #PF at exactly this address.
 */
#include "guest.h"

	.text
	.globl syscall_entry
syscall_entry:
	movl %cs, %edi			/* arg: CS as seen by the handler */
	movq $trap_stacks + TRAP_STACK_SIZE, %rsp	/* SYSCALL kept the user RSP; cpu 0's RSP0 stack */
	call probe_syscall_handler
1:	cli
	hlt
	jmp 1b
