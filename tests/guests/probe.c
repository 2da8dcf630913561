/*
 * probe: does SYSCALL from CPL3 reach CPL0 on this host? Enters user mode
 * once to prove CPL3 works, then runs SYSCALL with LSTAR = syscall_entry.
 */
#include "guest.h"

#define PF_VECTOR 14
#define SFMASK_BITS 0x47700 /* TF, IF, DF, IOPL, AC, NT: as Linux */

extern char syscall_entry[];

USER_TEXT static uint64_t user_read_cs(void *arg)
{
	uint64_t cs;

	(void)arg;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return cs;
}

USER_TEXT static uint64_t user_syscall(void *arg)
{
	(void)arg;
	__asm__ volatile("syscall" : : "a"(0) : "rcx", "r11", "memory");
	return 0;
}

void probe_syscall_handler(uint64_t cs)
{
	if ((cs & 3) != 0)
		fail("syscall handler runs with cs 0x%lx\n", cs);
	kprintf("probe: syscall reaches CPL0\n");
	reset();
}

static void page_fault(struct trap_frame *f)
{
	if ((f->cs & 3) == 3 && f->rip == (uint64_t)syscall_entry) {
		kprintf("probe: #PF at LSTAR from cs 0x%lx, error 0x%lx\n", f->cs, f->error);
		kprintf("probe: syscall stays at CPL3 (host defect)\n");
		reset();
	}
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	fail("exception 14 at 0x%lx (cs 0x%lx error 0x%lx cr2 0x%lx)\n",
	     f->rip, f->cs, f->error, cr2);
}

void guest_main(const char *cmdline)
{
	(void)cmdline;
	uint64_t cs = run_user(user_read_cs, NULL, user_stack_top(0));
	if ((cs & 3) != 3)
		fail("user code ran with cs 0x%lx\n", cs);
	kprintf("probe: user mode ok\n");

	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1); /* SCE */
	/* SYSCALL: CS = 0x10, SS = 0x18; SYSRET: SS = 0x18+8, CS = 0x18+16 */
	wrmsr(MSR_STAR, (uint64_t)KDATA << 48 | (uint64_t)KCODE64 << 32);
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_SFMASK, SFMASK_BITS);
	trap_set_handler(PF_VECTOR, page_fault);
	run_user(user_syscall, NULL, user_stack_top(0));
	fail("syscall returned to user mode\n");
}
