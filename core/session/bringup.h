/* A machine brought up for use: once its guest agent answers, the
 * script's `start` commands run in the guest one after the other, then
 * `ready` is waited for (a guest command that exits 0, a TCP port the
 * guest listens on, or console text). Runs on the hooks' script thread.
 * Inside session/. */
#ifndef SMOLVM_BRINGUP_H
#define SMOLVM_BRINGUP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct bringup {
	char *const *start;
	size_t nstart;
	const char *ready_text;  /* waited for by the console rules (control.c) */
	const char *ready_exec;
	uint32_t ready_port;
	uint32_t timeout_s;      /* for all of it, from the machine's start */
	int wait_ready;          /* pack: wait for ready; boot: start only */
};

/* What bringup_run needs from the hooks runner. */
struct bringup_env {
	const char *vsock;
	int cancel_fd;
	void *opaque;
	/* sleeps up to s seconds; nonzero: stop waiting (the machine is
	 * stopping, or a snapshot is due) */
	int (*sleep)(void *opaque, double s);
	/* the last console lines, for messages */
	void (*recent)(void *opaque, char *out, size_t len);
	/* stage 1: the start commands begin (the ready text counts from
	 * now on); 2: they are done (a pack may save) */
	void (*armed)(void *opaque, int stage);
	int verbose;
};

/* 0 once ready (or, without wait_ready, once started); -ECANCELED when
 * the machine stopped meanwhile; else an error with the message (naming
 * the step, with the last console lines). */
int bringup_run(const struct bringup *b, const struct bringup_env *env, struct err *e);

/* Whether the guest's /proc/net/tcp text (untrusted) lists `port` as
 * listening. */
int bringup_listens(const char *table, uint32_t port);

#endif
