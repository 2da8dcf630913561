/*
 * AP start: real mode at TRAMP_ADDR (copied there by ap_start, ap.c) ->
 * protected mode -> enter_long32 (entry.S) -> ap_entry64 on the stack in
 * ap_stack_top -> the guest's ap_main().
 */
#include "guest.h"

#define T(sym) (TRAMP_ADDR + (sym) - tramp_start)

	.section .rodata
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl T(tramp_gdtr)
	movl $0x11, %eax		/* CR0: ET|PE */
	movl %eax, %cr0
	ljmpl $KCODE32, $ap_start32
	.balign 8
tramp_gdtr:
	.word GDT_LIMIT
	.long gdt
tramp_end:

	.text
	.code32
ap_start32:
	movl $KDATA, %eax		/* DS still has its real-mode 64 KiB limit */
	movl %eax, %ds
	movl $ap_entry64, %edi
	jmp enter_long32

	.code64
ap_entry64:
	movq ap_stack_top, %rsp
	call ap_main
1:	cli
	hlt
	jmp 1b
