/*
 * Interrupt/exception stubs and the kernel <-> user mode switch.
 * Stubs exist for vectors 0-47 and 255 (LAPIC spurious); isr_table lists
 * their addresses for idt_init.
 */
#include "guest.h"

/* Exceptions that push an error code themselves. */
#define HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

	.altmacro			/* so "stub %v" passes v's value */
	.macro stub v
	.balign 16
isr_\v:
	.if HAS_ERR(\v) == 0
	pushq $0
	.endif
	pushq $\v
	jmp isr_common
	.endm

	.macro isr_addr v
	.quad isr_\v
	.endm

	.text
	.set v, 0
	.rept 48
	stub %v
	.set v, v + 1
	.endr
	stub 255

/* Builds struct trap_frame and calls trap_dispatch(frame). */
isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi			/* 22 qwords pushed: RSP stays 16-aligned */
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp			/* vector, error code */
	iretq

	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
	.set v, 0
	.rept 48
	isr_addr %v
	.set v, v + 1
	.endr
	.quad isr_255

/*
 * uint64_t run_user(fn, arg, ustack_top)
 * Runs fn(arg) at CPL3 with interrupts off. fn returns into user_exit,
 * whose ud2 traps back; trap_dispatch then calls user_return(rax), which
 * makes this call return fn's result. Needs TSS.RSP0 and GS base (cpu_init).
 */
	.text
	.globl run_user
run_user:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %gs:CPU_KSP
	subq $8, %rdx
	movq $user_exit, (%rdx)		/* fn's return address */
	pushq $UDATA			/* SS */
	pushq %rdx			/* RSP */
	pushq $0x2			/* RFLAGS: IF=0, IOPL=0 */
	pushq $UCODE64			/* CS */
	pushq %rdi			/* RIP */
	movq %rsi, %rdi
	iretq

/* NORETURN void user_return(uint64_t value): back into run_user's caller. */
	.globl user_return
user_return:
	movq %gs:CPU_KSP, %rsp
	movl $KDATA, %eax		/* a trap from CPL3 left SS (and DS/ES) null */
	movl %eax, %ss
	movl %eax, %ds
	movl %eax, %es
	movq %rdi, %rax
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.section .user.text, "ax"
	.globl user_exit
user_exit:
	ud2
