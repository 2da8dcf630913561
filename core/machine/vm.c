#include "machine/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/board.h"
#include "arch/x86/boot.h"
#include "lib/src_lines.h"
#include "machine/host_api.h"
#include "machine/options.h"

void vm_request_stop(struct vm *vm, enum vm_stop why, const char *msg)
{
	pthread_mutex_lock(&vm->stop_lock);
	if (atomic_load(&vm->stop) == VM_RUNNING) {
		if (msg)
			snprintf(vm->stop_msg, sizeof(vm->stop_msg), "%s", msg);
		atomic_store(&vm->stop, why);
		pthread_mutex_lock(&vm->park_lock);
		pthread_cond_broadcast(&vm->park_cond);
		pthread_mutex_unlock(&vm->park_lock);
		for (uint32_t i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].be)
				vm->be->vcpu_kick(vm->vcpus[i].be);
		loop_stop(&vm->loop);
	}
	pthread_mutex_unlock(&vm->stop_lock);
}

static void unhandled(struct vm *vm, const char *space, const struct smolvm_exit *x)
{
	if (vm->verbose >= 2)
		fprintf(stderr, "smolvm: unhandled %s %s 0x%llx (%u bytes)\r\n", space,
			x->io.is_write ? "write" : "read", (unsigned long long)x->io.addr,
			x->io.size);
}

static void handle_io(struct vm *vm, const struct bus *b, const char *space,
		      struct smolvm_exit *x)
{
	uint8_t *data = x->io.data;

	for (uint32_t i = 0; i < x->io.count; i++, data += x->io.size) {
		host_clear_error();
		if (bus_access(b, x->io.addr, data, x->io.size, x->io.is_write) < 0) {
			/* Nothing there: reads float high, writes vanish. */
			if (!x->io.is_write)
				memset(data, 0xff, x->io.size);
			unhandled(vm, space, x);
		}
		plugin_hook_done(vm->verbose, "an I/O handler");
	}
}


/* Waits here while a snapshot is taken. */
static void park(struct vm *vm)
{
	pthread_mutex_lock(&vm->park_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->park_cond);
	while (atomic_load(&vm->pause_req) && atomic_load(&vm->stop) == VM_RUNNING)
		pthread_cond_wait(&vm->park_cond, &vm->park_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->park_lock);
}

void vm_pause_soon(struct vm *vm)
{
	atomic_store(&vm->pause_req, 1);
	for (uint32_t i = 0; i < vm->ncpus; i++)
		vm->be->vcpu_kick(vm->vcpus[i].be);
}

void vm_wake(struct vm *vm)
{
	loop_wake(&vm->loop);
}

size_t vm_console_input(struct vm *vm, const void *buf, size_t len)
{
	struct console *c = &vm->console;
	size_t room = sizeof(c->pending) - c->pending_len;
	size_t took = len < room ? len : room;

	memcpy(c->pending + c->pending_len, buf, took);
	c->pending_len += took;
	console_deliver(c);
	return took;
}

int vm_pause(struct vm *vm, struct err *e)
{
	vm_pause_soon(vm);
	pthread_mutex_lock(&vm->park_lock);
	while (vm->parked < vm->running && atomic_load(&vm->stop) == VM_RUNNING)
		pthread_cond_wait(&vm->park_cond, &vm->park_lock);
	pthread_mutex_unlock(&vm->park_lock);
	if (atomic_load(&vm->stop) != VM_RUNNING) {
		vm_resume(vm);
		return err_set(e, -ECANCELED, "the machine stopped while pausing");
	}
	/* Devices finish what is in flight and stop touching memory. */
	for (size_t i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].plugin->ops.dev.pause)
			PLUGIN_HOOK(vm->verbose, "pause",
				    vm->devs[i].plugin->ops.dev.pause(vm->devs[i].dev));
	return 0;
}

void vm_resume(struct vm *vm)
{
	for (size_t i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].plugin->ops.dev.resume)
			PLUGIN_HOOK(vm->verbose, "resume",
				    vm->devs[i].plugin->ops.dev.resume(vm->devs[i].dev));
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&vm->pause_req, 0);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	struct err e;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", c->index);
	pthread_setname_np(pthread_self(), name);
	if (vm->opts.events.vcpu_start && vm->opts.events.vcpu_start(vm->opts.events.opaque, &e)) {
		vm_request_stop(vm, VM_STOP_ERROR, e.msg);
	}
	while (atomic_load(&vm->stop) == VM_RUNNING) {
		/* Park only right after an interrupted run: KVM completes a
		 * pending port or MMIO read on the next run, so any other exit
		 * would leave the vCPU mid-instruction. The kick guarantees
		 * that next run returns at once. */
		if (atomic_load(&vm->pause_req) && c->exit.reason == SMOLVM_EXIT_INTR) {
			park(vm);
			c->exit.reason = SMOLVM_EXIT_NONE;
			continue;
		}
		if (PLUGIN_CALL(&e, &vm->be_ctx, NULL, vm->be->vcpu_run(c->be, &c->exit)) < 0) {
			vm_request_stop(vm, VM_STOP_ERROR, e.msg);
			break;
		}
		switch (c->exit.reason) {
		case SMOLVM_EXIT_PIO:
			handle_io(vm, &vm->pio, "port", &c->exit);
			break;
		case SMOLVM_EXIT_MMIO:
			handle_io(vm, &vm->mmio, "MMIO", &c->exit);
			break;
		case SMOLVM_EXIT_INTR:
			if (vm->verbose >= 2 && atomic_load(&vm->stop) != VM_RUNNING)
				fprintf(stderr, "smolvm: %s\r\n", host_last_error());
			break;
		case SMOLVM_EXIT_RESET:
			vm_request_stop(vm, VM_STOP_RESET, NULL);
			break;
		case SMOLVM_EXIT_POWEROFF:
			vm_request_stop(vm, VM_STOP_POWEROFF, NULL);
			break;
		case SMOLVM_EXIT_SHUTDOWN:
			vm_request_stop(vm, VM_STOP_TRIPLE_FAULT, host_last_error());
			break;
		case SMOLVM_EXIT_HLT:
		default: {
			char msg[96];
			snprintf(msg, sizeof(msg), "vcpu %u: unexpected exit %u from the backend",
				 c->index, c->exit.reason);
			vm_request_stop(vm, VM_STOP_ERROR, msg);
		}
		}
	}
	pthread_mutex_lock(&vm->park_lock);
	vm->running--;
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	return NULL;
}

int vm_check_devices(const struct machine_config *cfg, const struct plugin_set *plugins,
		     struct err *e)
{
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct dev_config *dc = &cfg->devices[i];
		const struct plugin *p = plugins_find(plugins, dc->type, SMOLVM_PLUGIN_DEVICE);
		const char *script = cfg->script ? cfg->script : "the machine";
		char where[512];

		if (!p)
			return err_set(e, -ENOENT,
				       "%s: no device plugin \"%s\" (see `smolvm plugins` for what is installed)",
				       dc->name, dc->type);
		/* The script's numbering: a root filesystem's disk comes first
		 * and is not in the script's list. Its image is bound once it
		 * is built: before that (an early check) it is not checked. */
		if (cfg->rootfs && i == 0 && !dev_config_get(dc, "path"))
			continue;
		if (cfg->rootfs && i == 0)
			snprintf(where, sizeof(where), "the root filesystem's disk");
		else
			snprintf(where, sizeof(where), "devices[%zu]", i + !cfg->rootfs);
		const char *key;
		int rc = options_check(dc, p->ops.dev.options, where, &key, e);
		if (rc) {
			/* the line of the key; a list's "k[2]" is written "k =" */
			char name[80];
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(key ? key : "", "["),
				 key ? key : "");
			int line = name[0] ? src_key_line(cfg->script_src, cfg->script_len, name,
							  dc->line, 1) : 0;
			if (!line)
				line = dc->line;
			return line ? err_wrap(e, rc, "%s:%d", script, line)
				    : err_wrap(e, rc, "%s", script);
		}
	}
	return 0;
}

static int create_devices(struct vm *vm, const struct plugin_set *plugins, struct err *e)
{
	const struct machine_config *cfg = vm->cfg;

	vm->devs = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof(*vm->devs));
	if (!vm->devs)
		return err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *dc = &cfg->devices[i];
		struct device *d = &vm->devs[i];
		const struct plugin *p = plugins_find(plugins, dc->type, SMOLVM_PLUGIN_DEVICE);
		int rc;

		d->plugin = p; /* (vm_check_devices found it) */
		d->ctx.vm = vm;
		d->ctx.cfg = dc;
		snprintf(d->ctx.name, sizeof(d->ctx.name), "%s", dc->name);
		rc = PLUGIN_CALL(e, &d->ctx, "create",
				 p->ops.dev.create(&d->ctx, &host_api, &d->dev));
		if (rc < 0)
			return rc;
		vm->ndevs++;
	}
	return 0;
}

/* The script's command line, then what the host adds for the guest's
 * benefit, then --append (last, so the user can override). */
static int build_cmdline(struct vm *vm, struct err *e)
{
	const struct machine_config *cfg = vm->cfg;
	/* Input from a pipe or file, not a person: tell init (smolvm.tty=0)
	 * to run its shell as a script reader, where ^D is a plain EOF. */
	/* (Not for pack: a bundle may later run on a terminal.) */
	const char *parts[5] = { cfg->cmdline, vm->dev_cmdline, NULL,
				 vm->console.is_tty || vm->opts.keep_input_open ? NULL : "smolvm.tty=0",
				 cfg->append };
	size_t len = 1;
	char *s;

	if (vm->quirks & SMOLVM_QUIRK_SOFT_EMULATION)
		parts[2] = BOARD_SOFT_EMULATION_CMDLINE;
	for (int i = 0; i < 5; i++)
		if (parts[i])
			len += strlen(parts[i]) + 1;
	s = calloc(1, len);
	if (!s)
		return err_set(e, -ENOMEM, "out of memory");
	for (int i = 0; i < 5; i++) {
		if (!parts[i] || !*parts[i])
			continue;
		if (*s)
			strcat(s, " ");
		strcat(s, parts[i]);
	}
	vm->cmdline = s;
	return 0;
}

static void run_call(struct vm *vm)
{
	struct vm_call *c;
	int rc;

	pthread_mutex_lock(&vm->call_lock);
	c = vm->call;
	pthread_mutex_unlock(&vm->call_lock);
	if (!c || c->done)
		return;
	rc = c->fn(vm, c->arg, c->e);
	pthread_mutex_lock(&vm->call_lock);
	c->rc = rc;
	c->done = 1;
	vm->call = NULL;
	pthread_cond_broadcast(&vm->call_cond);
	pthread_mutex_unlock(&vm->call_lock);
}

int vm_call(struct vm *vm, vm_call_fn fn, void *arg, struct err *e)
{
	struct vm_call c = { fn, arg, e, 0, 0 };
	int rc;

	pthread_mutex_lock(&vm->call_lock);
	while (vm->call && !vm->loop_done)
		pthread_cond_wait(&vm->call_cond, &vm->call_lock);
	if (vm->loop_done) {
		pthread_mutex_unlock(&vm->call_lock);
		return err_set(e, -ECANCELED, "the machine has stopped");
	}
	vm->call = &c;
	loop_wake(&vm->loop);
	while (!c.done && !vm->loop_done)
		pthread_cond_wait(&vm->call_cond, &vm->call_lock);
	if (c.done) {
		rc = c.rc;
	} else {
		vm->call = NULL;
		rc = err_set(e, -ECANCELED, "the machine has stopped");
	}
	pthread_cond_broadcast(&vm->call_cond);
	pthread_mutex_unlock(&vm->call_lock);
	return rc;
}

static void on_wake(void *opaque)
{
	struct vm *vm = opaque;
	const struct vm_events *ev = &vm->opts.events;

	console_deliver(&vm->console);
	run_call(vm);
	if (ev->wake)
		ev->wake(ev->opaque);
}

static void on_reset(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_RESET, NULL);
}

static void on_quit(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_QUIT, NULL);
}

static void on_signal(void *opaque, int fd, uint32_t revents)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;

	(void)revents;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGUSR1) {
		if (vm->opts.events.snapshot_request)
			vm->opts.events.snapshot_request(vm->opts.events.opaque);
		return;
	}
	vm->stop_signal = (int)si.ssi_signo;
	vm_request_stop(vm, VM_STOP_SIGNAL, NULL);
}

static int setup_signals(struct vm *vm, struct err *e)
{
	sigset_t set;

	/* Blocked before vCPU threads exist, so they inherit the mask and
	 * only the loop sees these signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1); /* snapshot now (see smolvm help) */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	vm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0)
		return err_set(e, -errno, "signalfd: %s", strerror(errno));
	if (loop_watch(&vm->loop, vm->signal_fd, POLLIN, on_signal, vm))
		return err_set(e, -ENOMEM, "out of memory");
	return 0;
}

int vm_create(struct vm *vm, struct machine_config *cfg,
	      const struct plugin_set *plugins, const struct vm_opts *opts, struct err *e)
{
	struct smolvm_vm_config vc = { 0 };
	struct smolvm_mem_region region = { 0 };
	struct smolvm_x86_boot boot;
	struct x86_kernel kernel;
	uint64_t initrd_addr = 0, initrd_size = 0;
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->opts = *opts;
	vm->verbose = opts->verbose;
	vm->signal_fd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->park_lock, NULL);
	pthread_cond_init(&vm->park_cond, NULL);
	pthread_mutex_init(&vm->call_lock, NULL);
	pthread_cond_init(&vm->call_cond, NULL);
	rc = loop_init(&vm->loop, e);
	if (rc)
		return rc;
	vm->loop.on_wake = on_wake;
	vm->loop.wake_opaque = vm;

	vm->backend = plugins_find(plugins, cfg->backend, SMOLVM_PLUGIN_BACKEND);
	if (!vm->backend)
		return err_set(e, -ENOENT,
			       "no backend plugin \"%s\" (see `smolvm plugins` for what is installed)",
			       cfg->backend);
	/* before anything is set up: a typo in the script costs nothing */
	rc = vm_check_devices(cfg, plugins, e);
	if (rc)
		return rc;
	vm->be = &vm->backend->ops.backend;
	vm->be_ctx.vm = vm;
	snprintf(vm->be_ctx.name, sizeof(vm->be_ctx.name), "%s", cfg->backend);

	rc = opts->mem_fd >= 0 ? mem_init_fd(&vm->mem, cfg->memory, opts->mem_fd, e)
			       : mem_init(&vm->mem, cfg->memory, e);
	if (rc)
		return rc;
	vc.struct_size = sizeof(vc);
	vc.ncpus = cfg->cpus;
	vc.mem_size = cfg->memory;
	vc.quirk_mode = cfg->quirk_mode;
	rc = PLUGIN_CALL(e, &vm->be_ctx, NULL,
			 vm->be->vm_create(&vm->be_ctx, &host_api, &vc, &vm->be_vm));
	if (rc < 0)
		return rc;
	vm->quirks = vm->be->vm_quirks ? vm->be->vm_quirks(vm->be_vm) : 0;

	region.struct_size = sizeof(region);
	region.gpa = 0;
	region.size = vm->mem.size;
	region.hva = vm->mem.base;
	rc = PLUGIN_CALL(e, &vm->be_ctx, NULL, vm->be->mem_map(vm->be_vm, &region));
	if (rc < 0)
		return rc;

	rc = opts->detached ? console_init(&vm->console, &vm->loop, -1,
					   opts->verbose ? STDERR_FILENO : -1, e)
			    : console_init(&vm->console, &vm->loop, STDIN_FILENO, STDOUT_FILENO, e);
	if (rc)
		return rc;
	vm->console.on_quit = on_quit;
	vm->console.quit_opaque = vm;
	vm->console.eof_ctrl_d = !opts->keep_input_open;
	vm->console.on_line = opts->events.console_line;
	vm->console.line_opaque = opts->events.opaque;
	vm->i8042.reset = on_reset;
	vm->i8042.opaque = vm;
	rc = setup_signals(vm, e);
	if (!rc)
		rc = bus_add(&vm->pio, I8042_DATA_PORT, 1, &i8042_ops, NULL, "i8042", e);
	if (!rc)
		rc = bus_add(&vm->pio, I8042_COMMAND_PORT, 1, &i8042_ops, &vm->i8042, "i8042", e);
	if (!rc)
		rc = create_devices(vm, plugins, e);
	if (!rc)
		rc = build_cmdline(vm, e);
	/* A restored machine's RAM already holds the running kernel. */
	if (!rc && !opts->restore)
		rc = x86_load_kernel(&vm->mem, cfg->kernel, &kernel, e);
	if (!rc && !opts->restore && cfg->initrd)
		rc = x86_load_initrd(&vm->mem, cfg->initrd, &kernel, &initrd_addr, &initrd_size, e);
	if (!rc && !opts->restore)
		rc = x86_setup(&vm->mem, &kernel, vm->cmdline, initrd_addr, initrd_size,
			       cfg->cpus, &boot, e);
	if (rc)
		return rc;

	vm->vcpus = calloc(cfg->cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return err_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < cfg->cpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		c->vm = vm;
		c->index = i;
		c->exit.struct_size = sizeof(c->exit);
		rc = PLUGIN_CALL(e, &vm->be_ctx, NULL, vm->be->vcpu_create(vm->be_vm, i, &c->be));
		if (rc < 0)
			return rc;
		vm->ncpus++;
	}
	if (opts->restore)
		return 0;
	/* Only the boot vCPU starts at the kernel; the others wait for the
	 * guest's INIT/SIPI in the in-kernel LAPIC. */
	rc = PLUGIN_CALL(e, &vm->be_ctx, NULL, vm->be->vcpu_boot(vm->vcpus[0].be, &boot));
	return rc < 0 ? rc : 0;
}

int vm_run(struct vm *vm, struct err *e)
{
	int rc = 0, status;

	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		pthread_mutex_lock(&vm->park_lock);
		vm->running++;
		pthread_mutex_unlock(&vm->park_lock);
		rc = pthread_create(&c->thread, NULL, vcpu_thread, c);
		if (rc) {
			pthread_mutex_lock(&vm->park_lock);
			vm->running--;
			pthread_mutex_unlock(&vm->park_lock);
			vm_request_stop(vm, VM_STOP_ERROR, "cannot start a vCPU thread");
			break;
		}
		c->started = 1;
	}
	if (!rc)
		rc = loop_run(&vm->loop);
	if (rc)
		vm_request_stop(vm, VM_STOP_ERROR, strerror(-rc));
	/* Nobody runs vm_call()s any more: wake their callers. */
	pthread_mutex_lock(&vm->call_lock);
	vm->loop_done = 1;
	pthread_cond_broadcast(&vm->call_cond);
	pthread_mutex_unlock(&vm->call_lock);
	for (uint32_t i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
	console_close(&vm->console);

	switch (atomic_load(&vm->stop)) {
	case VM_STOP_RESET:
	case VM_STOP_POWEROFF:
	case VM_STOP_QUIT:
	case VM_STOP_PACKED:
	case VM_STOP_DONE:
		status = 0;
		break;
	case VM_STOP_SIGNAL:
		status = 128 + vm->stop_signal;
		break;
	case VM_STOP_TRIPLE_FAULT:
		err_set(e, -EFAULT, "the guest stopped with a triple fault: %s", vm->stop_msg);
		status = 1;
		break;
	default:
		err_set(e, -EIO, "%s", vm->stop_msg);
		status = 1;
	}
	return status;
}

void vm_destroy(struct vm *vm)
{
	console_close(&vm->console);
	for (size_t i = vm->ndevs; i-- > 0;)
		if (vm->devs[i].plugin->ops.dev.destroy)
			PLUGIN_HOOK(vm->verbose, "destroy",
				    vm->devs[i].plugin->ops.dev.destroy(vm->devs[i].dev));
	free(vm->devs);
	/* The kernel tears a VM down (~16 ms on a software KVM) when its last
	 * fd closes. A process about to exit leaves that to a child holding
	 * copies of the fds: ours close fast below, and the child closes its
	 * own once the pipe tells it we are gone. Only this thread runs by
	 * now, so fork() is safe. */
	if (vm->opts.teardown_behind && vm->be_vm) {
		int gone[2];
		if (pipe2(gone, O_CLOEXEC) == 0) {
			pid_t pid = fork();
			if (pid == 0) {
				char c;
				close(gone[1]);
				while (read(gone[0], &c, 1) < 0 && errno == EINTR)
					;
				_exit(0); /* closes the last references */
			}
			close(gone[0]); /* gone[1] stays open until we exit */
		}
	}
	for (uint32_t i = 0; i < vm->ncpus; i++)
		if (vm->be->vcpu_destroy)
			vm->be->vcpu_destroy(vm->vcpus[i].be);
	free(vm->vcpus);
	if (vm->be_vm && vm->be->vm_destroy)
		vm->be->vm_destroy(vm->be_vm);
	if (vm->mem_release)
		vm->mem_release(vm->mem_origin);
	mem_free(&vm->mem);
	bus_free(&vm->pio);
	bus_free(&vm->mmio);
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	loop_free(&vm->loop);
	free(vm->cmdline);
	free(vm->dev_cmdline);
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_mutex_destroy(&vm->park_lock);
	pthread_cond_destroy(&vm->park_cond);
	pthread_mutex_destroy(&vm->call_lock);
	pthread_cond_destroy(&vm->call_cond);
}
