/* smolvm exec's job: copy files in, run one command in the guest with this
 * process's stdin/stdout/stderr, copy files out. Runs on its own thread
 * once the machine is restored and its after_restore hook is done. */
#ifndef SMOLVM_EXEC_H
#define SMOLVM_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "agent/client.h"
#include "lib/err.h"

struct exec_copy {
	const char *host, *guest;
};

struct exec_job {
	char **argv;            /* NULL-terminated */
	char **env;             /* "K=V", NULL-terminated (may be NULL) */
	const char *cwd;        /* NULL: / */
	struct exec_copy *copy_in, *copy_out;
	size_t ncopy_in, ncopy_out;
	int timeout_s;          /* the whole job, copies included; 0: none
				 * (each copy phase then AGENT_COPY_TIMEOUT_S) */
	uint64_t copy_out_max;  /* bytes per copy-out; 0: AGENT_COPY_OUT_MAX */
	const char *keep_to;    /* save the machine here afterwards */
	int verbose;
	/* results */
	int done;
	int status;             /* the command's exit status, 128+signal,
				 * 124 after a timeout, 126/127 when it could
				 * not be started, 1 on other errors */
	struct err e;           /* why, when the job failed */
};

/* Runs the job on `conn` (an agent connection already open: the restore's
 * sync, which saves the guest a connection setup) or, with conn NULL, on a
 * new connection to `uds`; closes it. Fills j->status and j->e.
 * cancel_fd readable = the machine is stopping. */
void exec_job_run(struct exec_job *j, struct agent_conn *conn, const char *uds, int cancel_fd);

#endif
