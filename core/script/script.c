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

#include "arch/x86/boot.h"

struct sandbox {
	size_t used, limit;
	unsigned long long steps, max_steps;
};

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct sandbox *sb = ud;

	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		sb->used -= osize;
		return NULL;
	}
	if (nsize > osize && sb->used + (nsize - osize) > sb->limit)
		return NULL; /* Lua raises "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p)
		sb->used = sb->used - osize + nsize;
	return p;
}

#define HOOK_EVERY 1000

static void sb_count(lua_State *L, lua_Debug *ar)
{
	struct sandbox *sb;

	lua_getallocf(L, (void **)&sb);
	sb->steps += HOOK_EVERY;
	if (sb->steps > sb->max_steps) {
		/* From now on every instruction fails, so a pcall() in the
		 * script cannot swallow the error and keep looping. */
		lua_sethook(L, sb_count, LUA_MASKCOUNT, 1);
		/* Level 0 in a hook is the Lua function that was running. */
		if (lua_getstack(L, 0, ar) && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
			luaL_error(L, "%s:%d: instruction budget of %I exhausted (endless loop?)",
				   ar->short_src, ar->currentline, (lua_Integer)sb->max_steps);
		luaL_error(L, "instruction budget of %I exhausted (endless loop?)",
			   (lua_Integer)sb->max_steps);
	}
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

/* Every call into Lua goes through here. */
static int pcall(lua_State *L, int nargs, int nres, struct err *e)
{
	int base = lua_gettop(L) - nargs;
	int rc;

	lua_pushcfunction(L, traceback);
	lua_insert(L, base);
	rc = lua_pcall(L, nargs, nres, base);
	lua_remove(L, base);
	if (rc != LUA_OK) {
		err_set(e, -EINVAL, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		return -EINVAL;
	}
	return 0;
}

static int l_print(lua_State *L)
{
	int n = lua_gettop(L);
	fputs("script: ", stderr);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			fputc('\t', stderr);
		fputs(luaL_tolstring(L, i, NULL), stderr);
		lua_pop(L, 1);
	}
	fputc('\n', stderr);
	return 0;
}

/* load() restricted to text chunks in the sandbox's environment. */
static int l_load(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optstring(L, 2, "=(load)");

	if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	return 1;
}

#define MACHINE_KEY "smolvm.machine"

static int l_machine(lua_State *L)
{
	lua_Debug ar;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_getfield(L, LUA_REGISTRYINDEX, MACHINE_KEY) != LUA_TNIL)
		return luaL_error(L, "machine() may be called only once");
	lua_pop(L, 1);
	lua_pushvalue(L, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, MACHINE_KEY);
	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) {
		lua_pushinteger(L, ar.currentline);
		lua_setfield(L, LUA_REGISTRYINDEX, MACHINE_KEY ".line");
	}
	return 0;
}

static int l_machine_again(lua_State *L)
{
	return luaL_error(L, "machine() belongs in the machine script, not in a hooks script");
}

static lua_State *sandbox_new(struct sandbox *sb)
{
	static const luaL_Reg libs[] = {
		{ LUA_GNAME, luaopen_base },        { LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },  { LUA_MATHLIBNAME, luaopen_math },
		{ LUA_UTF8LIBNAME, luaopen_utf8 },  { LUA_COLIBNAME, luaopen_coroutine },
	};
	static const char *const banned[] = { "dofile", "loadfile", "require",
					      "collectgarbage" };
	lua_State *L;

	sb->limit = SCRIPT_MAX_MEMORY;
	sb->max_steps = SCRIPT_MAX_INSTRUCTIONS;
	L = lua_newstate(sb_alloc, sb);
	if (!L)
		return NULL;
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		luaL_requiref(L, libs[i].name, libs[i].func, 1);
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++) {
		lua_pushnil(L);
		lua_setglobal(L, banned[i]);
	}
	/* string.dump makes bytecode, which we never load: drop it too. */
	lua_getglobal(L, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	lua_register(L, "load", l_load);
	lua_register(L, "print", l_print);
	lua_register(L, "machine", l_machine);
	lua_sethook(L, sb_count, LUA_MASKCOUNT, HOOK_EVERY);
	return L;
}

/* ---- validation -------------------------------------------------------- */

struct vctx {
	lua_State *L;
	const char *name; /* script name for messages */
	const char *src;
	size_t src_len;
	int line;         /* line of the machine { } call */
	char *dir;        /* for relative paths */
	struct err *e;
};

/* Best line for `key`: the first line at or after the machine { } call
 * that assigns it; else the call's line. */
static int key_line(const struct vctx *v, const char *key)
{
	int line = 1;
	size_t klen = strlen(key);

	for (size_t i = 0; i < v->src_len; i++) {
		if (line >= v->line && klen <= v->src_len - i && !memcmp(v->src + i, key, klen) &&
		    (i == 0 || !(isalnum((unsigned char)v->src[i - 1]) || v->src[i - 1] == '_'))) {
			size_t j = i + klen;
			while (j < v->src_len && (v->src[j] == ' ' || v->src[j] == '\t'))
				j++;
			if (j < v->src_len && v->src[j] == '=' &&
			    (j + 1 >= v->src_len || v->src[j + 1] != '='))
				return line;
		}
		if (v->src[i] == '\n')
			line++;
	}
	return v->line;
}

static int verr(const struct vctx *v, const char *key, const char *field,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int verr(const struct vctx *v, const char *key, const char *field,
		const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(v->e, -EINVAL, "%s:%d: %s: %s", v->name, key_line(v, key), field, msg);
}

enum ftype { F_CPUS, F_SIZE, F_STRING, F_PATH, F_DEVICES, F_REBOOT };

struct field {
	const char *key;
	enum ftype type;
	size_t offset;
	int required;
};

static const struct field machine_fields[] = {
	{ "name", F_STRING, offsetof(struct machine_config, name), 0 },
	{ "cpus", F_CPUS, offsetof(struct machine_config, cpus), 0 },
	{ "memory", F_SIZE, offsetof(struct machine_config, memory), 0 },
	{ "kernel", F_PATH, offsetof(struct machine_config, kernel), 1 },
	{ "initrd", F_PATH, offsetof(struct machine_config, initrd), 0 },
	{ "cmdline", F_STRING, offsetof(struct machine_config, cmdline), 0 },
	{ "devices", F_DEVICES, offsetof(struct machine_config, devices), 0 },
	{ "reboot", F_REBOOT, offsetof(struct machine_config, reboot_restart), 0 },
	{ "ready", F_STRING, offsetof(struct machine_config, ready), 0 },
};

static char *resolve_path(const struct vctx *v, const char *p)
{
	char *out;

	if (p[0] == '/' || !v->dir)
		return strdup(p);
	out = malloc(strlen(v->dir) + strlen(p) + 2);
	if (out)
		sprintf(out, "%s/%s", v->dir, p);
	return out;
}

/* Device option values arrive as text, whatever their Lua type. */
static int dev_value(const struct vctx *v, const char *key, char *field, char **out)
{
	lua_State *L = v->L;

	switch (lua_type(L, -1)) {
	case LUA_TSTRING:
	case LUA_TNUMBER:
		*out = strdup(lua_tostring(L, -1));
		break;
	case LUA_TBOOLEAN:
		*out = strdup(lua_toboolean(L, -1) ? "true" : "false");
		break;
	default:
		return verr(v, key, field, "expected a string, number or boolean, got %s",
			    luaL_typename(L, -1));
	}
	return *out ? 0 : err_set(v->e, -ENOMEM, "out of memory");
}

static int dev_add(const struct vctx *v, struct dev_config *d, const char *key, char *val)
{
	char **nk = realloc(d->keys, (d->n + 1) * sizeof(*nk));
	char **nv = nk ? realloc(d->vals, (d->n + 1) * sizeof(*nv)) : NULL;

	if (nk)
		d->keys = nk;
	if (nv)
		d->vals = nv;
	if (!nv || !(d->keys[d->n] = strdup(key))) {
		free(val);
		return err_set(v->e, -ENOMEM, "out of memory");
	}
	d->vals[d->n++] = val;
	return 0;
}

/* A list value (forward = { "a", "b" }) becomes keys "forward[1]", ... */
static int dev_list(const struct vctx *v, struct dev_config *d, const char *key,
		    const char *field)
{
	lua_State *L = v->L;
	size_t n = lua_rawlen(L, -1);
	int rc = 0;

	for (size_t i = 1; !rc && i <= n; i++) {
		char sub[300], k[160], *val = NULL;
		snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
		snprintf(k, sizeof(k), "%s[%zu]", key, i);
		lua_rawgeti(L, -1, (lua_Integer)i);
		rc = dev_value(v, key, sub, &val);
		lua_pop(L, 1);
		if (!rc)
			rc = dev_add(v, d, k, val);
	}
	return rc;
}

static int read_device(const struct vctx *v, size_t idx, struct dev_config *d)
{
	lua_State *L = v->L;
	char field[128];
	int rc = 0;

	snprintf(field, sizeof(field), "devices[%zu]", idx + 1);
	if (!lua_istable(L, -1))
		return verr(v, "devices", field, "expected a table such as { type = \"uart\" }, got %s",
			    luaL_typename(L, -1));
	lua_pushnil(L);
	while (!rc && lua_next(L, -2)) {
		char sub[256], *val = NULL;
		if (lua_type(L, -2) != LUA_TSTRING) {
			lua_pop(L, 2);
			return verr(v, "devices", field, "keys must be names");
		}
		const char *key = lua_tostring(L, -2);
		snprintf(sub, sizeof(sub), "%s.%s", field, key);
		if (lua_istable(L, -1) && strcmp(key, "type")) {
			rc = dev_list(v, d, key, sub);
		} else {
			rc = dev_value(v, key, sub, &val);
			if (!rc && !strcmp(key, "type"))
				d->type = val;
			else if (!rc)
				rc = dev_add(v, d, key, val);
		}
		lua_pop(L, 1);
	}
	if (rc) {
		lua_pop(L, 1);
		return rc;
	}
	if (!d->type)
		return verr(v, "devices", field, "missing \"type\" (the device plugin's name)");
	return 0;
}

static int read_devices(const struct vctx *v, struct machine_config *cfg)
{
	lua_State *L = v->L;
	size_t n;

	if (!lua_istable(L, -1))
		return verr(v, "devices", "machine.devices", "expected a list of tables, got %s",
			    luaL_typename(L, -1));
	n = lua_rawlen(L, -1);
	if (n > 64)
		return verr(v, "devices", "machine.devices", "%zu devices, the limit is 64", n);
	cfg->devices = calloc(n ? n : 1, sizeof(*cfg->devices));
	if (!cfg->devices)
		return err_set(v->e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc;
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		rc = read_device(v, i, &cfg->devices[i]);
		cfg->ndevices++;
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	/* Instance names: type plus index among devices of that type. */
	for (size_t i = 0; i < n; i++) {
		size_t same = 0;
		char buf[96];
		for (size_t j = 0; j < i; j++)
			same += !strcmp(cfg->devices[j].type, cfg->devices[i].type);
		snprintf(buf, sizeof(buf), "%s%zu", cfg->devices[i].type, same);
		cfg->devices[i].name = strdup(buf);
		if (!cfg->devices[i].name)
			return err_set(v->e, -ENOMEM, "out of memory");
	}
	return 0;
}

static int read_field(const struct vctx *v, const struct field *f, struct machine_config *cfg)
{
	lua_State *L = v->L;
	char field[64];
	void *dst = (char *)cfg + f->offset;

	snprintf(field, sizeof(field), "machine.%s", f->key);
	switch (f->type) {
	case F_CPUS: {
		int isnum;
		lua_Integer n = lua_tointegerx(L, -1, &isnum);
		if (!isnum || n < 1 || n > X86_MAX_CPUS)
			return verr(v, f->key, field, "expected a whole number from 1 to %d, got %s",
				    X86_MAX_CPUS, luaL_tolstring(L, -1, NULL));
		*(uint32_t *)dst = (uint32_t)n;
		return 0;
	}
	case F_SIZE: {
		uint64_t bytes;
		if (lua_type(L, -1) == LUA_TNUMBER) {
			int isnum;
			lua_Integer n = lua_tointegerx(L, -1, &isnum);
			if (!isnum || n <= 0 || (uint64_t)n > (MEM_MAX_SIZE >> 20))
				return verr(v, f->key, field, "expected a size in MiB, got %s",
					    luaL_tolstring(L, -1, NULL));
			bytes = (uint64_t)n << 20;
		} else if (lua_type(L, -1) != LUA_TSTRING ||
			   parse_size(lua_tostring(L, -1), &bytes)) {
			return verr(v, f->key, field,
				    "expected a size such as \"256M\" or \"1G\" (or a number of MiB), got %s",
				    luaL_tolstring(L, -1, NULL));
		}
		if (bytes < MEM_MIN_SIZE || bytes > MEM_MAX_SIZE || bytes % 4096)
			return verr(v, f->key, field, "%llu bytes is outside %llu MiB..%llu MiB or not page-aligned",
				    (unsigned long long)bytes, (unsigned long long)(MEM_MIN_SIZE >> 20),
				    (unsigned long long)(MEM_MAX_SIZE >> 20));
		*(uint64_t *)dst = bytes;
		return 0;
	}
	case F_STRING:
	case F_PATH: {
		char **s = dst;
		if (lua_type(L, -1) != LUA_TSTRING)
			return verr(v, f->key, field, "expected a string, got %s",
				    luaL_typename(L, -1));
		*s = f->type == F_PATH ? resolve_path(v, lua_tostring(L, -1))
				       : strdup(lua_tostring(L, -1));
		return *s ? 0 : err_set(v->e, -ENOMEM, "out of memory");
	}
	case F_DEVICES:
		return read_devices(v, cfg);
	case F_REBOOT: {
		const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (strcmp(s, "exit") && strcmp(s, "restart"))
			return verr(v, f->key, field, "expected \"exit\" or \"restart\", got %s",
				    luaL_tolstring(L, -1, NULL));
		*(int *)dst = !strcmp(s, "restart");
		return 0;
	}
	}
	return -EINVAL;
}

static int validate(const struct vctx *v, struct machine_config *cfg)
{
	lua_State *L = v->L;
	int seen[sizeof(machine_fields) / sizeof(machine_fields[0])] = { 0 };
	int rc = 0;

	lua_pushnil(L);
	while (!rc && lua_next(L, -2)) {
		const struct field *f = NULL;
		if (lua_type(L, -2) == LUA_TSTRING) {
			for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++)
				if (!strcmp(machine_fields[i].key, lua_tostring(L, -2)))
					f = &machine_fields[i];
		}
		if (!f) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
			char field[128];
			snprintf(field, sizeof(field), "machine.%s", k);
			rc = verr(v, k, field, "unknown key (known: name, cpus, memory, kernel, initrd, cmdline, devices, reboot, ready)");
			lua_pop(L, 2);
			return rc;
		}
		seen[f - machine_fields] = 1;
		rc = read_field(v, f, cfg);
		lua_pop(L, 1);
		if (rc)
			lua_pop(L, 1);
	}
	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++)
		if (machine_fields[i].required && !seen[i])
			return err_set(v->e, -EINVAL, "%s:%d: machine.%s: required", v->name,
				       v->line, machine_fields[i].key);
	return 0;
}

/* Validation quotes values with __tostring, which is script code: it runs
 * protected like any other call into Lua. */
struct validate_args {
	const struct vctx *v;
	struct machine_config *cfg;
	int rc;
};

static int l_validate(lua_State *L)
{
	struct validate_args *a = lua_touserdata(L, 1);

	lua_getfield(L, LUA_REGISTRYINDEX, MACHINE_KEY);
	a->rc = validate(a->v, a->cfg);
	return 0;
}

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
	if (s->L)
		lua_close(s->L);
	free(s->name);
	free(s);
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
	rc = pcall(L, 0, 0, e);
	if (rc)
		goto out;
	if (lua_getfield(L, LUA_REGISTRYINDEX, MACHINE_KEY ".line") == LUA_TNUMBER)
		v.line = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (lua_getfield(L, LUA_REGISTRYINDEX, MACHINE_KEY) != LUA_TTABLE) {
		rc = err_set(e, -EINVAL, "%s: the script never calls machine { ... }", name);
		goto out;
	}
	lua_pop(L, 1);
	struct validate_args a = { &v, cfg, 0 };
	lua_pushcfunction(L, l_validate);
	lua_pushlightuserdata(L, &a);
	rc = pcall(L, 1, 0, e);
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
		lua_register(L, "machine", l_machine_again);
		rc = pcall(L, 0, 0, e);
	}
	free(buf);
	return rc ? rc : check_hook_names(L, path, e);
}

int script_has_hook(struct script *s, const char *hook)
{
	int t;

	if (!s)
		return 0;
	t = lua_getglobal(s->L, hook);
	lua_pop(s->L, 1);
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

int script_call_hook(struct script *s, const char *hook, int nargs, struct err *e)
{
	lua_State *L = s->L;
	int rc;

	/* A fresh budget for every call; the memory cap is the state's. */
	s->sb.steps = 0;
	lua_sethook(L, sb_count, LUA_MASKCOUNT, HOOK_EVERY);
	lua_getglobal(L, hook);
	/* Where the hook is defined, for the message. */
	lua_Debug ar;
	lua_pushvalue(L, -1);
	lua_getinfo(L, ">S", &ar);
	lua_insert(L, -nargs - 1);
	rc = pcall(L, nargs, 0, e);
	if (rc) {
		if (strstr(e->msg, "not enough memory"))
			err_set(e, rc, "memory limit of %u MiB reached", SCRIPT_MAX_MEMORY >> 20);
		err_wrap(e, rc, "hook %s (%s:%d)", hook, ar.short_src, ar.linedefined);
		lua_gc(L, LUA_GCCOLLECT);
	}
	return rc;
}

