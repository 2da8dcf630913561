/* The hooks runner: a script thread runs a machine script's lifecycle
 * hooks (on_boot, on_console, before_snapshot, after_restore, on_exit)
 * one at a time under a CPU watchdog, carries out what their `vm` object
 * asks (script/vm_object.h), syncs the guest agent after a restore, and
 * drives the job of `smolvm exec`. Everything that touches the machine
 * goes through vm_call() (main thread) or the agent's socket, so a hook
 * never blocks the event loop or a vCPU. */
#ifndef SMOLVM_HOOKS_H
#define SMOLVM_HOOKS_H

#include "lib/err.h"
#include "script/script.h"
#include "session/bringup.h"
#include "session/exec.h"
#include "session/kept.h"

struct vm;
struct hooks;

struct hooks_opts {
	int restored;        /* after_restore (and the agent sync), else on_boot */
	int sync_required;   /* a failed agent sync stops the machine */
	const char *vsock;   /* the agent's socket, NULL without virtio-vsock */
	char **vars;         /* "K=V": vm.vars in hooks */
	const char *name;    /* vm.name */
	const char *save_to; /* where a requested snapshot goes */
	struct exec_job *job; /* smolvm exec's command, NULL otherwise */
	const struct bringup *bringup; /* boot and pack: start and ready, or NULL */
	void (*armed)(void *opaque, int stage); /* bringup's start: 1 begins, 2 done */
	void *armed_opaque;
	int verbose;
	int trusted;         /* saves are recorded as this user's (trust.h) */
	struct kept *kept;   /* vm:keep's values (kept.h) */
	const char *volumes; /* after the sync: mounts --volume's (volumes.h), or NULL */
};

/* s: the machine script's state, user: the --hooks file's (its hooks
 * replace the script's of the same name); either may be NULL (no hooks:
 * only the sync and the job). */
int hooks_start(struct vm *vm, struct script *s, struct script *user,
		const struct hooks_opts *o, struct hooks **out, struct err *e) WARN_UNUSED;
/* After vm_run(): cancels what waits on the machine, joins, runs on_exit.
 * Fails (with the message) when a hook failed, even after the machine had
 * stopped. */
int hooks_finish(struct hooks *h, struct err *e);
/* A hook stuck in C code was abandoned: its script state must not be
 * closed (the thread may still use it). */
int hooks_hung(struct hooks *h);
void hooks_free(struct hooks *h);

/* From the machine's threads. */
int hooks_has(struct hooks *h, const char *hook);
void hooks_console_line(struct hooks *h, const char *line, int complete);
/* Main thread, a snapshot is due: returns 1 when a before_snapshot hook
 * will run first and then save (pack: then stop), 0 to save at once. */
int hooks_take_snapshot(struct hooks *h, int pack);

#endif
