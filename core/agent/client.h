/* The host side of the guest agent protocol (docs/agent-protocol.md),
 * spoken through the virtio-vsock device's Unix socket. Blocking calls
 * with deadlines; every wait also watches a cancel fd (readable = give
 * up: the machine is stopping). One connection per thread. */
#ifndef SMOLVM_AGENT_CLIENT_H
#define SMOLVM_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <smolvm/agent.h>

#include "lib/err.h"

struct agent_conn {
	int fd;
	int cancel_fd;
	struct smolvm_agent_decoder *dec;
	uint8_t rbuf[65536];
	size_t rlen, roff;
	uint8_t *obuf; /* frames waiting to be sent */
	size_t olen, ocap;
};

/* Connects to `uds` (the device's socket), asks for the agent's port and
 * exchanges HELLO. The messages say whether no agent listens, the guest
 * does not answer, or the socket is not there. */
int agent_connect(struct agent_conn *a, const char *uds, int timeout_ms, int cancel_fd,
		  struct err *e) WARN_UNUSED;
void agent_close(struct agent_conn *a);

/* After a restore: fresh RNG seed and the host's wall clock. */
int agent_sync(struct agent_conn *a, int timeout_ms, struct err *e) WARN_UNUSED;
/* How long copies may take when the caller has no deadline of its own. */
#define AGENT_COPY_TIMEOUT_S 600
/* The most a copy-out takes from the guest unless told otherwise. */
#define AGENT_COPY_OUT_MAX (1ull << 30)

/* Copies a host file or directory tree into the guest: links as links,
 * never followed below host_path itself; sockets, FIFOs and devices left
 * out (a warning on stderr). deadline: clock_ms() value, or -1. */
int agent_copy_in(struct agent_conn *a, const char *host_path, const char *guest_path,
		  long long deadline, struct err *e) WARN_UNUSED;
/* Copies a guest file to the host (written to a temporary name, renamed
 * into place only when whole): at most max_bytes, by the deadline. */
int agent_copy_out(struct agent_conn *a, const char *guest_path, const char *host_path,
		   uint64_t max_bytes, long long deadline, struct err *e) WARN_UNUSED;

struct agent_exec_io {
	int in_fd;             /* stdin from this fd; -1: use in_buf */
	const void *in_buf;    /* (may be NULL: empty stdin) */
	size_t in_len;
	/* stream 1 = stdout, 2 = stderr; returns 0 or -errno */
	int (*out)(void *opaque, int stream, const void *p, size_t n);
	void *opaque;
	int timeout_ms;        /* 0: none; then the command is killed */
};

struct agent_status {
	int signaled; /* killed by signal `value`, else exited with it */
	int value;
	int timed_out;
};

/* Runs argv in the guest (envp: "K=V" entries, may be NULL; cwd may be
 * NULL) and streams its I/O until it ends. A command that cannot be
 * started is an error (e names it; *exec_errno gets the guest's errno). */
int agent_exec(struct agent_conn *a, const char *cwd, const char *const *argv,
	       const char *const *envp, const struct agent_exec_io *io,
	       struct agent_status *st, int *exec_errno, struct err *e) WARN_UNUSED;

/* The exit status a shell would give: value, or 128 + signal. */
static inline int agent_status_code(const struct agent_status *st)
{
	return st->signaled ? 128 + st->value : st->value;
}

#endif
