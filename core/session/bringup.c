#include "session/bringup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/client.h"
#include "lib/clock.h"

#define CONSOLE_TAIL 4096
#define OUTPUT_TAIL 1024

struct run {
	const struct bringup *b;
	const struct bringup_env *env;
	double deadline; /* clock_ms() */
	double t0;
	int answered;    /* the agent answered once */
};

static int remaining_ms(const struct run *r)
{
	double left = r->deadline - clock_ms();

	return left > 0 ? (int)left : 0;
}

/* What a command printed, its last OUTPUT_TAIL bytes kept. */
struct tail {
	char buf[OUTPUT_TAIL + 1];
	size_t len;
};

static int keep_output(void *opaque, int stream, const void *p, size_t n)
{
	struct tail *t = opaque;

	(void)stream;
	if (n >= OUTPUT_TAIL) {
		p = (const char *)p + n - OUTPUT_TAIL;
		n = OUTPUT_TAIL;
	}
	if (t->len + n > OUTPUT_TAIL) {
		size_t drop = t->len + n - OUTPUT_TAIL;
		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
	t->buf[t->len] = 0;
	return 0;
}

/* The guest agent, once it listens (init starts it; until then the
 * connection is refused). */
static int connect_agent(struct run *r, struct agent_conn *a, struct err *e)
{
	for (;;) {
		int ms = remaining_ms(r), rc;
		if (!ms)
			return err_set(e, -ETIMEDOUT, "the guest agent did not answer within %u s "
				       "(last try: %s)", r->b->timeout_s, e->msg);
		rc = agent_connect(a, r->env->vsock, ms < 10000 ? ms : 10000, r->env->cancel_fd, e);
		if (!rc && !r->answered++ && r->env->verbose)
			fprintf(stderr, "smolvm: the guest agent answered after %.1f s\r\n",
				(clock_ms() - r->t0) / 1000);
		if (!rc)
			return 0;
		agent_close(a);
		if (rc == -ECANCELED)
			return rc;
		if (r->env->sleep(r->env->opaque, 0.25))
			return -ECANCELED;
	}
}

/* argv[2] run by the guest's /bin/sh; its status in *code (128 + signal). */
static int guest_sh(struct run *r, const char *script, struct tail *out, int *code,
		    struct err *e)
{
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	struct agent_exec_io io = { .in_fd = -1, .out = keep_output, .opaque = out,
				    .timeout_ms = remaining_ms(r) };
	struct agent_conn a;
	struct agent_status st;
	int gerr, rc;

	if (!io.timeout_ms)
		return err_set(e, -ETIMEDOUT, "out of time");
	rc = connect_agent(r, &a, e);
	if (!rc)
		rc = agent_exec(&a, "/", argv, NULL, &io, &st, &gerr, e);
	agent_close(&a);
	if (!rc)
		*code = st.timed_out ? -1 : agent_status_code(&st);
	return rc;
}

static int failed(struct run *r, int rc, struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The message, then the last console lines. */
static int failed(struct run *r, int rc, struct err *e, const char *fmt, ...)
{
	char what[1024], con[CONSOLE_TAIL];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	r->env->recent(r->env->opaque, con, sizeof(con));
	return err_set(e, rc, "%s%s%s", what, con[0] ? "\nthe last console lines:" : "", con);
}

static const char *trimmed(struct tail *t)
{
	while (t->len && (t->buf[t->len - 1] == '\n' || t->buf[t->len - 1] == ' '))
		t->buf[--t->len] = 0;
	return t->len ? t->buf : "(nothing)";
}

static int run_start(struct run *r, size_t i, struct err *e)
{
	const char *cmd = r->b->start[i];
	/* Its output goes to the console, the services' too; the agent sees
	 * its pipes close at once, so a command that leaves a daemon (or a
	 * `server &`) behind ends when the shell does. */
	size_t len = strlen(cmd) + 64;
	char *script = malloc(len);
	struct tail out = { .len = 0 };
	double t0 = clock_ms();
	int code = 0, rc;

	if (!script)
		return err_set(e, -ENOMEM, "out of memory");
	snprintf(script, len, "exec </dev/null >/dev/console 2>&1\n%s", cmd);
	rc = guest_sh(r, script, &out, &code, e);
	free(script);
	if (rc == -ECANCELED)
		return rc;
	if (rc)
		return failed(r, rc, e, "start[%zu] (%s): %s", i + 1, cmd, e->msg);
	if (code == -1)
		return failed(r, -ETIMEDOUT, e,
			      "start[%zu] (%s) was still running after %u s (a service must "
			      "daemonize, or be started in the background with &)",
			      i + 1, cmd, r->b->timeout_s);
	if (code)
		return failed(r, -EIO, e, "start[%zu] (%s) failed with exit status %d", i + 1, cmd,
			      code);
	if (r->env->verbose)
		fprintf(stderr, "smolvm: start[%zu] done in %.1f s\r\n", i + 1, (clock_ms() - t0) / 1000);
	return 0;
}

/* /proc/net/tcp lines: "sl local rem st ...", st 0A = LISTEN. */
int bringup_listens(const char *table, uint32_t port)
{
	for (const char *l = table; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned lport, st;
		char local[80], rem[80];
		if (sscanf(l, " %*[0-9]: %79[0-9A-Fa-f]:%x %79s %x", local, &lport, rem, &st) == 4 &&
		    lport == port && st == 0x0A)
			return 1;
	}
	return 0;
}

static int wait_ready(struct run *r, struct err *e)
{
	const struct bringup *b = r->b;
	struct tail out = { .len = 0 };
	char script[200];
	int tries = 0;

	/* the port's table through the shell's builtins: the image may
	 * have no cat */
	snprintf(script, sizeof(script),
			 "for f in /proc/net/tcp /proc/net/tcp6; do "
			 "[ -r $f ] && while read -r l; do echo \"$l\"; done < $f; done; true");
	for (;;) {
		int code = 0, rc;
		out.len = 0;
		out.buf[0] = 0;
		rc = guest_sh(r, b->ready_exec ? b->ready_exec : script, &out, &code, e);
		tries++;
		if (rc == -ECANCELED)
			return rc;
		if (rc && rc != -ETIMEDOUT)
			return failed(r, rc, e, "ready: %s", e->msg);
		if (!rc && (b->ready_exec ? code == 0 : bringup_listens(out.buf, b->ready_port)))
			return 0;
		if (rc == -ETIMEDOUT || !remaining_ms(r)) {
			if (b->ready_exec)
				return failed(r, -ETIMEDOUT, e,
					      "not ready after %u s: ready.exec (%s) never exited 0 "
					      "(%d tries; the last: %s%d, printing: %s)",
					      b->timeout_s, b->ready_exec, tries,
					      code == -1 ? "timed out, " : "exit status ", code, trimmed(&out));
			return failed(r, -ETIMEDOUT, e,
				      "not ready after %u s: nothing in the guest listens on TCP port %u",
				      b->timeout_s, b->ready_port);
		}
		if (r->env->sleep(r->env->opaque, 0.5))
			return -ECANCELED;
	}
}

int bringup_run(const struct bringup *b, const struct bringup_env *env, struct err *e)
{
	struct run r = { b, env, clock_ms() + b->timeout_s * 1000.0, clock_ms(), 0 };
	int rc = 0;

	e->msg[0] = 0;
	env->armed(env->opaque, 1);
	for (size_t i = 0; !rc && i < b->nstart; i++)
		rc = run_start(&r, i, e);
	if (rc)
		return rc;
	env->armed(env->opaque, 2);
	if (!b->wait_ready)
		return 0;
	if (b->ready_exec || b->ready_port) {
		rc = wait_ready(&r, e);
	} else if (b->ready_text) {
		/* control.c packs at the text; here only the deadline is kept */
		while (!rc && remaining_ms(&r))
			if (env->sleep(env->opaque, remaining_ms(&r) / 1000.0))
				return -ECANCELED;
		return failed(&r, -ETIMEDOUT, e, "not ready after %u s: the console never showed \"%s\"",
			      b->timeout_s, b->ready_text);
	} else if (!b->nstart) {
		/* ready when the guest agent answers: init is done */
		struct agent_conn a;
		rc = connect_agent(&r, &a, e);
		agent_close(&a);
		if (rc && rc != -ECANCELED)
			rc = failed(&r, rc, e, "%s", e->msg);
	}
	if (!rc && env->verbose)
		fprintf(stderr, "smolvm: ready after %.1f s\r\n", (clock_ms() - r.t0) / 1000);
	return rc;
}
