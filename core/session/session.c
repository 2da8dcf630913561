/* What every recipe shares: running a machine with its hooks to the end,
 * the user's --hooks, and the session's cleanup. */
#include "session/syscalls.h"
#include "session/control.h"

#include <stdio.h>
#include <stdlib.h>

void session_refusal(void *opaque, const char *path, const char *why)
{
	if (*(const int *)opaque)
		fprintf(stderr, "smolvm: refused %s: %s\n", path, why);
}

int session_load_hooks(struct session *ss)
{
	struct err e;

	if (ss->o->hooks_path && script_open_hooks(ss->o->hooks_path, &ss->user_script, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	return 0;
}

int session_drive(struct session *ss, struct vm *vm, int restored)
{
	int verbose = ss->o->verbose;
	struct hooks_opts ho = { .restored = restored, .sync_required = ss->job || ss->volume_script,
				 .vsock = ss->rt.vsock, .vars = ss->o->vars,
				 .name = vm->cfg->name, .save_to = ss->save_to, .job = ss->job,
				 .bringup = ss->has_bringup ? &ss->bringup : NULL,
				 .armed = session_ready_armed, .armed_opaque = ss, .verbose = verbose,
				 .trusted = ss->trusted, .kept = &ss->kept,
				 .volumes = ss->volume_script };
	struct hooks *h = NULL;
	struct err e;
	int status;

	ss->vm = vm;
	/* Set up: from here on only what a running VMM needs (syscalls.h). */
	if (syscalls_restrict(&e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	int mine = script_has_hooks(ss->script), user = script_has_hooks(ss->user_script);

	if ((mine || user || (restored && ss->rt.vsock) || ss->job || ss->has_bringup) &&
	    hooks_start(vm, mine ? ss->script : NULL, user ? ss->user_script : NULL, &ho, &h,
			&e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	ss->hooks = h;
	if (verbose)
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
		ss->script = ss->user_script = NULL; /* still in use by the abandoned thread */
	hooks_free(h);
	return status;
}

void session_free(struct session *ss)
{
	script_close(ss->script);
	script_close(ss->user_script);
	ss->script = ss->user_script = NULL;
	runtime_cleanup(&ss->rt);
	kept_free(&ss->kept);
	free(ss->volume_script);
	ss->volume_script = NULL;
}
