#include "session/trust.h"
#include "session/hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "session/volumes.h"
#include "lib/clock.h"
#include "machine/vm.h"
#include "script/vm_object.h"
#include "session/lines.h"
#include "session/watchdog.h"
#include "snapshot/snapshot.h"

#define AGENT_TIMEOUT_MS 30000
#define SYNC_OPTIONAL_TIMEOUT_MS 5000
#define HOOK_CPU_LIMIT_S 10

static const char no_vsock[] = "this machine has no virtio-vsock device, which the guest agent needs";

enum job_state { JOB_NONE, JOB_RUNNING, JOB_DONE };

/* The machine script's state and the user's (--hooks), each with its own
 * vm object: a hook the user defines replaces the script's. */
enum { MACHINE, USER, NSTATES };

struct hooks {
	struct vm *vm;
	struct script *s[NSTATES];
	struct hooks_opts o;
	pthread_t thread, job_thread;
	int thread_started, job_started;
	int cancel_fd; /* eventfd: readable once the machine stops */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	int stopping;
	int snapshot_due;   /* 1 = SIGUSR1, 2 = pack */
	enum job_state job;
	struct lines lines;
	int script_done, hung;

	/* script thread only */
	int failed;
	int paused;          /* by vm:pause() */
	struct vm_object *vmo[NSTATES];
	struct err err;      /* the first hook failure */
	struct agent_conn conn; /* the sync's connection, handed to the job */
	int have_conn;
	struct watchdog watchdog;
	/* which hooks each state defines, read once at start: other threads
	 * ask, and the Lua states belong to the script thread */
	unsigned defined[NSTATES];
};

static const char *const hook_names[] = { SCRIPT_HOOKS };

/* The state whose hook `name` runs (the user's first), or -1: none. */
static int hook_owner(struct hooks *h, const char *name)
{
	for (unsigned i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++) {
		if (strcmp(hook_names[i], name))
			continue;
		if ((h->defined[USER] >> i) & 1)
			return USER;
		return (h->defined[MACHINE] >> i) & 1 ? MACHINE : -1;
	}
	return -1;
}

static int has_hook(struct hooks *h, const char *name)
{
	return hook_owner(h, name) >= 0;
}

int hooks_has(struct hooks *h, const char *hook)
{
	return has_hook(h, hook);
}

/* The first failure is kept for hooks_finish(): once the machine has
 * stopped, vm_request_stop() no longer carries a message. */
static void fail(struct hooks *h, const char *msg)
{
	if (!h->failed)
		snprintf(h->err.msg, sizeof(h->err.msg), "%s", msg);
	h->failed = 1;
	vm_request_stop(h->vm, VM_STOP_ERROR, msg);
}

static int vm_running(struct hooks *h)
{
	return vm_stop_reason(h->vm) == VM_RUNNING;
}

/* ---- what the vm object asks for (script thread) --------------------------- */

struct write_args {
	const char *p;
	size_t n, took;
};

static int do_console_write(struct vm *vm, void *arg, struct err *e)
{
	struct write_args *w = arg;

	(void)e;
	w->took = vm_console_input(vm, w->p, w->n);
	return 0;
}

static int op_console_write(void *o, const char *p, size_t n, struct err *e)
{
	struct hooks *h = o;

	while (n) {
		struct write_args w = { p, n, 0 };
		if (vm_call(h->vm, do_console_write, &w, e))
			return -ECANCELED;
		p += w.took;
		n -= w.took;
		if (n) { /* the device has not taken the last batch yet */
			struct timespec ts = { 0, 5000000 };
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static void op_wait_mode(void *o, int on)
{
	struct hooks *h = o;

	pthread_mutex_lock(&h->lock);
	lines_set_waiting(&h->lines, on);
	pthread_mutex_unlock(&h->lock);
}

static int op_next_line(void *o, const struct timespec *dl, char *line, size_t len, int *partial)
{
	struct hooks *h = o;
	char buf[LINES_MAX_LEN];
	int got = 0;

	pthread_mutex_lock(&h->lock);
	/* A chatty guest never lets the wait below time out. */
	while (!deadline_passed(dl)) {
		if ((got = lines_next_wait(&h->lines, buf, partial)))
			break;
		if (h->stopping) {
			got = -ECANCELED;
			break;
		}
		if (pthread_cond_timedwait(&h->cond, &h->lock, dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&h->lock);
	if (got > 0)
		snprintf(line, len, "%s", buf);
	return got;
}

static void op_matched(void *o)
{
	struct hooks *h = o;

	pthread_mutex_lock(&h->lock);
	lines_matched(&h->lines);
	pthread_mutex_unlock(&h->lock);
}

static int op_exec(void *o, const struct vm_exec_req *r, struct vm_exec_status *st,
		   struct err *e)
{
	struct hooks *h = o;
	struct agent_exec_io io = { .in_fd = -1, .in_buf = r->in, .in_len = r->in_len,
				    .out = r->out, .opaque = r->out_opaque,
				    .timeout_ms = r->timeout_ms };
	struct agent_conn a;
	struct agent_status as;
	int gerr, rc;

	if (!h->o.vsock)
		return err_set(e, -ENOTSUP, "%s", no_vsock);
	rc = agent_connect(&a, h->o.vsock, AGENT_TIMEOUT_MS, h->cancel_fd, e);
	if (!rc)
		rc = agent_exec(&a, r->cwd, r->argv, r->env, &io, &as, &gerr, e);
	agent_close(&a);
	if (!rc) {
		st->signaled = as.signaled;
		st->value = as.value;
		st->timed_out = as.timed_out;
	}
	return rc;
}

struct save_args {
	const char *path;
	int then_stop;
	struct kept *kept;
	int repause; /* a hook had paused it: it stays paused */
};

static int do_save(struct vm *vm, void *arg, struct err *e)
{
	struct save_args *s = arg;
	int rc;

	if (s->repause)
		vm_resume(vm);
	rc = kept_snapshot_save(vm, s->path, s->then_stop, s->kept, e);
	if (s->repause && !s->then_stop) {
		struct err pe;
		if (vm_pause(vm, &pe) && !rc)
			rc = err_set(e, -EIO, "%s", pe.msg);
	}
	return rc;
}

static int op_snapshot(void *o, const char *path, struct err *e)
{
	struct hooks *h = o;
	struct save_args a = { path, 0, h->o.kept, h->paused };
	int rc;

	/* A restored machine writes bundles only where the user said it may
	 * save (run without --pristine, -o, exec --keep). */
	if (h->o.restored && !h->o.save_to)
		return err_set(e, -EPERM, "vm:snapshot: this command saves nothing (run "
			       "--pristine without -o, or exec without --keep), so hooks may not "
			       "either");
	rc = vm_call(h->vm, do_save, &a, e);

	if (!rc)
		trust_saved(path, h->o.trusted, h->vm->cfg->script);
	return rc;
}

static int do_pause(struct vm *vm, void *arg, struct err *e)
{
	(void)arg;
	return vm_pause(vm, e);
}

static int do_resume(struct vm *vm, void *arg, struct err *e)
{
	(void)arg;
	(void)e;
	vm_resume(vm);
	return 0;
}

/* A second pause (or resume) changes nothing. */
static int op_pause(void *o, int pause, struct err *e)
{
	struct hooks *h = o;

	if (h->paused != pause) {
		int rc = vm_call(h->vm, pause ? do_pause : do_resume, NULL, e);
		if (rc)
			return rc;
		h->paused = pause;
	}
	return 0;
}

static void op_stop(void *o)
{
	vm_request_stop(((struct hooks *)o)->vm, VM_STOP_DONE, NULL);
}

/* Waits up to s seconds, less once the machine stops (or, with
 * `snapshots`, once a snapshot is due); returns whether it was cut short. */
static int wait_for(struct hooks *h, double s, int snapshots)
{
	struct timespec dl;
	int stop;

	deadline_after(&dl, s);
	pthread_mutex_lock(&h->lock);
	while (!(stop = h->stopping || (snapshots && h->snapshot_due)) &&
	       pthread_cond_timedwait(&h->cond, &h->lock, &dl) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&h->lock);
	return stop;
}

static void op_sleep(void *o, double s)
{
	wait_for(o, s, 0);
}

static int op_keep(void *o, const char *key, const char *val, size_t len, struct err *e)
{
	struct hooks *h = o;

	if (!h->o.kept)
		return err_set(e, -ENOTSUP, "vm:keep: nothing is saved here");
	return kept_set(h->o.kept, key, val, len, e);
}

static const struct vm_object_ops vm_ops = {
	.console_write = op_console_write,
	.wait_mode = op_wait_mode,
	.next_line = op_next_line,
	.matched = op_matched,
	.exec = op_exec,
	.snapshot = op_snapshot,
	.pause = op_pause,
	.stop = op_stop,
	.sleep = op_sleep,
	.keep = op_keep,
};

/* ---- the script thread ------------------------------------------------------ */

/* Calls a hook (with vm and an optional string); a failure stops the
 * machine with the message. Returns 0 when it ran fine or is not there. */
static int call_hook(struct hooks *h, const char *name, const char *arg)
{
	int who = hook_owner(h, name), rc;
	struct err e;


	if (who < 0)
		return 0;
	pthread_mutex_lock(&h->lock);
	lines_begin_call(&h->lines);
	pthread_mutex_unlock(&h->lock);
	watchdog_enter(&h->watchdog, name);
	rc = script_call_hook(h->s[who], name, arg, &e);
	watchdog_leave(&h->watchdog);
	if (rc)
		fail(h, e.msg);
	return rc;
}

static void sync_agent(struct hooks *h)
{
	struct agent_conn a;
	struct err e;
	double t0 = clock_ms();
	/* run: a guest without an agent must not hold after_restore long */
	int timeout = h->o.sync_required ? AGENT_TIMEOUT_MS : SYNC_OPTIONAL_TIMEOUT_MS;
	int rc = agent_connect(&a, h->o.vsock, timeout, h->cancel_fd, &e);

	if (!rc)
		rc = agent_sync(&a, timeout, &e);
	/* the volumes before after_restore and the job: both may use them */
	if (!rc && h->o.volumes) {
		rc = volumes_mount(h->o.vsock, h->o.volumes, VOLUMES_MOUNT_TIMEOUT_MS, h->cancel_fd,
				   &e);
		if (rc) {
			agent_close(&a);
			fail(h, e.msg);
			return;
		}
		if (h->o.verbose)
			fprintf(stderr, "smolvm: volumes mounted in the guest\r\n");
	}
	if (!rc && h->o.job) {
		h->conn = a;
		h->have_conn = 1;
	} else {
		agent_close(&a);
	}
	if (!rc && h->o.verbose)
		fprintf(stderr, "smolvm: guest agent: RNG reseeded and clock set in %.1f ms\r\n",
			clock_ms() - t0);
	if (rc && h->o.sync_required)
		fail(h, e.msg);
	else if (rc && h->o.verbose)
		fprintf(stderr, "smolvm: no guest agent sync after the restore: %s\r\n", e.msg);
}

static void *job_main(void *arg)
{
	struct hooks *h = arg;

	exec_job_run(h->o.job, h->have_conn ? &h->conn : NULL, h->o.vsock, h->cancel_fd);
	h->have_conn = 0; /* the job closed it */
	pthread_mutex_lock(&h->lock);
	h->job = JOB_DONE;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void save_now(struct hooks *h, const char *path, int then_stop)
{
	struct save_args a = { path, then_stop, h->o.kept, h->paused };
	struct err e;

	if (!vm_running(h) || call_hook(h, "before_snapshot", NULL))
		return;
	if (vm_call(h->vm, do_save, &a, &e)) {
		if (vm_running(h))
			fail(h, e.msg);
		return;
	}
	trust_saved(path, h->o.trusted, h->vm->cfg->script);
}

static const char *stop_name(enum vm_stop why)
{
	switch (why) {
	case VM_STOP_RESET: return "reset";
	case VM_STOP_POWEROFF: return "poweroff";
	case VM_STOP_QUIT: return "quit";
	case VM_STOP_SIGNAL: return "signal";
	case VM_STOP_TRIPLE_FAULT: return "triple-fault";
	case VM_STOP_PACKED: return "packed";
	case VM_STOP_DONE: return "done";
	default: return "error";
	}
}

static void start_job(struct hooks *h)
{
	pthread_mutex_lock(&h->lock);
	h->job = JOB_RUNNING;
	pthread_mutex_unlock(&h->lock);
	if (pthread_create(&h->job_thread, NULL, job_main, h)) {
		h->job = JOB_NONE;
		fail(h, "cannot start the exec thread");
	} else {
		h->job_started = 1;
	}
}

/* ---- start and ready (boot, pack) ----------------------------------------------- */

/* A snapshot due (the ready text with a before_snapshot hook) ends the
 * wait too: the loop in thread_main takes it. */
static int bu_sleep(void *o, double s)
{
	return wait_for(o, s, 1) || !vm_running(o);
}

static void bu_recent(void *o, char *out, size_t len)
{
	struct hooks *h = o;

	pthread_mutex_lock(&h->lock);
	lines_recent(&h->lines, 12, out, len);
	pthread_mutex_unlock(&h->lock);
}

static void bu_armed(void *o, int stage)
{
	struct hooks *h = o;

	if (h->o.armed)
		h->o.armed(h->o.armed_opaque, stage);
}

static void bring_up(struct hooks *h)
{
	const struct bringup *b = h->o.bringup;
	struct bringup_env env = { h->o.vsock, h->cancel_fd, h, bu_sleep, bu_recent, bu_armed,
				   h->o.verbose };
	struct err e;
	int rc = bringup_run(b, &env, &e);

	if (rc == -ECANCELED || !vm_running(h))
		return;
	if (rc)
		fail(h, e.msg);
	else if (b->wait_ready && !b->ready_text) /* pack: saved once ready */
		save_now(h, h->o.save_to, 1);
}

/* The watchdog gave up on a hook: the machine stops with its message. */
static void on_hung(void *opaque, const char *msg)
{
	struct hooks *h = opaque;

	pthread_mutex_lock(&h->lock);
	h->hung = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	fail(h, msg);
}

static void *thread_main(void *arg)
{
	struct hooks *h = arg;
	char line[LINES_MAX_LEN];

	pthread_setname_np(pthread_self(), "script");
	/* Started here, so it watches this thread's first hook too. Without
	 * it a library call that never ends would hang the machine's end. */
	if ((h->s[MACHINE] || h->s[USER]) &&
	    watchdog_start(&h->watchdog, pthread_self(), HOOK_CPU_LIMIT_S, on_hung, h))
		fprintf(stderr, "smolvm: no CPU watchdog for the hooks\r\n");
	if (h->o.restored && h->o.vsock)
		sync_agent(h);
	if (!h->failed && !call_hook(h, h->o.restored ? "after_restore" : "on_boot", NULL) &&
	    h->o.job && vm_running(h))
		start_job(h);
	if (!h->o.restored && h->o.bringup && !h->failed && vm_running(h))
		bring_up(h);
	for (;;) {
		int snap = 0, job_done = 0, have_line = 0;

		pthread_mutex_lock(&h->lock);
		for (;;) {
			have_line = has_hook(h, "on_console") && lines_next_console(&h->lines, line);
			snap = h->snapshot_due;
			job_done = h->job == JOB_DONE;
			if (have_line || snap || job_done || h->stopping)
				break;
			pthread_cond_wait(&h->cond, &h->lock);
		}
		h->snapshot_due = 0;
		if (job_done)
			h->job = JOB_NONE;
		int stopping = h->stopping;
		pthread_mutex_unlock(&h->lock);

		if (h->failed)
			have_line = snap = 0;
		if (have_line)
			call_hook(h, "on_console", line);
		if (snap)
			save_now(h, h->o.save_to, snap == 2);
		if (job_done && !h->failed) {
			if (h->o.job->keep_to && !h->o.job->e.msg[0])
				save_now(h, h->o.job->keep_to, 0);
			vm_request_stop(h->vm, VM_STOP_DONE, NULL);
		}
		if (stopping && !have_line && !snap && !job_done)
			break;
	}
	/* on_exit: once, here, so that all Lua runs on this thread (under the
	 * watchdog). The machine has stopped by now. */
	if (!h->failed)
		call_hook(h, "on_exit", stop_name(vm_stop_reason(h->vm)));
	pthread_mutex_lock(&h->lock);
	h->script_done = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int hooks_start(struct vm *vm, struct script *s, struct script *user,
		const struct hooks_opts *o, struct hooks **out, struct err *e)
{
	struct hooks *h = calloc(1, sizeof(*h));
	pthread_condattr_t ca;

	*out = NULL;
	if (!h)
		return err_set(e, -ENOMEM, "out of memory");
	h->vm = vm;
	h->s[MACHINE] = s;
	h->s[USER] = user;
	h->o = *o;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	h->cancel_fd = eventfd(0, EFD_CLOEXEC);
	if (h->cancel_fd < 0) {
		hooks_free(h);
		return err_set(e, -errno, "eventfd: %s", strerror(errno));
	}
	char **kept = o->kept ? kept_list(o->kept) : NULL;
	for (int k = 0; k < NSTATES; k++) {
		struct vm_object_info info = {
			o->name, o->restored, o->vars,
			o->vsock ? NULL : no_vsock,
			SMOLVM_AGENT_MAX_ARGS, kept };
		if (!h->s[k])
			continue;
		h->vmo[k] = vm_object_new(h->s[k], &vm_ops, h, &info, e);
		if (!h->vmo[k]) {
			kept_list_free(kept);
			hooks_free(h);
			return err_wrap(e, -ENOMEM, "the hooks' vm object");
		}
		for (unsigned i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
			if (script_has_hook(h->s[k], hook_names[i]))
				h->defined[k] |= 1u << i;
	}
	kept_list_free(kept);
	if (pthread_create(&h->thread, NULL, thread_main, h)) {
		hooks_free(h);
		return err_set(e, -EAGAIN, "cannot start the script thread");
	}
	h->thread_started = 1;
	*out = h;
	return 0;
}

int hooks_finish(struct hooks *h, struct err *e)
{
	uint64_t one = 1;
	int hung;

	if (!h)
		return 0;
	pthread_mutex_lock(&h->lock);
	h->stopping = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (write(h->cancel_fd, &one, sizeof(one)) < 0)
		perror("smolvm: eventfd");
	/* The script thread runs on_exit and ends, unless the watchdog
	 * gives up on it first. It starts the job thread: wait for it first. */
	pthread_mutex_lock(&h->lock);
	while (h->thread_started && !h->script_done && !h->hung)
		pthread_cond_wait(&h->cond, &h->lock);
	hung = h->hung;
	pthread_mutex_unlock(&h->lock);
	/* (its start on the script thread happened before script_done or hung,
	 * both read under h->lock) */
	watchdog_stop(&h->watchdog);
	if (h->thread_started && !hung)
		pthread_join(h->thread, NULL);
	else if (h->thread_started)
		pthread_detach(h->thread);
	if (h->job_started)
		pthread_join(h->job_thread, NULL);
	h->job_started = h->thread_started = 0;
	if (!hung)
		for (int k = 0; k < NSTATES; k++)
			vm_object_detach(h->vmo[k]);
	return h->failed ? err_set(e, hung ? -ETIMEDOUT : -EINVAL, "%s", h->err.msg) : 0;
}

int hooks_hung(struct hooks *h)
{
	int hung;

	pthread_mutex_lock(&h->lock);
	hung = h->hung;
	pthread_mutex_unlock(&h->lock);
	return hung;
}

void hooks_free(struct hooks *h)
{
	/* An abandoned script thread may still use h and its Lua state: both
	 * stay until the process exits. */
	if (!h || hooks_hung(h))
		return;
	for (int k = 0; k < NSTATES; k++)
		vm_object_detach(h->vmo[k]);
	if (h->have_conn)
		agent_close(&h->conn);
	if (h->cancel_fd >= 0)
		close(h->cancel_fd);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

/* ---- from the machine's threads ---------------------------------------------- */

/* On the vCPU's path for every console write: the line being written is
 * copied, and the script thread woken, only while a hook waits for it. */
void hooks_console_line(struct hooks *h, const char *line, int complete)
{
	pthread_mutex_lock(&h->lock);
	if (complete) {
		lines_complete(&h->lines, line);
		if (h->lines.waiting || has_hook(h, "on_console"))
			pthread_cond_broadcast(&h->cond);
	} else if (h->lines.waiting) {
		lines_partial(&h->lines, line);
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
}

int hooks_take_snapshot(struct hooks *h, int pack)
{
	if (!has_hook(h, "before_snapshot"))
		return 0;
	pthread_mutex_lock(&h->lock);
	if (pack || !h->snapshot_due) /* a SIGUSR1 never turns a pack into a mere save */
		h->snapshot_due = pack ? 2 : 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return 1;
}
