/*
 * Entry paths shared by all test guests.
 *
 *  _start64     ELF e_entry: 64-bit Linux boot protocol (smolvm).
 *               Long mode, CS=0x10, DS=SS=0x18, IF=0, RSI=boot_params,
 *               no stack. Only the first instructions may rely on the
 *               loader's page tables: we switch to ours at once because
 *               the LAPIC/IOAPIC sit above the 1 GiB the loader maps.
 *  pvh_start32  PVH ELF note (QEMU): 32-bit flat protected mode, paging
 *               off, EBX=hvm_start_info.
 *
 * Both end in start_c(cmdline) on the boot stack with our GDT and CR3.
 * Kernel-mode code is emulated on some hosts, so it is kept short.
 */
#include "guest.h"

#define HVM_START_MAGIC 0x336ec578

/* XEN_ELFNOTE_PHYS32_ENTRY: QEMU finds it through the PT_NOTE segment. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long pvh_start32

	.section .text.entry, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	movl $entry64_pvh, %edi

/*
 * 32-bit flat protected mode -> long mode, then jump to the 64-bit address
 * in EDI. Keeps EBX. Also used by the SMP trampoline.
 */
	.globl enter_long32
enter_long32:
	lgdt gdt_ptr
	movl $KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl $0x20, %eax		/* CR4: PAE only */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $0x100, %eax		/* EFER.LME */
	wrmsr
	movl $0x80000011, %eax		/* CR0: PG|ET|PE (clears CD/NW of a fresh AP) */
	movl %eax, %cr0
	ljmp $KCODE64, $1f
	.code64
1:	movl %edi, %edi			/* upper halves are undefined after the switch */
	jmp *%rdi

entry64_pvh:
	movl %ebx, %ebx
	xorl %edi, %edi
	cmpl $HVM_START_MAGIC, (%rbx)
	jne common64
	movq 24(%rbx), %rdi		/* hvm_start_info.cmdline_paddr */
	jmp common64

	.globl _start64
_start64:
	cli
	cld
	movq $boot_stack_top, %rsp
	lgdt gdt_ptr
	movq %cr4, %rax
	andq $~0x300000, %rax		/* no SMEP/SMAP: the kernel reads user pages */
	movq %rax, %cr4
	movq $pml4, %rax		/* identity map of 4 GiB incl. APIC MMIO */
	movq %rax, %cr3
	pushq $KCODE64			/* reload CS from our GDT */
	pushq $1f
	lretq
1:	xorl %edi, %edi
	testq %rsi, %rsi
	jz common64
	movl 0x228(%rsi), %edi		/* boot_params.hdr.cmd_line_ptr */
	movl 0xc8(%rsi), %eax		/* boot_params.ext_cmd_line_ptr: bits 63:32 */
	shlq $32, %rax
	orq %rax, %rdi

/* RDI = physical address of the command line (0 = none). */
common64:
	movl $KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movq $boot_stack_top, %rsp
	call start_c
2:	cli
	hlt
	jmp 2b

/*
 * Static page tables: identity map of 0-4 GiB with 2 MiB pages, no runtime
 * loop (every kernel-mode instruction costs ~1.4 us on an emulating host).
 * Upper levels allow user access; the leaves decide: only the page at
 * USER_BASE is user-accessible, so kernel code (and the syscall entry) is
 * supervisor-only. The 3-4 GiB range (APIC, IOAPIC) is uncached.
 */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x7, pd + 0x1007, pd + 0x2007, pd + 0x3007
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 2048
	.if i == (USER_BASE >> 21)
	.quad (i << 21) | 0x87		/* P|RW|US|PS */
	.elseif i >= 1536
	.quad (i << 21) | 0x9b		/* P|RW|PWT|PCD|PS */
	.else
	.quad (i << 21) | 0x83		/* P|RW|PS */
	.endif
	.set i, i + 1
	.endr

	.section .data.gdt, "aw"
	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 kernel code 32 */
	.quad 0x00af9b000000ffff	/* 0x10 kernel code 64 */
	.quad 0x00cf93000000ffff	/* 0x18 kernel data */
	.quad 0x00cff3000000ffff	/* 0x20 user data */
	.quad 0x00affb000000ffff	/* 0x28 user code 64 */
	.fill 2 * MAX_CPUS, 8, 0	/* 0x30: one TSS descriptor per CPU, filled by cpu_init */
	.balign 8
	.globl gdt_ptr
gdt_ptr:
	.word GDT_LIMIT
	.quad gdt

/* Stacks take no room in the file. cpu 0's kernel stack is the boot stack. */
	.section .stack, "aw", @nobits
	.balign 4096
	.globl cpu_stacks, trap_stacks
cpu_stacks:
	.skip STACK_SIZE
boot_stack_top:
	.skip STACK_SIZE * (MAX_CPUS - 1)
trap_stacks:
	.skip TRAP_STACK_SIZE * MAX_CPUS

	.section .user.bss, "aw", @nobits
	.balign 4096
	.globl user_stacks
user_stacks:
	.skip USTACK_SIZE * MAX_CPUS
