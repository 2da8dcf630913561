#include "script/script.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "script/declare.h"
#include "script/sandbox.h"

struct script {
	lua_State *L;
	struct sandbox sb;
	char *name;
};

static const char *const hook_names[] = { SCRIPT_HOOKS };

/* A function named like a hook but not one is a typo that would
 * otherwise never run: refuse it. */
static int check_hook_names(lua_State *L, const char *name, struct err *e)
{
	static const char *const prefixes[] = { "on_", "before_", "after_" };
	int rc = 0;

	lua_pushglobaltable(L);
	lua_pushnil(L);
	while (!rc && lua_next(L, -2)) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int hooky = 0, known = 0;
		for (size_t i = 0; k && i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
			hooky |= !strncmp(k, prefixes[i], strlen(prefixes[i]));
		for (size_t i = 0; k && i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
			known |= !strcmp(k, hook_names[i]);
		if (hooky && known && !lua_isfunction(L, -1))
			rc = err_set(e, -EINVAL, "%s: %s must be a function, got %s", name, k,
				     luaL_typename(L, -1));
		else if (hooky && !known && lua_isfunction(L, -1))
			rc = err_set(e, -EINVAL,
				     "%s: function %s looks like a hook but is not one (hooks: %s)",
				     name, k, SCRIPT_HOOK_LIST);
		lua_pop(L, 1);
	}
	if (rc)
		lua_pop(L, 1);
	lua_pop(L, 1);
	return rc;
}

void script_close(struct script *s)
{
	if (!s)
		return;
	/* Closing runs the script's __gc finalizers: under a fresh budget,
	 * so a finalizer that never ends is stopped like any other code. */
	if (s->L) {
		sandbox_reset_budget(s->L, &s->sb);
		lua_close(s->L);
	}
	free(s->name);
	free(s);
}

int script_open_hooks(const char *path, struct script **out, struct err *e)
{
	struct script *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s)
		s->L = sandbox_new(&s->sb);
	if (!s || !s->L || !(s->name = strdup(path))) {
		script_close(s);
		return err_set(e, -ENOMEM, "out of memory");
	}
	rc = script_load_hooks(s, path, e);
	if (rc) {
		script_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int script_open(const char *name, const char *src, size_t len, struct machine_config *cfg,
		struct script **out, struct err *e)
{
	struct script *s = calloc(1, sizeof(*s));
	struct vctx v = { 0 };
	char chunk[512], *tmp;
	lua_State *L;
	int rc;

	if (out)
		*out = NULL;
	memset(cfg, 0, sizeof(*cfg));
	cfg->cpus = MACHINE_DEFAULT_CPUS;
	cfg->memory = MACHINE_DEFAULT_MEMORY;
	cfg->script = strdup(name);
	cfg->script_src = malloc(len + 1);
	if (cfg->script_src) {
		memcpy(cfg->script_src, src, len);
		cfg->script_src[len] = 0;
		cfg->script_len = len;
	}
	L = s ? sandbox_new(&s->sb) : NULL;
	if (s) {
		s->L = L;
		s->name = strdup(name);
	}
	if (!L || !s->name || !cfg->script || !cfg->script_src) {
		script_close(s);
		machine_config_free(cfg);
		return err_set(e, -ENOMEM, "out of memory");
	}
	tmp = strdup(name);
	v.dir = tmp ? strdup(dirname(tmp)) : NULL;
	free(tmp);
	v.L = L;
	v.name = name;
	v.src = src;
	v.src_len = len;
	v.e = e;

	snprintf(chunk, sizeof(chunk), "@%s", name);
	if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) {
		rc = err_set(e, -EINVAL, "%s", lua_tostring(L, -1));
		goto out;
	}
	rc = sandbox_pcall(L, 0, 0, 1, e);
	if (rc)
		goto out;
	if (lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY ".line") == LUA_TNUMBER)
		v.line = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY) != LUA_TTABLE) {
		rc = err_set(e, -EINVAL, "%s: the script never calls machine { ... }", name);
		goto out;
	}
	lua_pop(L, 1);
	struct validate_args a = { &v, cfg, 0 };
	lua_pushcfunction(L, declare_validate);
	lua_pushlightuserdata(L, &a);
	rc = sandbox_pcall(L, 1, 0, 1, e);
	if (!rc)
		rc = a.rc;
	if (!rc)
		rc = check_hook_names(L, name, e);
out:
	free(v.dir);
	if (rc || !out) {
		script_close(s);
	} else {
		*out = s;
	}
	if (rc)
		machine_config_free(cfg);
	return rc;
}

int script_load_machine_buffer(const char *name, const char *src, size_t len,
			       struct machine_config *cfg, struct err *e)
{
	return script_open(name, src, len, cfg, NULL, e);
}

/* Reads a script file of at most 1 MiB; *buf is NUL-terminated. */
static int read_script(const char *path, char **buf, size_t *len, struct err *e)
{
	FILE *f = fopen(path, "rb");
	long n;

	*buf = NULL;
	if (!f)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) ||
	    fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return err_set(e, -EFBIG, "%s: unreadable or larger than 1 MiB", path);
	}
	*buf = malloc((size_t)n + 1);
	if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
		free(*buf);
		*buf = NULL;
		fclose(f);
		return err_set(e, -EIO, "%s: read failed", path);
	}
	fclose(f);
	(*buf)[n] = 0;
	*len = (size_t)n;
	return 0;
}

int script_open_file(const char *path, struct machine_config *cfg, struct script **out,
		     struct err *e)
{
	char *buf;
	size_t len;
	int rc = read_script(path, &buf, &len, e);

	if (rc) {
		memset(cfg, 0, sizeof(*cfg));
		return rc;
	}
	rc = script_open(path, buf, len, cfg, out, e);
	free(buf);
	return rc;
}

int script_load_machine(const char *path, struct machine_config *cfg, struct err *e)
{
	return script_open_file(path, cfg, NULL, e);
}

int script_load_hooks(struct script *s, const char *path, struct err *e)
{
	lua_State *L = s->L;
	char chunk[512], *buf;
	size_t len;
	int rc = read_script(path, &buf, &len, e);

	if (rc)
		return rc;
	s->sb.steps = 0;
	snprintf(chunk, sizeof(chunk), "@%s", path);
	if (luaL_loadbufferx(L, buf, len, chunk, "t") != LUA_OK) {
		rc = err_set(e, -EINVAL, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
	} else {
		/* Its functions replace the bundle's; machine{} is not its to call. */
		sandbox_forbid_machine(L);
		rc = sandbox_pcall(L, 0, 0, 1, e);
	}
	free(buf);
	return rc ? rc : check_hook_names(L, path, e);
}

int script_has_hook(struct script *s, const char *hook)
{
	int t;

	if (!s)
		return 0;
	/* Raw: a metatable on _G is script code, which may not run here
	 * (outside a protected call). */
	lua_pushglobaltable(s->L);
	lua_pushstring(s->L, hook);
	t = lua_rawget(s->L, -2);
	lua_pop(s->L, 2);
	return t == LUA_TFUNCTION;
}

int script_has_hooks(struct script *s)
{
	for (size_t i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
		if (script_has_hook(s, hook_names[i]))
			return 1;
	return 0;
}

lua_State *script_lua(struct script *s)
{
	return s->L;
}

int script_call_hook(struct script *s, const char *hook, const char *arg, struct err *e)
{
	lua_State *L = s->L;
	int nargs = arg ? 2 : 1;
	int rc;

	/* A fresh budget for every call; the memory cap is the state's. */
	sandbox_reset_budget(L, &s->sb);
	lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_VM_KEY); /* nil without one */
	if (arg)
		lua_pushstring(L, arg);
	lua_getglobal(L, hook);
	/* Where the hook is defined, for the message. */
	lua_Debug ar;
	lua_pushvalue(L, -1);
	lua_getinfo(L, ">S", &ar);
	lua_insert(L, -nargs - 1);
	rc = sandbox_pcall(L, nargs, 0, 1, e);
	if (rc) {
		if (strstr(e->msg, "not enough memory"))
			err_set(e, rc, "memory limit of %u MiB reached", SCRIPT_MAX_MEMORY >> 20);
		err_wrap(e, rc, "hook %s (%s:%d)", hook, ar.short_src, ar.linedefined);
		lua_gc(L, LUA_GCCOLLECT);
	}
	return rc;
}

