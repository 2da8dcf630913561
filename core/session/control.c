#include "session/trust.h"
#include "session/control.h"

#include <stdio.h>
#include <string.h>

#include "session/kept.h"
#include "session/syscalls.h"
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
	if (kept_snapshot_save(vm, ss->save_to, pack, &ss->kept, &e))
		vm_request_stop(vm, VM_STOP_ERROR, e.msg);
	else
		trust_saved(ss->save_to, ss->trusted, vm->cfg->script);
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
	if (!ss->ready || !strstr(line, ss->ready))
		return;
	if (ss->bringup.nstart) {
		/* seen first, then the stage: session_ready_armed() does the
		 * reverse, so one of the two always packs */
		if (!atomic_load(&ss->ready_armed))
			return; /* before the start commands: not this machine's word */
		atomic_store(&ss->ready_seen, 1);
		if (atomic_load(&ss->ready_armed) < 2)
			return; /* saved once they are done */
	}
	if (atomic_exchange(&ss->ready_hit, 1))
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

void session_ready_armed(void *opaque, int stage)
{
	struct session *ss = opaque;

	atomic_store(&ss->ready_armed, stage);
	/* the text came while the start commands ran: pack now */
	if (stage == 2 && ss->ready && atomic_load(&ss->ready_seen) &&
	    !atomic_exchange(&ss->ready_hit, 1))
		vm_wake(ss->vm);
}

static int on_vcpu_start(void *opaque, struct err *e)
{
	(void)opaque;
	return syscalls_restrict_vcpu(e);
}

struct vm_events session_events(struct session *ss)
{
	/* Console lines matter only to hooks and to the ready text. */
	int lines = ss->ready || script_has_hooks(ss->script) || script_has_hooks(ss->user_script) ||
		    ss->has_bringup;

	return (struct vm_events){ .opaque = ss,
				   .console_line = lines ? on_line : NULL,
				   .snapshot_request = on_snapshot_request,
				   .wake = on_wake,
				   .vcpu_start = on_vcpu_start };
}
