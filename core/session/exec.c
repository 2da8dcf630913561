#include "session/exec.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "lib/clock.h"

/* The guest answers within this long, or there is no agent. Generous: on
 * a host that emulates the guest kernel one vsock round trip takes ~0.1 s. */
#define CONNECT_TIMEOUT_MS 30000

struct out_ctx {
	int cancel_fd;
};

/* A stalled reader of our output must not keep us from ending when the
 * machine stops: wait for room and for the cancel fd together. */
static int write_out(void *opaque, int stream, const void *p, size_t n)
{
	const struct out_ctx *o = opaque;
	int fd = stream == 1 ? STDOUT_FILENO : STDERR_FILENO;
	const char *c = p;

	while (n) {
		struct pollfd pf[2] = { { fd, POLLOUT, 0 }, { o->cancel_fd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			return -errno;
		if (pf[1].revents)
			return -ECANCELED;
		if (!pf[0].revents)
			continue;
		ssize_t w = write(fd, c, n);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0)
			return errno == EPIPE ? 0 : -errno; /* a reader that left is not our failure */
		c += w;
		n -= (size_t)w;
	}
	return 0;
}


/* The end of a copy phase: the job's deadline, else its own. */
static long long copy_deadline(long long end)
{
	return end ? end : (long long)clock_ms() + AGENT_COPY_TIMEOUT_S * 1000ll;
}

void exec_job_run(struct exec_job *j, struct agent_conn *conn, const char *uds, int cancel_fd)
{
	double t0 = clock_ms(), t1 = t0, t2 = t0, t3 = t0;
	long long end = j->timeout_s ? (long long)t0 + j->timeout_s * 1000ll : 0, deadline;
	uint64_t max = j->copy_out_max ? j->copy_out_max : AGENT_COPY_OUT_MAX;
	struct agent_conn a;
	struct agent_status st = { 0 };
	struct out_ctx oc = { cancel_fd };
	struct agent_exec_io io = { .in_fd = STDIN_FILENO, .out = write_out, .opaque = &oc };
	int gerr = 0, rc;

	j->status = 1;
	if (conn) {
		a = *conn;
		a.cancel_fd = cancel_fd;
		rc = 0;
	} else {
		rc = agent_connect(&a, uds, CONNECT_TIMEOUT_MS, cancel_fd, &j->e);
	}
	t1 = clock_ms();
	deadline = copy_deadline(end);
	for (size_t i = 0; !rc && i < j->ncopy_in; i++)
		rc = agent_copy_in(&a, j->copy_in[i].host, j->copy_in[i].guest, deadline, &j->e);
	t2 = clock_ms();
	if (!rc && end) {
		/* what is left of --timeout; the copies may have used it all */
		long long left = end - (long long)t2;
		io.timeout_ms = left > 0 ? (int)left : 1;
	}
	if (!rc) {
		rc = agent_exec(&a, j->cwd, (const char *const *)j->argv,
				(const char *const *)j->env, &io, &st, &gerr, &j->e);
		if (rc && gerr)
			j->status = gerr == ENOENT ? 127 : 126; /* as a shell says it */
		else if (!rc)
			j->status = st.timed_out ? 124 : agent_status_code(&st);
		if (!rc && st.timed_out)
			err_set(&j->e, -ETIMEDOUT, "%s: timed out after %d s: killed", j->argv[0],
				j->timeout_s);
	}
	t3 = clock_ms();
	/* A command killed at the deadline leaves no time to copy out. */
	deadline = copy_deadline(end);
	for (size_t i = 0; !rc && !st.timed_out && i < j->ncopy_out; i++) {
		rc = agent_copy_out(&a, j->copy_out[i].guest, j->copy_out[i].host, max, deadline,
				    &j->e);
		if (rc)
			j->status = 1;
	}
	agent_close(&a);
	if (j->verbose)
		fprintf(stderr, "smolvm exec: agent connected in %.1f ms; copy-in %.1f ms; "
			"command %.1f ms; copy-out %.1f ms\n", t1 - t0, t2 - t1, t3 - t2, clock_ms() - t3);
	j->done = 1;
}
