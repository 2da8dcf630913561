#include "session/control.h"

#include <stdio.h>
#include <string.h>

#include "snapshot/snapshot.h"

/* Snapshots are taken here, on the main thread, between loop rounds. */
static void take_requested_snapshots(struct session *ss)
{
	struct vm *vm = ss->vm;
	struct err e = { "" };
	int pack = atomic_exchange(&ss->ready_hit, 0) && ss->ready;
	int req = atomic_exchange(&ss->snapshot_req, 0);

	if ((!pack && !req) || vm_stop_reason(vm) != VM_RUNNING)
		return;
	if (!ss->save_to) {
		fprintf(stderr, "\r\nsmolvm: snapshot requested, but there is nowhere to save it\r\n");
		return;
	}
	/* A before_snapshot hook runs first, on the script's thread, which
	 * then saves through vm_call(). */
	if (ss->hooks && hooks_take_snapshot(ss->hooks, pack))
		return;
	/* pack ends with the machine still stopped: a guest that resumed
	 * for a moment could reboot and make a good pack look failed. */
	if (snapshot_save(vm, ss->save_to, pack, &e))
		vm_request_stop(vm, VM_STOP_ERROR, e.msg);
}

static void on_wake(void *opaque)
{
	take_requested_snapshots(opaque);
}

static void on_snapshot_request(void *opaque)
{
	struct session *ss = opaque;

	atomic_store(&ss->snapshot_req, 1);
	take_requested_snapshots(ss);
}

static void on_line(void *opaque, const char *line, int complete)
{
	struct session *ss = opaque;

	if (ss->hooks)
		hooks_console_line(ss->hooks, line, complete);
	if (!ss->ready || !strstr(line, ss->ready) || atomic_exchange(&ss->ready_hit, 1))
		return;
	/* With a before_snapshot hook the guest goes on until it is done. */
	if (ss->hooks && hooks_has(ss->hooks, "before_snapshot")) {
		vm_wake(ss->vm);
		return;
	}
	/* Stop the guest right here (this vCPU parks as soon as its port
	 * write completes), not when the main thread gets round to it. */
	vm_pause_soon(ss->vm);
	vm_wake(ss->vm);
}

struct vm_events session_events(struct session *ss)
{
	/* Console lines matter only to hooks and to the ready text. */
	int lines = ss->ready || script_has_hooks(ss->script);

	return (struct vm_events){ .opaque = ss,
				   .console_line = lines ? on_line : NULL,
				   .snapshot_request = on_snapshot_request,
				   .wake = on_wake };
}

void session_refusal(void *opaque, const char *path, const char *why)
{
	if (*(const int *)opaque)
		fprintf(stderr, "smolvm: refused %s: %s\n", path, why);
}

int session_load_hooks(struct session *ss)
{
	struct err e;

	if (ss->o->hooks_path && script_load_hooks(ss->script, ss->o->hooks_path, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	return 0;
}

int session_drive(struct session *ss, struct vm *vm, int restored)
{
	int verbose = ss->o->verbose;
	struct hooks_opts ho = { .restored = restored, .sync_required = ss->job != NULL,
				 .vsock = ss->rt.vsock, .vars = ss->o->vars,
				 .name = vm->cfg->name, .save_to = ss->save_to, .job = ss->job,
				 .verbose = verbose };
	struct hooks *h = NULL;
	struct err e;
	int status;

	ss->vm = vm;
	if ((script_has_hooks(ss->script) || (restored && ss->rt.vsock) || ss->job) &&
	    hooks_start(vm, script_has_hooks(ss->script) ? ss->script : NULL, &ho, &h, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	ss->hooks = h;
	/* boot and pack show the machine with -v, run and exec with -vv */
	if (restored ? verbose > 1 : verbose)
		fprintf(stderr, "smolvm: %u vCPU, %llu MiB%s\nsmolvm: cmdline: %s\n",
			vm->cfg->cpus, (unsigned long long)(vm->cfg->memory >> 20),
			vm->quirks ? " (host quirks on)" : "", vm->cmdline);
	status = vm_run(vm, &e);
	if (status == 1)
		fprintf(stderr, "\r\nsmolvm: %s\n", e.msg);
	/* A hook that failed once the machine had stopped (on_exit, say) still
	 * fails the command; one that stopped it was reported above. */
	if (hooks_finish(h, &e) && status == 0) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		status = 1;
	}
	ss->hooks = NULL;
	if (h && hooks_hung(h))
		ss->script = NULL; /* still in use by the abandoned thread */
	hooks_free(h);
	return status;
}

void session_free(struct session *ss)
{
	script_close(ss->script);
	ss->script = NULL;
	runtime_cleanup(&ss->rt);
}
