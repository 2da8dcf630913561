#include "session/hooks.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "snapshot/snapshot.h"
#include "machine/vm.h"

#define RING 256           /* console lines kept for on_console/wait_console */
#define LINE_MAX_LEN 512
#define EXEC_OUT_MAX (16u << 20) /* per stream, for vm:exec() */
#define AGENT_TIMEOUT_MS 30000
#define SYNC_OPTIONAL_TIMEOUT_MS 5000
#define HOOK_CPU_LIMIT_S 10

enum job_state { JOB_NONE, JOB_RUNNING, JOB_DONE };

struct hooks {
	struct vm *vm;
	struct script *s;
	struct hooks_opts o;
	pthread_t thread, job_thread;
	int thread_started, job_started;
	int cancel_fd; /* eventfd: readable once the machine stops */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stopping;
	int snapshot_due;   /* 1 = SIGUSR1, 2 = pack */
	enum job_state job;

	/* console lines: seq n lives in ring[n % RING] while n + RING > next */
	char ring[RING][LINE_MAX_LEN];
	uint64_t next_seq;
	char partial[LINE_MAX_LEN];
	uint64_t partial_gen;
	/* script thread only */
	uint64_t delivered; /* next line for on_console */
	uint64_t cursor;    /* next line for wait_console in this hook call */
	uint64_t partial_seen;
	int waiting;        /* in vm:wait_console: the partial line matters */
	int failed;
	int paused;          /* by vm:pause() */
	struct hooks **box;  /* the vm object's handle on us: NULL once we are gone */
	struct err err;      /* the first hook failure */
	struct agent_conn conn; /* the sync's connection, handed to the job */
	int have_conn;
	/* the watchdog (under lock) */
	pthread_t watchdog;
	int watchdog_started, watch_done, script_done, hung, in_hook;
	struct timespec hook_cpu0;
	char hook_name[32];
	/* which hooks the script defines, read once at start: other threads
	 * ask, and the Lua state belongs to the script thread */
	unsigned defined;
};

static const char *const hook_names[] = { SCRIPT_HOOKS };

/* ---- helpers ------------------------------------------------------------ */

static int has_hook(struct hooks *h, const char *name)
{
	for (unsigned i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
		if (!strcmp(hook_names[i], name))
			return (h->defined >> i) & 1;
	return 0;
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

/* The vm object holds a box, not the pointer itself: a vm kept in a
 * global (or reached from a __gc finalizer) outlives its machine. */
static struct hooks *self(lua_State *L)
{
	struct hooks **box = lua_touserdata(L, lua_upvalueindex(1));

	if (!box || !*box)
		luaL_error(L, "this vm object's machine is gone");
	return *box;
}

static int vm_running(struct hooks *h)
{
	return vm_stop_reason(h->vm) == VM_RUNNING;
}

/* Seconds from a script: finite, clamped to a day. */
static double seconds_arg(lua_State *L, int idx, double def)
{
	double v = luaL_optnumber(L, idx, def);

	if (isnan(v) || v < 0)
		return luaL_argerror(L, idx, "a number of seconds, 0 or more");
	return v > 86400 ? 86400 : v;
}

/* h->cond runs on CLOCK_MONOTONIC (hooks_start). */
static void deadline_in(struct timespec *ts, double s)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)s;
	ts->tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static int nil_error(lua_State *L, const char *msg)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	return 2;
}

/* ---- vm object ---------------------------------------------------------- */

struct write_args {
	const char *p;
	size_t n, took;
};

static int do_console_write(struct vm *vm, void *arg, struct err *e)
{
	struct write_args *w = arg;
	struct console *c = &vm->console;
	size_t room = sizeof(c->pending) - c->pending_len;

	(void)e;
	w->took = w->n < room ? w->n : room;
	memcpy(c->pending + c->pending_len, w->p, w->took);
	c->pending_len += w->took;
	console_deliver(c);
	return 0;
}

static int l_console_write(lua_State *L)
{
	struct hooks *h = self(L);
	size_t n;
	const char *p = luaL_checklstring(L, 2, &n);
	struct err e;

	while (n) {
		struct write_args w = { p, n, 0 };
		if (vm_call(h->vm, do_console_write, &w, &e))
			return nil_error(L, e.msg);
		p += w.took;
		n -= w.took;
		if (n) { /* the device has not taken the last batch yet */
			struct timespec ts = { 0, 5000000 };
			nanosleep(&ts, NULL);
		}
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* string.find(line, pattern) in the script's state (pattern errors are
 * the script's errors). */
/* string.find(line, pattern) in the script's state: 1 on a match, 0 if
 * none, -1 with the error on the stack (a bad pattern is the script's
 * error, raised by the caller once it has cleaned up). */
static int line_matches(lua_State *L, const char *line, int pattern_idx)
{
	int found;

	lua_getglobal(L, "string");
	lua_getfield(L, -1, "find");
	lua_remove(L, -2);
	lua_pushstring(L, line);
	lua_pushvalue(L, pattern_idx);
	if (lua_pcall(L, 2, 1, 0) != LUA_OK)
		return -1;
	found = !lua_isnil(L, -1);
	lua_pop(L, 1);
	return found;
}

static int wait_timeout(lua_State *L, double timeout)
{
	lua_pushnil(L);
	lua_pushfstring(L, "timeout: no console line matched \"%s\" in %f s", lua_tostring(L, 2),
			timeout);
	return 2;
}

static int wait_lines(lua_State *L, struct hooks *h, double timeout)
{
	struct timespec dl, now;
	char line[LINE_MAX_LEN];

	deadline_in(&dl, timeout);
	for (;;) {
		int have = 0, partial = 0, timed_out = 0;
		uint64_t seq = 0;

		/* A chatty guest never lets the wait below time out. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
			return wait_timeout(L, timeout);
		pthread_mutex_lock(&h->lock);
		if (h->cursor + RING < h->next_seq)
			h->cursor = h->next_seq - RING; /* lost lines: the oldest kept */
		if (h->cursor < h->next_seq) {
			seq = h->cursor++;
			memcpy(line, h->ring[seq % RING], sizeof(line));
			have = 1;
		} else if (h->partial[0] && h->partial_seen != h->partial_gen) {
			h->partial_seen = h->partial_gen;
			memcpy(line, h->partial, sizeof(line));
			have = partial = 1;
			seq = h->next_seq;
		} else if (h->stopping) {
			pthread_mutex_unlock(&h->lock);
			return nil_error(L, "the machine stopped");
		} else {
			timed_out = pthread_cond_timedwait(&h->cond, &h->lock, &dl) == ETIMEDOUT;
		}
		pthread_mutex_unlock(&h->lock);
		if (timed_out)
			return wait_timeout(L, timeout);
		int m = have ? line_matches(L, line, 2) : 0;
		if (m < 0)
			return -1;
		if (m) {
			/* A matched prompt is not matched again once its line ends. */
			if (partial && h->cursor <= seq)
				h->cursor = seq + 1;
			lua_pushstring(L, line);
			return 1;
		}
	}
}

static void set_waiting(struct hooks *h, int on)
{
	pthread_mutex_lock(&h->lock);
	h->waiting = on;
	h->partial[0] = 0; /* only a line being written from now on counts */
	pthread_mutex_unlock(&h->lock);
}

/* vm:wait_console(pattern [, timeout_s = 10]): the first console line
 * (or the line being written, such as a prompt) printed since this hook
 * call began, or since the last match, that matches the Lua pattern. */
static int l_wait_console(lua_State *L)
{
	struct hooks *h = self(L);
	double timeout = seconds_arg(L, 3, 10);
	int n;

	luaL_checkstring(L, 2);
	set_waiting(h, 1);
	n = wait_lines(L, h, timeout);
	set_waiting(h, 0);
	return n < 0 ? lua_error(L) : n;
}

struct buf {
	char *p;
	size_t n, cap;
	int truncated;
};

/* What one vm:exec() allocates, in a userdata whose __gc frees it: a Lua
 * error anywhere in between (memory limit, __tostring) leaks nothing. */
struct exec_call {
	struct buf out[2];
	char **argv, **env;
};
#define EXEC_CALL_MT "smolvm.exec_call"

static void free_list(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int exec_call_gc(lua_State *L)
{
	struct exec_call *c = lua_touserdata(L, 1);

	free(c->out[0].p);
	free(c->out[1].p);
	free_list(c->argv);
	free_list(c->env);
	memset(c, 0, sizeof(*c));
	return 0;
}

static int collect_out(void *opaque, int stream, const void *p, size_t n)
{
	struct buf *b = &((struct exec_call *)opaque)->out[stream == 1 ? 0 : 1];

	if (b->n + n > EXEC_OUT_MAX) {
		b->truncated = 1;
		n = EXEC_OUT_MAX - b->n;
	}
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return 0;
}

static int list_add(char ***v, size_t *n, char *s)
{
	char **nv = s ? realloc(*v, (*n + 2) * sizeof(**v)) : NULL;

	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	*v = nv;
	nv[(*n)++] = s;
	nv[*n] = NULL;
	return 0;
}

/* argv from the list t[1..#t], in order. */
static char **argv_list(lua_State *L, int idx)
{
	lua_Integer len = luaL_len(L, idx);
	char **v = calloc(1, sizeof(*v));
	size_t n = 0;

	for (lua_Integer i = 1; v && i <= len && i <= SMOLVM_AGENT_MAX_ARGS; i++) {
		lua_geti(L, idx, i);
		if (list_add(&v, &n, strdup(luaL_tolstring(L, -1, NULL))))
			v = NULL;
		lua_pop(L, 2);
	}
	return v;
}

/* "K=V" for every string key of the table at idx. */
static char **env_list(lua_State *L, int idx)
{
	char **v = calloc(1, sizeof(*v));
	size_t n = 0;

	lua_pushnil(L);
	while (v && lua_next(L, idx)) {
		int top = lua_gettop(L);
		if (lua_type(L, -2) == LUA_TSTRING) {
			char *kv = NULL;
			const char *val = luaL_tolstring(L, -1, NULL);
			if (asprintf(&kv, "%s=%s", lua_tostring(L, -3), val) < 0)
				kv = NULL;
			if (list_add(&v, &n, kv))
				v = NULL;
		}
		lua_settop(L, top - 1); /* keep the key for lua_next */
	}
	return v;
}

/* vm:exec(cmd [, {stdin=, env=, cwd=, timeout=}]): cmd is a shell command
 * line or an argv list. Returns {status=, signal=, stdout=, stderr=,
 * timed_out=} or nil and a message (no agent, no such program, ...). */
static int l_exec(lua_State *L)
{
	struct hooks *h = self(L);
	const char *sh[] = { "/bin/sh", "-c", NULL, NULL };
	const char *cwd = NULL;
	struct exec_call *c;
	struct agent_exec_io io = { .in_fd = -1, .out = collect_out, .timeout_ms = 60000 };
	struct agent_conn a;
	struct agent_status st;
	struct err e;
	int gerr, rc;

	if (!h->o.vsock)
		return nil_error(L, "this machine has no virtio-vsock device, which the guest agent needs");
	lua_settop(L, 3);
	c = lua_newuserdatauv(L, sizeof(*c), 0); /* index 4 */
	memset(c, 0, sizeof(*c));
	luaL_setmetatable(L, EXEC_CALL_MT);
	io.opaque = c;
	if (lua_type(L, 2) == LUA_TSTRING) {
		sh[2] = lua_tostring(L, 2);
	} else {
		luaL_checktype(L, 2, LUA_TTABLE);
		c->argv = argv_list(L, 2);
		if (!c->argv)
			return luaL_error(L, "out of memory");
		if (!c->argv[0] || !c->argv[0][0])
			return luaL_argerror(L, 2, "empty command");
	}
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		/* The values stay on the stack (5, 6) while they are used. */
		if (lua_getfield(L, 3, "stdin") == LUA_TSTRING)
			io.in_buf = lua_tolstring(L, -1, &io.in_len);
		if (lua_getfield(L, 3, "cwd") == LUA_TSTRING)
			cwd = lua_tostring(L, -1);
		if (lua_getfield(L, 3, "env") == LUA_TTABLE && !(c->env = env_list(L, lua_gettop(L))))
			return luaL_error(L, "out of memory");
		if (lua_getfield(L, 3, "timeout") != LUA_TNIL) {
			double t = seconds_arg(L, lua_gettop(L), 60);
			io.timeout_ms = t > 0 && t < 0.001 ? 1 : (int)(t * 1000);
		}
	}
	rc = agent_connect(&a, h->o.vsock, AGENT_TIMEOUT_MS, h->cancel_fd, &e);
	if (!rc)
		rc = agent_exec(&a, cwd, c->argv ? (const char *const *)c->argv : sh,
				(const char *const *)c->env, &io, &st, &gerr, &e);
	agent_close(&a);
	if (rc)
		return nil_error(L, e.msg);
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, st.value);
	lua_setfield(L, -2, st.signaled ? "signal" : "status");
	lua_pushboolean(L, st.timed_out);
	lua_setfield(L, -2, "timed_out");
	lua_pushlstring(L, c->out[0].p ? c->out[0].p : "", c->out[0].n);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, c->out[1].p ? c->out[1].p : "", c->out[1].n);
	lua_setfield(L, -2, "stderr");
	return 1;
}

struct save_args {
	const char *path;
	int then_stop;
	int repause; /* a hook had paused it: it stays paused */
};

static int do_save(struct vm *vm, void *arg, struct err *e)
{
	struct save_args *s = arg;
	int rc;

	if (s->repause)
		vm_resume(vm);
	rc = snapshot_save(vm, s->path, s->then_stop, e);
	if (s->repause && !s->then_stop) {
		struct err pe;
		if (vm_pause(vm, &pe) && !rc)
			rc = err_set(e, -EIO, "%s", pe.msg);
	}
	return rc;
}

/* vm:snapshot(path): saves the running machine. A bundle's hooks run on
 * whoever restores it, so the path is confined: a relative name without
 * "..", ending in .smolmachine. */
static int l_snapshot(lua_State *L)
{
	struct hooks *h = self(L);
	const char *path = luaL_checkstring(L, 2);
	size_t n = strlen(path);
	struct save_args a = { path, 0, h->paused };
	struct err e;

	if (path[0] == '/' || strstr(path, "..") || n < 12 ||
	    strcmp(path + n - 12, ".smolmachine"))
		return luaL_argerror(L, 2, "a relative path without \"..\" ending in .smolmachine");
	if (vm_call(h->vm, do_save, &a, &e))
		return nil_error(L, e.msg);
	lua_pushboolean(L, 1);
	return 1;
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

/* pause/resume: a second pause (or resume) changes nothing. */
static int pause_or_resume(lua_State *L, int pause)
{
	struct hooks *h = self(L);
	struct err e;

	if (h->paused != pause) {
		if (vm_call(h->vm, pause ? do_pause : do_resume, NULL, &e))
			return nil_error(L, e.msg);
		h->paused = pause;
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_pause(lua_State *L) { return pause_or_resume(L, 1); }
static int l_resume(lua_State *L) { return pause_or_resume(L, 0); }

static int l_stop(lua_State *L)
{
	vm_request_stop(self(L)->vm, VM_STOP_DONE, NULL);
	return 0;
}

/* vm:sleep(seconds): a pause in the hook (ends early if the machine stops). */
static int l_sleep(lua_State *L)
{
	struct hooks *h = self(L);
	struct timespec dl;

	luaL_checknumber(L, 2);
	deadline_in(&dl, seconds_arg(L, 2, 0));
	pthread_mutex_lock(&h->lock);
	while (!h->stopping && pthread_cond_timedwait(&h->cond, &h->lock, &dl) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

#define VM_KEY "smolvm.vm"

static void push_vm(struct hooks *h)
{
	lua_State *L = script_lua(h->s);

	lua_getfield(L, LUA_REGISTRYINDEX, VM_KEY);
}

static void make_vm(struct hooks *h)
{
	static const luaL_Reg methods[] = {
		{ "console_write", l_console_write }, { "wait_console", l_wait_console },
		{ "exec", l_exec },                   { "snapshot", l_snapshot },
		{ "pause", l_pause },                 { "resume", l_resume },
		{ "stop", l_stop },                   { "sleep", l_sleep },
		{ NULL, NULL },
	};
	lua_State *L = script_lua(h->s);

	if (luaL_newmetatable(L, EXEC_CALL_MT)) {
		lua_pushcfunction(L, exec_call_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	lua_newtable(L);
	h->box = lua_newuserdatauv(L, sizeof(*h->box), 0);
	*h->box = h;
	luaL_setfuncs(L, methods, 1);
	lua_pushstring(L, h->vm->cfg->name ? h->vm->cfg->name : "");
	lua_setfield(L, -2, "name");
	lua_pushboolean(L, h->o.restored);
	lua_setfield(L, -2, "restored");
	lua_newtable(L);
	for (size_t i = 0; h->o.vars && h->o.vars[i]; i++) {
		const char *eq = strchr(h->o.vars[i], '=');
		if (!eq)
			continue;
		lua_pushlstring(L, h->o.vars[i], (size_t)(eq - h->o.vars[i]));
		lua_pushstring(L, eq + 1);
		lua_settable(L, -3);
	}
	lua_setfield(L, -2, "vars");
	lua_setfield(L, LUA_REGISTRYINDEX, VM_KEY);
}

/* ---- the thread --------------------------------------------------------- */

/* Calls a hook with vm (and an optional string); a failure stops the
 * machine with the message. Returns 0 when it ran fine or is not there. */
static int call_hook(struct hooks *h, const char *name, const char *arg)
{
	struct err e;
	int rc;

	if (!has_hook(h, name))
		return 0;
	pthread_mutex_lock(&h->lock);
	h->cursor = h->next_seq;
	h->in_hook = 1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &h->hook_cpu0);
	snprintf(h->hook_name, sizeof(h->hook_name), "%s", name);
	pthread_mutex_unlock(&h->lock);
	push_vm(h);
	if (arg)
		lua_pushstring(script_lua(h->s), arg);
	rc = script_call_hook(h->s, name, arg ? 2 : 1, &e);
	pthread_mutex_lock(&h->lock);
	h->in_hook = 0;
	pthread_mutex_unlock(&h->lock);
	if (rc)
		fail(h, e.msg);
	return rc;
}

static void sync_agent(struct hooks *h)
{
	struct agent_conn a;
	struct err e;
	double t0 = vm_now_ms();
	/* run: a guest without an agent must not hold after_restore long */
	int timeout = h->o.sync_required ? AGENT_TIMEOUT_MS : SYNC_OPTIONAL_TIMEOUT_MS;
	int rc = agent_connect(&a, h->o.vsock, timeout, h->cancel_fd, &e);

	if (!rc)
		rc = agent_sync(&a, timeout, &e);
	if (!rc && h->o.job) {
		h->conn = a;
		h->have_conn = 1;
	} else {
		agent_close(&a);
	}
	if (!rc && h->o.verbose)
		fprintf(stderr, "smolvm: guest agent: RNG reseeded and clock set in %.1f ms\r\n",
			vm_now_ms() - t0);
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
	struct save_args a = { path, then_stop, h->paused };
	struct err e;

	if (!vm_running(h) || call_hook(h, "before_snapshot", NULL))
		return;
	if (vm_call(h->vm, do_save, &a, &e) && vm_running(h))
		fail(h, e.msg);
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

static void *thread_main(void *arg)
{
	struct hooks *h = arg;
	char line[LINE_MAX_LEN];

	pthread_setname_np(pthread_self(), "script");
	if (h->o.restored && h->o.vsock)
		sync_agent(h);
	if (!h->failed && !call_hook(h, h->o.restored ? "after_restore" : "on_boot", NULL) &&
	    h->o.job && vm_running(h)) {
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
	for (;;) {
		int snap = 0, job_done = 0, have_line = 0;

		pthread_mutex_lock(&h->lock);
		for (;;) {
			if (h->delivered + RING < h->next_seq)
				h->delivered = h->next_seq - RING;
			have_line = has_hook(h, "on_console") && h->delivered < h->next_seq;
			snap = h->snapshot_due;
			job_done = h->job == JOB_DONE;
			if (have_line || snap || job_done || h->stopping)
				break;
			pthread_cond_wait(&h->cond, &h->lock);
		}
		if (have_line)
			memcpy(line, h->ring[h->delivered++ % RING], sizeof(line));
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
			save_now(h, h->vm->opts.save_to, snap == 2);
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

/* The instruction budget cannot see time spent inside one C function of
 * the Lua library (string.find with a pathological pattern on a long
 * string). The watchdog measures the script thread's CPU time per hook
 * call: past HOOK_CPU_LIMIT_S the machine stops with a message, and the
 * thread, which cannot be interrupted, is abandoned to the process exit. */
static void *watchdog_main(void *arg)
{
	struct hooks *h = arg;
	clockid_t cid;
	int have_clock = pthread_getcpuclockid(h->thread, &cid) == 0;

	pthread_setname_np(pthread_self(), "watchdog");
	pthread_mutex_lock(&h->lock);
	while (!h->watch_done && have_clock) {
		struct timespec dl, now;
		deadline_in(&dl, 0.5);
		pthread_cond_timedwait(&h->cond, &h->lock, &dl);
		if (h->watch_done || !h->in_hook || clock_gettime(cid, &now))
			continue;
		double used = (double)(now.tv_sec - h->hook_cpu0.tv_sec) +
			      (now.tv_nsec - h->hook_cpu0.tv_nsec) / 1e9;
		if (used > HOOK_CPU_LIMIT_S) {
			char msg[256];
			snprintf(msg, sizeof(msg),
				 "hook %s: still running after %d s of CPU time (a library call "
				 "that never ends, such as a pathological string pattern?)",
				 h->hook_name, HOOK_CPU_LIMIT_S);
			h->hung = 1;
			pthread_cond_broadcast(&h->cond);
			pthread_mutex_unlock(&h->lock);
			fail(h, msg);
			return NULL;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int hooks_start(struct vm *vm, struct script *s, const struct hooks_opts *o,
		struct hooks **out, struct err *e)
{
	struct hooks *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return err_set(e, -ENOMEM, "out of memory");
	h->vm = vm;
	h->s = s;
	h->o = *o;
	pthread_condattr_t ca;
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
	if (s) {
		make_vm(h);
		for (unsigned i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
			if (script_has_hook(s, hook_names[i]))
				h->defined |= 1u << i;
	}
	vm->hooks = h;
	if (pthread_create(&h->thread, NULL, thread_main, h)) {
		vm->hooks = NULL;
		hooks_free(h);
		return err_set(e, -EAGAIN, "cannot start the script thread");
	}
	h->thread_started = 1;
	if (s && !pthread_create(&h->watchdog, NULL, watchdog_main, h))
		h->watchdog_started = 1;
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
	h->watch_done = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (h->watchdog_started)
		pthread_join(h->watchdog, NULL);
	if (h->thread_started && !hung)
		pthread_join(h->thread, NULL);
	else if (h->thread_started)
		pthread_detach(h->thread);
	if (h->job_started)
		pthread_join(h->job_thread, NULL);
	h->job_started = h->thread_started = h->watchdog_started = 0;
	if (h->box && !hung)
		*h->box = NULL;
	h->vm->hooks = NULL;
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
	if (h->box)
		*h->box = NULL;
	if (h->have_conn)
		agent_close(&h->conn);
	if (h->cancel_fd >= 0)
		close(h->cancel_fd);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

/* ---- from the machine's threads ------------------------------------------ */

/* On the vCPU's path for every console write: the line being written is
 * copied, and the script thread woken, only while a hook waits for it. */
void hooks_console_line(struct hooks *h, const char *line, int complete)
{
	pthread_mutex_lock(&h->lock);
	if (complete) {
		snprintf(h->ring[h->next_seq % RING], LINE_MAX_LEN, "%s", line);
		h->next_seq++;
		h->partial[0] = 0;
		if (h->waiting || has_hook(h, "on_console"))
			pthread_cond_broadcast(&h->cond);
	} else if (h->waiting) {
		snprintf(h->partial, sizeof(h->partial), "%s", line);
		h->partial_gen++;
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
