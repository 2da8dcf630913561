#include "script/vm_object.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "script/sandbox.h"
#include "script/script.h"

#define EXEC_OUT_MAX (16u << 20) /* per stream, for vm:exec() */
#define LINE_MAX_LEN 512

/* The box every method holds as its upvalue; ops is NULL once detached. */
struct vm_object {
	const struct vm_object_ops *ops;
	void *o;
	const char *no_exec;
	unsigned max_args;
};

static struct vm_object *self(lua_State *L)
{
	struct vm_object *v = lua_touserdata(L, lua_upvalueindex(1));

	if (!v || !v->ops)
		luaL_error(L, "this vm object's machine is gone");
	return v;
}

/* Seconds from a script: finite, clamped to a day. */
static double seconds_arg(lua_State *L, int idx, double def)
{
	double v = luaL_optnumber(L, idx, def);

	if (isnan(v) || v < 0)
		return luaL_argerror(L, idx, "a number of seconds, 0 or more");
	return v > 86400 ? 86400 : v;
}

static int nil_error(lua_State *L, const char *msg)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	return 2;
}

static int ok(lua_State *L)
{
	lua_pushboolean(L, 1);
	return 1;
}

static int l_console_write(lua_State *L)
{
	struct vm_object *v = self(L);
	size_t n;
	const char *p = luaL_checklstring(L, 2, &n);
	struct err e;

	if (v->ops->console_write(v->o, p, n, &e))
		return nil_error(L, e.msg);
	return ok(L);
}

/* string.find(line, pattern): 1 on a match, 0 if none, -1 with the error
 * on the stack (a bad pattern is the script's error, raised by the caller
 * once it has cleaned up). */
static int line_matches(lua_State *L, const char *line, int pattern_idx)
{
	struct err e;
	int found;

	lua_getglobal(L, "string");
	lua_getfield(L, -1, "find");
	lua_remove(L, -2);
	lua_pushstring(L, line);
	lua_pushvalue(L, pattern_idx);
	if (sandbox_pcall(L, 2, 1, 0, &e)) {
		lua_pushstring(L, e.msg);
		return -1;
	}
	found = !lua_isnil(L, -1);
	lua_pop(L, 1);
	return found;
}

static int wait_lines(lua_State *L, struct vm_object *v, double timeout, int whole)
{
	struct timespec dl;
	char line[LINE_MAX_LEN];

	deadline_after(&dl, timeout);
	for (;;) {
		int partial = 0;
		int got = v->ops->next_line(v->o, &dl, line, sizeof(line), &partial);

		if (got < 0)
			return nil_error(L, "the machine stopped");
		if (got == 0) {
			lua_pushnil(L);
			lua_pushfstring(L, "timeout: no console line matched \"%s\" in %f s",
					lua_tostring(L, 2), timeout);
			return 2;
		}
		if (partial && whole)
			continue; /* still being written: its end may change it */
		int m = line_matches(L, line, 2);
		if (m < 0)
			return -1;
		if (m) {
			v->ops->matched(v->o);
			lua_pushstring(L, line);
			return 1;
		}
	}
}

static int wait_console(lua_State *L, int whole)
{
	struct vm_object *v = self(L);
	double timeout = seconds_arg(L, 3, 10);
	int n;

	luaL_checkstring(L, 2);
	v->ops->wait_mode(v->o, 1);
	n = wait_lines(L, v, timeout, whole);
	v->ops->wait_mode(v->o, 0);
	return n < 0 ? lua_error(L) : n;
}

/* vm:wait_console(pattern [, timeout_s = 10]): the first console line
 * (or the line being written, such as a prompt) printed since this hook
 * call began, or since the last match, that matches the Lua pattern. */
static int l_wait_console(lua_State *L) { return wait_console(L, 0); }

/* vm:wait_line(pattern [, timeout_s = 10]): the same, complete lines only
 * (a number being printed is not read half-way). */
static int l_wait_line(lua_State *L) { return wait_console(L, 1); }

struct buf {
	char *p;
	size_t n, cap;
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

	if (b->n + n > EXEC_OUT_MAX)
		n = EXEC_OUT_MAX - b->n;
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
static char **argv_list(lua_State *L, int idx, unsigned max)
{
	lua_Integer len = luaL_len(L, idx);
	char **v = calloc(1, sizeof(*v));
	size_t n = 0;

	for (lua_Integer i = 1; v && i <= len && i <= (lua_Integer)max; i++) {
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
	struct vm_object *v = self(L);
	const char *sh[] = { "/bin/sh", "-c", NULL, NULL };
	struct exec_call *c;
	struct vm_exec_req req = { .out = collect_out, .timeout_ms = 60000 };
	struct vm_exec_status st;
	struct err e;

	if (v->no_exec)
		return nil_error(L, v->no_exec);
	lua_settop(L, 3);
	c = lua_newuserdatauv(L, sizeof(*c), 0); /* index 4 */
	memset(c, 0, sizeof(*c));
	luaL_setmetatable(L, EXEC_CALL_MT);
	req.out_opaque = c;
	if (lua_type(L, 2) == LUA_TSTRING) {
		sh[2] = lua_tostring(L, 2);
	} else {
		luaL_checktype(L, 2, LUA_TTABLE);
		c->argv = argv_list(L, 2, v->max_args);
		if (!c->argv)
			return luaL_error(L, "out of memory");
		if (!c->argv[0] || !c->argv[0][0])
			return luaL_argerror(L, 2, "empty command");
	}
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		/* The values stay on the stack (5, 6) while they are used. */
		if (lua_getfield(L, 3, "stdin") == LUA_TSTRING)
			req.in = lua_tolstring(L, -1, &req.in_len);
		if (lua_getfield(L, 3, "cwd") == LUA_TSTRING)
			req.cwd = lua_tostring(L, -1);
		if (lua_getfield(L, 3, "env") == LUA_TTABLE && !(c->env = env_list(L, lua_gettop(L))))
			return luaL_error(L, "out of memory");
		if (lua_getfield(L, 3, "timeout") != LUA_TNIL) {
			double t = seconds_arg(L, lua_gettop(L), 60);
			req.timeout_ms = t > 0 && t < 0.001 ? 1 : (int)(t * 1000);
		}
	}
	req.argv = c->argv ? (const char *const *)c->argv : sh;
	req.env = (const char *const *)c->env;
	if (v->ops->exec(v->o, &req, &st, &e))
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

/* vm:snapshot(path): saves the running machine. A bundle's hooks run on
 * whoever restores it, so the path is confined: a relative name without
 * "..", ending in .smolmachine. */
static int l_snapshot(lua_State *L)
{
	struct vm_object *v = self(L);
	const char *path = luaL_checkstring(L, 2);
	size_t n = strlen(path);
	struct err e;

	if (path[0] == '/' || strstr(path, "..") || n < 12 ||
	    strcmp(path + n - 12, ".smolmachine"))
		return luaL_argerror(L, 2, "a relative path without \"..\" ending in .smolmachine");
	if (v->ops->snapshot(v->o, path, &e))
		return nil_error(L, e.msg);
	return ok(L);
}

static int pause_or_resume(lua_State *L, int pause)
{
	struct vm_object *v = self(L);
	struct err e;

	if (v->ops->pause(v->o, pause, &e))
		return nil_error(L, e.msg);
	return ok(L);
}

static int l_pause(lua_State *L) { return pause_or_resume(L, 1); }
static int l_resume(lua_State *L) { return pause_or_resume(L, 0); }

static int l_stop(lua_State *L)
{
	struct vm_object *v = self(L);

	v->ops->stop(v->o);
	return 0;
}

/* vm:sleep(seconds): a pause in the hook (ends early if the machine stops). */
static int l_sleep(lua_State *L)
{
	struct vm_object *v = self(L);

	luaL_checknumber(L, 2);
	v->ops->sleep(v->o, seconds_arg(L, 2, 0));
	return 0;
}

/* vm:keep(key, value): kept in the next bundle saved (value nil: dropped);
 * vm.kept follows. */
static int l_keep(lua_State *L)
{
	struct vm_object *v = self(L);
	const char *key = luaL_checkstring(L, 2), *val = NULL;
	size_t len = 0;
	struct err e;

	if (!lua_isnoneornil(L, 3)) {
		if (lua_type(L, 3) != LUA_TSTRING && lua_type(L, 3) != LUA_TNUMBER)
			return luaL_argerror(L, 3, "a string or a number (or nil)");
		val = lua_tolstring(L, 3, &len);
	}
	if (v->ops->keep(v->o, key, val, len, &e))
		return luaL_error(L, "vm:keep: %s", e.msg);
	/* vm.kept[key] = value, in this state */
	lua_getfield(L, 1, "kept");
	if (lua_istable(L, -1)) {
		lua_pushstring(L, key);
		if (val)
			lua_pushlstring(L, val, len);
		else
			lua_pushnil(L);
		lua_rawset(L, -3);
	}
	return 0;
}

struct build_args {
	const struct vm_object_ops *ops;
	void *o;
	const struct vm_object_info *info;
	struct vm_object *v;
};

/* Builds the object; runs protected (allocations may hit the script's
 * memory cap). */
static int build_vm(lua_State *L)
{
	struct build_args *a = lua_touserdata(L, 1);
	const struct vm_object_info *info = a->info;
	static const luaL_Reg methods[] = {
		{ "console_write", l_console_write }, { "wait_console", l_wait_console },
		{ "wait_line", l_wait_line },
		{ "exec", l_exec },                   { "snapshot", l_snapshot },
		{ "pause", l_pause },                 { "resume", l_resume },
		{ "stop", l_stop },                   { "sleep", l_sleep },
		{ "keep", l_keep },
		{ NULL, NULL },
	};
	struct vm_object *v;

	if (luaL_newmetatable(L, EXEC_CALL_MT)) {
		lua_pushcfunction(L, exec_call_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	lua_newtable(L);
	v = lua_newuserdatauv(L, sizeof(*v), 0);
	v->ops = a->ops;
	v->o = a->o;
	v->no_exec = info->no_exec;
	v->max_args = info->max_args;
	luaL_setfuncs(L, methods, 1);
	lua_pushstring(L, info->name ? info->name : "");
	lua_setfield(L, -2, "name");
	lua_pushboolean(L, info->restored);
	lua_setfield(L, -2, "restored");
	lua_newtable(L);
	for (size_t i = 0; info->vars && info->vars[i]; i++) {
		const char *eq = strchr(info->vars[i], '=');
		if (!eq)
			continue;
		lua_pushlstring(L, info->vars[i], (size_t)(eq - info->vars[i]));
		lua_pushstring(L, eq + 1);
		lua_settable(L, -3);
	}
	lua_setfield(L, -2, "vars");
	lua_newtable(L);
	for (size_t i = 0; info->kept && info->kept[i] && info->kept[i + 1]; i += 2) {
		lua_pushstring(L, info->kept[i + 1]);
		lua_setfield(L, -2, info->kept[i]);
	}
	lua_setfield(L, -2, "kept");
	lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_VM_KEY);
	a->v = v;
	return 0;
}

struct vm_object *vm_object_new(struct script *s, const struct vm_object_ops *ops, void *o,
				const struct vm_object_info *info, struct err *e)
{
	struct build_args a = { ops, o, info, NULL };
	lua_State *L = script_lua(s);

	lua_pushcfunction(L, build_vm);
	lua_pushlightuserdata(L, &a);
	if (sandbox_pcall(L, 1, 0, 0, e))
		return NULL;
	return a.v;
}

void vm_object_detach(struct vm_object *v)
{
	if (v)
		v->ops = NULL;
}
