/* The host API: what plugins may ask of the core, bound to their ctx. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/host_api.h"
#include "machine/state.h"
#include "machine/vm.h"

/* What this thread's current call into a plugin left. set_error() is
 * called on whichever thread runs the plugin: keeping it per thread lets
 * two vCPUs fail at once without mixing their messages.
 *  - plugin: the plugin's own set_error() message (the last one), and
 *    `who`, the instance it named;
 *  - core: the message of the last host entry the plugin called that
 *    failed, and the -errno it returned (an entry that then succeeds
 *    clears it: the plugin handled that failure). */
static _Thread_local struct {
	char who[64];
	char plugin[1024 - 80];
	char core[512];
	int core_rc;
} last;

const char *host_last_error(void)
{
	static _Thread_local char shown[sizeof(last.who) + sizeof(last.plugin) + 2];

	if (!last.plugin[0])
		return "unknown error";
	snprintf(shown, sizeof(shown), "%s: %s", last.who, last.plugin);
	return shown;
}

void host_clear_error(void)
{
	last.who[0] = 0;
	last.plugin[0] = 0;
	last.core[0] = 0;
	last.core_rc = 0;
}

/* The reason a call that returned rc < 0 failed: the plugin's message,
 * followed by that of the host entry that failed with the same code when
 * there is one (the core's message is never silently replaced); else the
 * host entry's; else strerror. */
static const char *reason(int rc, char *buf, size_t len)
{
	int core = last.core[0] && last.core_rc == rc;

	if (last.plugin[0] && core)
		snprintf(buf, len, "%s: %s", last.plugin, last.core);
	else if (last.plugin[0])
		snprintf(buf, len, "%s", last.plugin);
	else if (core)
		snprintf(buf, len, "%s", last.core);
	else
		snprintf(buf, len, "%s", strerror(-rc));
	return buf;
}

static int ctx_verbose(const smolvm_ctx *ctx)
{
	return ctx && ctx->vm ? ctx->vm->verbose : 0;
}

/* A set_error() message that is no failure's reason. */
static void dropped(int verbose, const char *name, const char *what)
{
	if (verbose >= 2)
		fprintf(stderr, "smolvm: %s: debug: %s; its set_error message is dropped: %s\r\n",
			name, what, last.plugin);
	last.plugin[0] = 0;
}

int plugin_result(int rc, const smolvm_ctx *ctx, const char *doing, struct err *e)
{
	char why[sizeof(e->msg)];

	if (rc >= 0) {
		/* (a device's op only: a backend's vcpu_run describes a
		 * triple fault with set_error() and 0) */
		if (doing && last.plugin[0]) {
			char what[96];
			snprintf(what, sizeof(what), "%s succeeded", doing);
			dropped(ctx_verbose(ctx), ctx->name, what);
		}
		return rc;
	}
	reason(rc, why, sizeof(why));
	if (doing)
		return err_set(e, rc, "cannot %s %s: %s", doing, ctx->name, why);
	return err_set(e, rc, "%s: %s", ctx->name, why);
}

int plugin_fail(const smolvm_ctx *ctx, const char *doing, int rc, struct err *e,
		const char *fmt, ...)
{
	char why[sizeof(e->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (doing)
		return err_set(e, rc, "cannot %s %s: %s", doing, ctx->name, why);
	return err_set(e, rc, "%s: %s", ctx->name, why);
}

void plugin_hook_done(int verbose, const char *hook)
{
	if (last.plugin[0]) {
		char what[96];
		snprintf(what, sizeof(what), "%s cannot fail", hook);
		dropped(verbose, last.who, what);
	}
}

static void h_log(smolvm_ctx *ctx, enum smolvm_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char msg[1024];
	va_list ap;

	if ((int)level > SMOLVM_LOG_WARN + ctx->vm->verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "smolvm: %s: %s: %s\r\n", ctx->name,
		names[level <= SMOLVM_LOG_DEBUG ? level : SMOLVM_LOG_DEBUG], msg);
}

static void h_set_error(smolvm_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last.plugin, sizeof(last.plugin), fmt, ap);
	va_end(ap);
	snprintf(last.who, sizeof(last.who), "%s", ctx->name);
}

/* A host entry's own failure: why, for the message of the call it fails
 * (see reason()). Returns rc. */
static int entry_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int entry_fail(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last.core, sizeof(last.core), fmt, ap);
	va_end(ap);
	last.core_rc = rc;
	return rc;
}

/* A host entry that succeeded: an earlier entry's failure was handled. */
static int entry_ok(void)
{
	last.core[0] = 0;
	last.core_rc = 0;
	return 0;
}

static const char *h_config_get(smolvm_ctx *ctx, const char *key)
{
	return ctx->cfg ? dev_config_get(ctx->cfg, key) : NULL;
}

static void *h_guest_ptr(smolvm_ctx *ctx, uint64_t gpa, uint64_t len)
{
	return mem_ptr(&ctx->vm->mem, gpa, len);
}

/* Claims line gsi for ctx (0 when it has it already), or says who has it. */
static int claim(smolvm_ctx *ctx, uint32_t gsi)
{
	struct vm *vm = ctx->vm;
	const smolvm_ctx *owner;

	if (gsi >= sizeof(vm->irq_owner) / sizeof(vm->irq_owner[0]))
		return entry_fail(-EINVAL, "interrupt line %u: there are 24 (0-23)", gsi);
	owner = vm->irq_owner[gsi];
	if (owner && owner != ctx)
		return entry_fail(-EBUSY, "interrupt line %u is %s's already: give this device "
				  "another (its irq option)", gsi, owner->name);
	vm->irq_owner[gsi] = ctx;
	return entry_ok();
}

static int h_irq_claim(smolvm_ctx *ctx, uint32_t gsi)
{
	return claim(ctx, gsi);
}

static int h_irq_set(smolvm_ctx *ctx, uint32_t gsi, int level)
{
	struct vm *vm = ctx->vm;

	/* (claims are made in create, before any thread calls this) */
	if (gsi < sizeof(vm->irq_owner) / sizeof(vm->irq_owner[0]) && vm->irq_owner[gsi] &&
	    vm->irq_owner[gsi] != ctx)
		return -EBUSY;
	return vm->be->irq_line(vm->be_vm, gsi, level);
}

static int h_io_register(smolvm_ctx *ctx, enum smolvm_space space, uint64_t base,
			 uint64_t len, const struct smolvm_io_ops *ops, void *opaque)
{
	struct err e;
	struct bus *b = space == SMOLVM_SPACE_PIO ? &ctx->vm->pio
			: space == SMOLVM_SPACE_MMIO ? &ctx->vm->mmio : NULL;
	int rc;

	if (!b)
		return entry_fail(-EINVAL, "unknown address space %d", space);
	if (space == SMOLVM_SPACE_PIO && base + len > 0x10000)
		return entry_fail(-EINVAL, "port range 0x%llx+%llu beyond 0xffff",
				  (unsigned long long)base, (unsigned long long)len);
	rc = bus_add(b, base, len, ops, opaque, ctx->name, &e);
	return rc ? entry_fail(rc, "%s", e.msg) : entry_ok();
}

static int h_fd_watch(smolvm_ctx *ctx, int fd, uint32_t events, smolvm_fd_cb cb, void *opaque)
{
	return loop_watch(&ctx->vm->loop, fd, events, cb, opaque);
}

static int h_fd_unwatch(smolvm_ctx *ctx, int fd)
{
	return loop_unwatch(&ctx->vm->loop, fd);
}

static int h_console_write(smolvm_ctx *ctx, const void *buf, size_t len)
{
	console_write(&ctx->vm->console, buf, len);
	return 0;
}

static int h_console_attach(smolvm_ctx *ctx, smolvm_console_rx rx, void *opaque)
{
	int rc = console_attach(&ctx->vm->console, rx, opaque);

	return rc ? entry_fail(rc, "the console is already attached to another device")
		  : entry_ok();
}

static void h_console_kick(smolvm_ctx *ctx)
{
	/* Delivery happens on the loop thread (vm.c's on_wake). */
	vm_wake(ctx->vm);
}

static void h_request_stop(smolvm_ctx *ctx, int reset)
{
	vm_request_stop(ctx->vm, reset ? VM_STOP_RESET : VM_STOP_POWEROFF, NULL);
}

static const uint8_t free_gsis[] = BOARD_FREE_GSIS;

static int h_resource_alloc(smolvm_ctx *ctx, uint64_t size, uint64_t *base, uint32_t *gsi)
{
	struct vm *vm = ctx->vm;
	uint64_t at = vm->next_mmio ? vm->next_mmio : BOARD_MMIO_BASE;

	size = (size + 0xfff) & ~0xfffull;
	if (!size || size > BOARD_MMIO_END - at)
		return entry_fail(-ENOSPC, "no room for a %llu-byte MMIO window",
				  (unsigned long long)size);
	/* (a line a device claimed by number is not handed out) */
	while (vm->next_gsi < sizeof(free_gsis) && vm->irq_owner[free_gsis[vm->next_gsi]])
		vm->next_gsi++;
	if (vm->next_gsi >= sizeof(free_gsis))
		return entry_fail(-ENOSPC, "no free interrupt line (at most %zu such devices)",
				  sizeof(free_gsis));
	*base = at;
	*gsi = free_gsis[vm->next_gsi++];
	vm->next_mmio = at + size;
	return claim(ctx, *gsi);
}

static int h_cmdline_append(smolvm_ctx *ctx, const char *text)
{
	struct vm *vm = ctx->vm;
	size_t old = vm->dev_cmdline ? strlen(vm->dev_cmdline) : 0;
	char *s = realloc(vm->dev_cmdline, old + strlen(text) + 2);

	if (!s)
		return entry_fail(-ENOMEM, "out of memory");
	if (old)
		s[old++] = ' ';
	strcpy(s + old, text);
	vm->dev_cmdline = s;
	return entry_ok();
}

static int h_ioeventfd(smolvm_ctx *ctx, uint64_t gpa, uint32_t len, uint64_t datamatch,
		       int fd, int assign)
{
	struct vm *vm = ctx->vm;

	if (!vm->be->ioeventfd)
		return -ENOTSUP;
	return vm->be->ioeventfd(vm->be_vm, gpa, len, datamatch, fd, assign);
}

static int h_irqfd(smolvm_ctx *ctx, uint32_t gsi, int fd, int assign)
{
	struct vm *vm = ctx->vm;

	if (!vm->be->irqfd)
		return -ENOTSUP;
	return vm->be->irqfd(vm->be_vm, gsi, fd, assign);
}

static const char *h_config_path(smolvm_ctx *ctx, const char *key)
{
	return ctx->cfg ? dev_config_path(ctx->cfg, key, ctx->vm->cfg->script) : NULL;
}

static int h_restoring(smolvm_ctx *ctx)
{
	return ctx->vm->opts.restore;
}

static const char *h_instance_name(smolvm_ctx *ctx)
{
	return ctx->name;
}

/* "image.DEV.NAME", for a name of 1-31 of [a-z0-9_-]. */
static int image_section(smolvm_ctx *ctx, const char *name, char *sec, size_t len)
{
	size_t n = name ? strlen(name) : 0;

	if (!n || n > 31 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		return entry_fail(-EINVAL, "image name \"%s\": 1-31 of a-z, 0-9, _ and -",
				  name ? name : "(null)");
	if ((size_t)snprintf(sec, len, "image.%s.%s", ctx->name, name) >= len)
		return entry_fail(-ENAMETOOLONG, "image %s of %s: the name is too long", name,
				  ctx->name);
	return 0;
}

static int h_save_image(smolvm_ctx *ctx, const char *name, int fd, uint64_t offset,
			uint64_t size)
{
	struct vm *vm = ctx->vm;
	char sec[64];
	struct err e;
	int rc;

	if (!vm->image_save)
		return entry_fail(-ENOTSUP, "save_image: only during save");
	if ((rc = image_section(ctx, name, sec, sizeof(sec))))
		return rc;
	rc = vm->image_save(vm->image_opaque, sec, fd, offset, size, &e);
	return rc ? entry_fail(rc, "%s", e.msg) : entry_ok();
}

static int h_open_image(smolvm_ctx *ctx, const char *name, int *fd, uint64_t *size)
{
	struct vm *vm = ctx->vm;
	char sec[64];
	struct err e = { "" };
	int rc;

	*fd = -1;
	*size = 0;
	if (!vm->image_open)
		return entry_fail(-ENOTSUP, "open_image: only during restore");
	if ((rc = image_section(ctx, name, sec, sizeof(sec))))
		return rc;
	rc = vm->image_open(vm->image_opaque, sec, fd, size, &e);
	if (rc == -ENOENT && !e.msg[0])
		return entry_fail(rc, "the bundle has no image %s of %s", name, ctx->name);
	return rc ? entry_fail(rc, "%s", e.msg) : entry_ok();
}

const struct smolvm_host_api host_api = {
	.struct_size = sizeof(struct smolvm_host_api),
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR,
	.log = h_log,
	.set_error = h_set_error,
	.config_get = h_config_get,
	.guest_ptr = h_guest_ptr,
	.irq_set = h_irq_set,
	.io_register = h_io_register,
	.fd_watch = h_fd_watch,
	.fd_unwatch = h_fd_unwatch,
	.console_write = h_console_write,
	.console_attach = h_console_attach,
	.console_kick = h_console_kick,
	.state_put = state_put,
	.state_get = state_get,
	.state_begin = state_begin,
	.state_end = state_end,
	.state_enter = state_enter,
	.state_leave = state_leave,
	.request_stop = h_request_stop,
	.resource_alloc = h_resource_alloc,
	.cmdline_append = h_cmdline_append,
	.ioeventfd = h_ioeventfd,
	.irqfd = h_irqfd,
	.config_path = h_config_path,
	.restoring = h_restoring,
	.irq_claim = h_irq_claim,
	.instance_name = h_instance_name,
	.save_image = h_save_image,
	.open_image = h_open_image,
};
