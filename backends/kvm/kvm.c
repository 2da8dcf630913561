/* KVM backend: one VM with the in-kernel irqchip (PIC, IOAPIC, LAPICs) and
 * PIT, one thread per vCPU driven by the core through vcpu_run().
 *
 * Host workarounds (quirks.c) are active only on a host whose KVM is the
 * software-emulated kvm_pvm, or when forced; on hardware KVM the
 * emulation-failure exits they answer never happen. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <smolvm/plugin.h>

#include "quirks.h"
#include "vcpu_state.h"
#include "vm_state.h"

#define KVM_TSS_ADDR 0xfffbd000
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000
#define IOAPIC_PINS 24
#define MAX_CPUID 256

struct kvm_vm {
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	int kvm_fd, vm_fd;
	int run_size;
	uint32_t quirks;
	struct kvm_cpuid2 *cpuid; /* supported CPUID, patched per vCPU */
};

struct kvm_vcpu {
	struct kvm_vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	atomic_int has_thread;
	unsigned long emulated; /* instructions finished by quirks.c */
};

static int kick_signal(void)
{
	return SIGRTMIN;
}

static void kick_handler(int sig)
{
	(void)sig; /* only there to interrupt KVM_RUN */
}

static int fail(struct kvm_vm *vm, int code, const char *what)
{
	vm->api->set_error(vm->ctx, "%s: %s", what, strerror(code));
	return -code;
}

/* kvm_pvm is the software nested KVM of PLATFORM.md. */
static int host_is_soft_emulated(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* ISA IRQ 0 (PIT) on IOAPIC pin 2 as on PCs (and in QEMU), so one guest
 * sees the same wiring under both; GSI n on pin n otherwise. */
static int set_gsi_routing(struct kvm_vm *vm)
{
	size_t n = 0;
	struct kvm_irq_routing *r =
		calloc(1, sizeof(*r) + 48 * sizeof(struct kvm_irq_routing_entry));
	int rc = 0;

	if (!r)
		return -ENOMEM;
	for (uint32_t gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		if (gsi < 16 && gsi != 2) {
			struct kvm_irq_routing_entry *e = &r->entries[n++];
			e->gsi = gsi;
			e->type = KVM_IRQ_ROUTING_IRQCHIP;
			e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			e->u.irqchip.pin = gsi % 8;
		}
		if (gsi == 2)
			continue;
		struct kvm_irq_routing_entry *e = &r->entries[n++];
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi == 0 ? 2 : gsi;
	}
	r->nr = (uint32_t)n;
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		rc = fail(vm, errno, "KVM_SET_GSI_ROUTING");
	free(r);
	return rc;
}

static void kvm_vm_destroy(void *opaque)
{
	struct kvm_vm *vm = opaque;

	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	free(vm);
}

static int kvm_vm_create(smolvm_ctx *ctx, const struct smolvm_host_api *api,
			 const struct smolvm_vm_config *cfg, void **out)
{
	struct kvm_vm *vm = calloc(1, sizeof(*vm));
	struct kvm_pit_config pit = { 0 };
	struct sigaction sa = { 0 };
	int rc;

	if (!vm)
		return -ENOMEM;
	vm->ctx = ctx;
	vm->api = api;
	vm->vm_fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		rc = -errno;
		api->set_error(ctx, "cannot open /dev/kvm: %s%s", strerror(errno),
			       errno == ENOENT ? " (is KVM enabled on this host?)"
			       : errno == EACCES ? " (is this user in the kvm group?)" : "");
		goto fail;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		api->set_error(ctx, "/dev/kvm speaks an unknown API version");
		rc = -ENOTSUP;
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = fail(vm, errno, "KVM_CREATE_VM");
		goto fail;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		rc = fail(vm, errno, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
		rc = fail(vm, errno, "KVM_SET_TSS_ADDR");
		goto fail;
	}
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		rc = fail(vm, errno, "KVM_SET_IDENTITY_MAP_ADDR");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		rc = fail(vm, errno, "KVM_CREATE_IRQCHIP");
		goto fail;
	}
	rc = set_gsi_routing(vm);
	if (rc)
		goto fail;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = fail(vm, errno, "KVM_CREATE_PIT2");
		goto fail;
	}

	vm->cpuid = calloc(1, sizeof(*vm->cpuid) + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	if (!vm->cpuid) {
		rc = -ENOMEM;
		goto fail;
	}
	vm->cpuid->nent = MAX_CPUID;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) < 0) {
		rc = fail(vm, errno, "KVM_GET_SUPPORTED_CPUID");
		goto fail;
	}

	switch (cfg->quirk_mode) {
	case SMOLVM_QUIRKS_ON:
		vm->quirks = SMOLVM_QUIRK_SOFT_EMULATION;
		break;
	case SMOLVM_QUIRKS_OFF:
		vm->quirks = 0;
		break;
	default:
		vm->quirks = host_is_soft_emulated() ? SMOLVM_QUIRK_SOFT_EMULATION : 0;
	}

	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(kick_signal(), &sa, NULL);
	*out = vm;
	return 0;
fail:
	kvm_vm_destroy(vm);
	return rc;
}

static uint32_t kvm_vm_quirks(void *opaque)
{
	return ((struct kvm_vm *)opaque)->quirks;
}

static int kvm_mem_map(void *opaque, const struct smolvm_mem_region *r)
{
	struct kvm_vm *vm = opaque;
	struct kvm_userspace_memory_region reg = {
		.slot = r->slot,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return fail(vm, errno, "KVM_SET_USER_MEMORY_REGION");
	return 0;
}

static int kvm_irq_line(void *opaque, uint32_t gsi, int level)
{
	struct kvm_vm *vm = opaque;
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

static int set_cpuid(struct kvm_vcpu *v)
{
	struct kvm_vm *vm = v->vm;
	size_t size = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(size);
	int rc = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, vm->cpuid, size);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* Initial APIC ID = vCPU index. */
			e->ebx = (e->ebx & 0x00ffffff) | (v->index << 24);
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->index; /* x2APIC ID */
			break;
		case KVM_CPUID_FEATURES:
			/* Hypercalls never return on a soft-emulated host:
			 * hide the PV features that make them. */
			if (vm->quirks & SMOLVM_QUIRK_SOFT_EMULATION)
				e->eax &= ~((1u << KVM_FEATURE_PV_UNHALT) |
					    (1u << KVM_FEATURE_PV_SEND_IPI) |
					    (1u << KVM_FEATURE_PV_SCHED_YIELD));
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		rc = fail(vm, errno, "KVM_SET_CPUID2");
	free(c);
	return rc;
}

static void kvm_vcpu_destroy(void *opaque)
{
	struct kvm_vcpu *v = opaque;

	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
}

static int kvm_vcpu_create(void *opaque, uint32_t index, void **out)
{
	struct kvm_vm *vm = opaque;
	struct kvm_vcpu *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		rc = fail(vm, errno, "KVM_CREATE_VCPU");
		goto fail;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		rc = fail(vm, errno, "mmap kvm_run");
		goto fail;
	}
	rc = set_cpuid(v);
	if (rc)
		goto fail;
	*out = v;
	return 0;
fail:
	kvm_vcpu_destroy(v);
	return rc;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, int code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = code ? 0xb : 0x3; /* execute/read accessed, read/write accessed */
	s->present = 1;
	s->s = 1;
	s->l = (uint8_t)code;
	s->db = (uint8_t)!code;
	s->g = 1;
}

static int kvm_vcpu_boot(void *opaque, const struct smolvm_x86_boot *b)
{
	struct kvm_vcpu *v = opaque;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };

	if (b->mode != SMOLVM_BOOT_LONG64) {
		v->vm->api->set_error(v->vm->ctx, "boot mode %u not supported", b->mode);
		return -ENOTSUP;
	}
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return fail(v->vm, errno, "KVM_GET_SREGS");
	set_seg(&sregs.cs, b->code_sel, 1);
	set_seg(&sregs.ds, b->data_sel, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = b->gdt_base;
	sregs.gdt.limit = b->gdt_limit;
	sregs.cr3 = b->cr3;
	sregs.cr4 = 1u << 5;                           /* PAE */
	sregs.cr0 = (1u << 0) | (1u << 4) | (1u << 31); /* PE, ET, PG */
	sregs.efer = (1u << 8) | (1u << 10);           /* LME, LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return fail(v->vm, errno, "KVM_SET_SREGS");

	regs.rflags = 2;
	regs.rip = b->rip;
	regs.rsi = b->rsi;
	regs.rsp = b->rsp;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return fail(v->vm, errno, "KVM_SET_REGS");
	return 0;
}

/* Reads up to 15 bytes at the guest's RIP through its page tables. */
static size_t fetch_insn(struct kvm_vcpu *v, const struct kvm_regs *regs,
			 const struct kvm_sregs *sregs, uint8_t *buf)
{
	struct kvm_translation tr = { .linear_address = sregs->cs.base + regs->rip };
	size_t n = 15;
	const uint8_t *p;

	if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return 0;
	/* Stay within the page: the next one may map elsewhere. */
	if ((tr.physical_address & 0xfff) + n > 0x1000)
		n = 0x1000 - (tr.physical_address & 0xfff);
	p = v->vm->api->guest_ptr(v->vm->ctx, tr.physical_address, n);
	if (!p)
		return 0;
	memcpy(buf, p, n);
	return n;
}

static int report(struct kvm_vcpu *v, const char *what)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t insn[15];
	char bytes[15 * 3 + 1] = "";
	size_t n = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		v->vm->api->set_error(v->vm->ctx, "vcpu %u: %s", v->index, what);
		return -EIO;
	}
	n = fetch_insn(v, &regs, &sregs, insn);
	for (size_t i = 0; i < n; i++)
		snprintf(bytes + i * 3, 4, "%02x ", insn[i]);
	v->vm->api->set_error(
		v->vm->ctx,
		"vcpu %u: %s\n  rip=%016llx rsp=%016llx rflags=%08llx cs=%04x (cpl %u)\n"
		"  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"  rsi=%016llx rdi=%016llx rbp=%016llx\n"
		"  cr0=%08llx cr3=%016llx cr4=%08llx efer=%llx\n  code: %s",
		v->index, what, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		(unsigned long long)regs.rflags, sregs.cs.selector, sregs.cs.selector & 3,
		(unsigned long long)regs.rax, (unsigned long long)regs.rbx,
		(unsigned long long)regs.rcx, (unsigned long long)regs.rdx,
		(unsigned long long)regs.rsi, (unsigned long long)regs.rdi,
		(unsigned long long)regs.rbp, (unsigned long long)sregs.cr0,
		(unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4,
		(unsigned long long)sregs.efer, n ? bytes : "(unreadable)");
	return -EIO;
}

/* An emulation failure on a soft-emulated host: finish the instruction
 * ourselves when quirks.c knows it. Returns 0 to keep running. */
static int emulation_failure(struct kvm_vcpu *v)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct quirk_regs q;
	uint8_t insn[15];
	unsigned len;
	size_t n;
	enum quirk_action a;

	if (!(v->vm->quirks & SMOLVM_QUIRK_SOFT_EMULATION))
		return report(v, "KVM could not emulate an instruction");
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return report(v, "emulation failure, registers unreadable");
	n = fetch_insn(v, &regs, &sregs, insn);
	a = quirk_decode(insn, n, &len);
	if (a == QUIRK_UNHANDLED)
		return report(v, "KVM could not emulate an instruction and smolvm has no workaround for it");

	q.rip = regs.rip;
	q.rflags = regs.rflags;
	quirk_apply(a, len, &q);
	regs.rip = q.rip;
	regs.rflags = q.rflags;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return report(v, "KVM_SET_REGS after emulation failure");
	if (q.inject_bp) {
		struct kvm_vcpu_events ev;
		if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return report(v, "KVM_GET_VCPU_EVENTS");
		ev.exception.injected = 1;
		ev.exception.nr = 3;
		ev.exception.has_error_code = 0;
		ev.flags = 0;
		if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return report(v, "KVM_SET_VCPU_EVENTS (#BP)");
	}
	v->emulated++;
	return 0;
}

static int kvm_vcpu_run(void *opaque, struct smolvm_exit *exit)
{
	struct kvm_vcpu *v = opaque;
	struct kvm_run *run = v->run;

	if (!atomic_load(&v->has_thread)) {
		v->thread = pthread_self();
		atomic_store(&v->has_thread, 1);
	}
	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				run->immediate_exit = 0;
				/* Kicks are rare (a stop): say where the vCPU was. */
				report(v, "interrupted");
				exit->reason = SMOLVM_EXIT_INTR;
				return 0;
			}
			return report(v, strerror(errno));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			exit->reason = SMOLVM_EXIT_PIO;
			exit->io.addr = run->io.port;
			exit->io.size = run->io.size;
			exit->io.count = run->io.count;
			exit->io.is_write = run->io.direction == KVM_EXIT_IO_OUT;
			exit->io.data = (uint8_t *)run + run->io.data_offset;
			return 0;
		case KVM_EXIT_MMIO:
			exit->reason = SMOLVM_EXIT_MMIO;
			exit->io.addr = run->mmio.phys_addr;
			exit->io.size = run->mmio.len;
			exit->io.count = 1;
			exit->io.is_write = run->mmio.is_write;
			exit->io.data = run->mmio.data;
			return 0;
		case KVM_EXIT_INTR:
			exit->reason = SMOLVM_EXIT_INTR;
			return 0;
		case KVM_EXIT_HLT:
			exit->reason = SMOLVM_EXIT_HLT;
			return 0;
		case KVM_EXIT_SHUTDOWN:
			/* Leave the registers in the error for the core to show. */
			report(v, "triple fault");
			exit->reason = SMOLVM_EXIT_SHUTDOWN;
			return 0;
		case KVM_EXIT_SYSTEM_EVENT:
			exit->reason = run->system_event.type == KVM_SYSTEM_EVENT_RESET
					       ? SMOLVM_EXIT_RESET : SMOLVM_EXIT_POWEROFF;
			return 0;
		case KVM_EXIT_INTERNAL_ERROR:
			if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
				int rc = emulation_failure(v);
				if (rc)
					return rc;
				continue;
			}
			return report(v, "KVM internal error");
		case KVM_EXIT_FAIL_ENTRY:
			return report(v, "KVM could not enter the guest");
		default: {
			char what[64];
			snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
			return report(v, what);
		}
		}
	}
}

static void kvm_vcpu_kick(void *opaque)
{
	struct kvm_vcpu *v = opaque;

	/* immediate_exit covers a vCPU about to enter KVM_RUN; the signal
	 * one already inside it. */
	v->run->immediate_exit = 1;
	if (atomic_load(&v->has_thread))
		pthread_kill(v->thread, kick_signal());
}

static int kvm_ioeventfd(void *opaque, uint64_t gpa, uint32_t len, uint64_t datamatch,
			 int fd, int assign)
{
	struct kvm_vm *vm = opaque;
	struct kvm_ioeventfd io = {
		.datamatch = datamatch,
		.addr = gpa,
		.len = len,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	return 0;
}

static int kvm_irqfd(void *opaque, uint32_t gsi, int fd, int assign)
{
	struct kvm_vm *vm = opaque;
	struct kvm_irqfd irq = {
		.fd = (uint32_t)fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	if (ioctl(vm->vm_fd, KVM_IRQFD, &irq) < 0)
		return -errno;
	return 0;
}

/* ---- snapshots: vm_state.c and vcpu_state.c, given these handles ------ */

static struct kvm_state_env state_env(struct kvm_vm *vm, struct kvm_vcpu *v)
{
	return (struct kvm_state_env){
		.ctx = vm->ctx,
		.api = vm->api,
		.kvm_fd = vm->kvm_fd,
		.vm_fd = vm->vm_fd,
		.vcpu_fd = v ? v->fd : -1,
		.vcpu_index = v ? v->index : 0,
		.supported = vm->cpuid,
	};
}

static int kvm_vm_save(void *opaque, struct smolvm_state_writer *w)
{
	struct kvm_state_env e = state_env(opaque, NULL);

	return kvm_state_vm_save(&e, w);
}

static int kvm_vm_restore(void *opaque, struct smolvm_state_reader *r)
{
	struct kvm_state_env e = state_env(opaque, NULL);

	return kvm_state_vm_restore(&e, r);
}

static int kvm_vcpu_save(void *opaque, struct smolvm_state_writer *w)
{
	struct kvm_vcpu *v = opaque;
	struct kvm_state_env e = state_env(v->vm, v);

	return kvm_state_vcpu_save(&e, w);
}

static int kvm_vcpu_restore(void *opaque, struct smolvm_state_reader *r)
{
	struct kvm_vcpu *v = opaque;
	struct kvm_state_env e = state_env(v->vm, v);

	return kvm_state_vcpu_restore(&e, r);
}

static const struct smolvm_backend_ops kvm_ops = {
	.struct_size = sizeof(struct smolvm_backend_ops),
	.vm_create = kvm_vm_create,
	.vm_destroy = kvm_vm_destroy,
	.vm_quirks = kvm_vm_quirks,
	.mem_map = kvm_mem_map,
	.irq_line = kvm_irq_line,
	.vcpu_create = kvm_vcpu_create,
	.vcpu_destroy = kvm_vcpu_destroy,
	.vcpu_boot = kvm_vcpu_boot,
	.vcpu_run = kvm_vcpu_run,
	.vcpu_kick = kvm_vcpu_kick,
	.vm_save = kvm_vm_save,
	.vm_restore = kvm_vm_restore,
	.vcpu_save = kvm_vcpu_save,
	.vcpu_restore = kvm_vcpu_restore,
	.ioeventfd = kvm_ioeventfd,
	.irqfd = kvm_irqfd,
};

SMOLVM_BACKEND_PLUGIN("kvm", "1.0.0", "Linux KVM (x86-64)", kvm_ops);
