/* One machine session: the machine, its script and hooks (struct
 * session), and the rules that give meaning to what the machine reports
 * (control.c): pack saves at the first console output containing the ready
 * text (the vCPU that printed it parks at once); SIGUSR1 saves to the
 * session's output; a before_snapshot hook runs first when the script has
 * one; with start commands the ready text counts once they have begun and
 * the pack waits until they are done.
 * Running it to the end is session.c's. Inside session/. */
#ifndef SMOLVM_CONTROL_H
#define SMOLVM_CONTROL_H

#include <stdatomic.h>

#include "machine/vm.h"
#include "script/script.h"
#include "session/bind.h"
#include "session/exec.h"
#include "session/hooks.h"
#include "session/session.h"

struct session {
	const struct session_opts *o;
	struct script *script;  /* the machine script's state (its hooks) */
	struct script *user_script; /* --hooks FILE, a state of its own */
	struct runtime rt;
	struct exec_job *job;   /* smolvm exec */
	const char *ready;      /* pack: the text that means ready */
	const char *save_to;    /* where SIGUSR1 (and pack) saves; may be NULL */
	struct vm *vm;
	struct hooks *hooks;    /* while the machine runs */
	atomic_int ready_hit;   /* the ready text was printed */
	struct bringup bringup; /* boot, pack: start commands, ready forms */
	int has_bringup;
	atomic_int ready_armed; /* the start commands: 1 running, 2 done */
	atomic_int ready_seen;  /* the ready text came while they ran */
	atomic_int snapshot_req; /* SIGUSR1 */
	int trusted;            /* its script is this user's: saves are recorded */
	struct kept kept;       /* vm:keep's values, from the bundle and the hooks */
	char *volume_script;    /* run, exec: what mounts the --volume ones (volumes.h) */
};

/* bringup's start commands begin (stage 1: the ready text counts from
 * now on) or are done (2: a pack saves once the text was seen). */
void session_ready_armed(void *opaque, int stage);
/* The callbacks a machine of this session reports through. */
struct vm_events session_events(struct session *ss);
/* A plugin the scan refused, said only with -v (opaque: the int verbose). */
void session_refusal(void *opaque, const char *path, const char *why);
/* Runs --hooks FILE in a state of its own (prints why it failed). */
int session_load_hooks(struct session *ss);
/* Runs the machine with its hooks until it stops; returns the exit status
 * (messages printed). */
int session_drive(struct session *ss, struct vm *vm, int restored);
void session_free(struct session *ss);

#endif
