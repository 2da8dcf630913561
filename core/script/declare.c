#include "script/declare.h"

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

#include "machine/mem.h"
#include "script/sandbox.h"


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
		if (!isnum || n < 1 || n > MACHINE_MAX_CPUS)
			return verr(v, f->key, field, "expected a whole number from 1 to %d, got %s",
				    MACHINE_MAX_CPUS, luaL_tolstring(L, -1, NULL));
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


int declare_validate(lua_State *L)
{
	struct validate_args *a = lua_touserdata(L, 1);

	lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY);
	a->rc = validate(a->v, a->cfg);
	return 0;
}
