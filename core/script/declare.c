#include "script/declare.h"

#include <errno.h>
#include <libgen.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/src_lines.h"
#include "machine/mem.h"
#include "script/sandbox.h"


/* Best line for `key`: the first line at or after the machine { } call
 * that assigns it; else the call's line. */
static int key_line(const struct vctx *v, const char *key)
{
	int line = src_key_line(v->src, v->src_len, key, v->line, 1);

	return line ? line : v->line;
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

enum ftype { F_CPUS, F_SIZE, F_STRING, F_PATH, F_DEVICES, F_REBOOT, F_READY, F_START, F_ROOTFS };

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
	{ "kernel", F_PATH, offsetof(struct machine_config, kernel), 0 },
	{ "initrd", F_PATH, offsetof(struct machine_config, initrd), 0 },
	{ "cmdline", F_STRING, offsetof(struct machine_config, cmdline), 0 },
	{ "devices", F_DEVICES, offsetof(struct machine_config, devices), 0 },
	{ "reboot", F_REBOOT, offsetof(struct machine_config, reboot_restart), 0 },
	{ "ready", F_READY, offsetof(struct machine_config, ready), 0 },
	{ "start", F_START, offsetof(struct machine_config, start), 0 },
	{ "rootfs", F_ROOTFS, offsetof(struct machine_config, rootfs), 0 },
};

#define KNOWN_KEYS "name, cpus, memory, kernel, initrd, cmdline, devices, reboot, ready, start, rootfs"

static char *resolve_path(const struct vctx *v, const char *p)
{
	char *out;

	/* "guest:NAME": a file of the guest directories, found by the session */
	if (p[0] == '/' || !v->dir || !strncmp(p, "guest:", 6))
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

/* Calls fn(v, key, ctx) for each key of the table on top of the stack,
 * with its value on top while fn runs; a key that is not a string is
 * refused as `field`. The stack is as it was when this returns. */
static int each_key(const struct vctx *v, const char *key, const char *field,
		    int (*fn)(const struct vctx *v, const char *k, void *ctx), void *ctx)
{
	lua_State *L = v->L;
	int base = lua_gettop(L), rc = 0;

	lua_pushnil(L);
	while (lua_next(L, base)) {
		rc = lua_type(L, -2) == LUA_TSTRING ? fn(v, lua_tostring(L, -2), ctx)
						    : verr(v, key, field, "keys must be names");
		if (rc)
			break;
		lua_settop(L, base + 1); /* the key, for lua_next */
	}
	lua_settop(L, base);
	return rc;
}

struct device_ctx {
	struct dev_config *d;
	const char *field;
};

static int device_key(const struct vctx *v, const char *key, void *ctx)
{
	struct device_ctx *c = ctx;
	char sub[256], *val = NULL;
	int rc;

	snprintf(sub, sizeof(sub), "%s.%s", c->field, key);
	if (lua_istable(v->L, -1) && strcmp(key, "type"))
		return dev_list(v, c->d, key, sub);
	rc = dev_value(v, key, sub, &val);
	if (!rc && !strcmp(key, "type"))
		c->d->type = val;
	else if (!rc)
		rc = dev_add(v, c->d, key, val);
	return rc;
}

static int read_device(const struct vctx *v, size_t idx, struct dev_config *d)
{
	lua_State *L = v->L;
	char field[128];
	struct device_ctx c = { d, field };
	int rc;

	snprintf(field, sizeof(field), "devices[%zu]", idx + 1);
	if (!lua_istable(L, -1))
		return verr(v, "devices", field, "expected a table such as { type = \"uart\" }, got %s",
			    luaL_typename(L, -1));
	rc = each_key(v, "devices", field, device_key, &c);
	if (rc)
		return rc;
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
	int list_line = key_line(v, "devices");
	for (size_t i = 0; i < n; i++) {
		int rc;
		/* for messages: the line of the i-th `type =` of the list */
		cfg->devices[i].line = src_key_line(v->src, v->src_len, "type", list_line, (int)i + 1);
		if (!cfg->devices[i].line)
			cfg->devices[i].line = list_line;
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		rc = read_device(v, i, &cfg->devices[i]);
		cfg->ndevices++;
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* The root filesystem's disk comes first, so that it is the guest's
 * /dev/vda; the session gives it its image and overlay. */
static int add_rootfs_disk(const struct vctx *v, struct machine_config *cfg)
{
	struct dev_config *nd = realloc(cfg->devices, (cfg->ndevices + 1) * sizeof(*nd));

	if (!nd)
		return err_set(v->e, -ENOMEM, "out of memory");
	cfg->devices = nd;
	memmove(&nd[1], &nd[0], cfg->ndevices * sizeof(*nd));
	memset(&nd[0], 0, sizeof(*nd));
	nd[0].line = key_line(v, "rootfs");
	cfg->ndevices++;
	nd[0].type = strdup("virtio-blk");
	char *serial = strdup("rootfs");
	if (!nd[0].type || !serial)
		return err_set(v->e, -ENOMEM, "out of memory");
	return dev_add(v, &nd[0], "serial", serial);
}

/* Instance names: type plus index among devices of that type. */
static int name_devices(const struct vctx *v, struct machine_config *cfg)
{
	for (size_t i = 0; i < cfg->ndevices; i++) {
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

/* A size as "2G", "512M" or a number of MiB, at the top of the stack. */
static int size_value(const struct vctx *v, const char *key, const char *field, uint64_t *bytes)
{
	lua_State *L = v->L;

	if (lua_type(L, -1) == LUA_TNUMBER) {
		int isnum;
		lua_Integer n = lua_tointegerx(L, -1, &isnum);
		if (!isnum || n <= 0 || n > (1 << 24))
			return verr(v, key, field, "expected a size in MiB, got %s",
				    luaL_tolstring(L, -1, NULL));
		*bytes = (uint64_t)n << 20;
		return 0;
	}
	if (lua_type(L, -1) != LUA_TSTRING || parse_size(lua_tostring(L, -1), bytes))
		return verr(v, key, field,
			    "expected a size such as \"256M\" or \"1G\" (or a number of MiB), got %s",
			    luaL_tolstring(L, -1, NULL));
	return 0;
}

static int dup_string(const struct vctx *v, const char *key, const char *field, char **out)
{
	if (lua_type(v->L, -1) != LUA_TSTRING)
		return verr(v, key, field, "expected a string, got %s", luaL_typename(v->L, -1));
	*out = strdup(lua_tostring(v->L, -1));
	return *out ? 0 : err_set(v->e, -ENOMEM, "out of memory");
}

/* A string or a list of strings (run = "..." or run = { "...", ... }). */
static int string_list(const struct vctx *v, const char *key, const char *field, char ***out,
		       size_t *n)
{
	lua_State *L = v->L;
	size_t len = lua_istable(L, -1) ? lua_rawlen(L, -1) : 1;
	int rc = 0;

	if (!lua_istable(L, -1) && lua_type(L, -1) != LUA_TSTRING)
		return verr(v, key, field, "expected a string or a list of strings, got %s",
			    luaL_typename(L, -1));
	if (len > 256)
		return verr(v, key, field, "%zu entries, the limit is 256", len);
	*out = calloc(len ? len : 1, sizeof(**out));
	if (!*out)
		return err_set(v->e, -ENOMEM, "out of memory");
	if (!lua_istable(L, -1)) {
		*n = 1;
		return dup_string(v, key, field, &(*out)[0]);
	}
	for (size_t i = 1; !rc && i <= len; i++) {
		char sub[160];
		snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
		lua_rawgeti(L, -1, (lua_Integer)i);
		rc = dup_string(v, key, sub, &(*out)[i - 1]);
		if (!rc)
			(*n)++;
		lua_pop(L, 1);
	}
	return rc;
}

struct ready_ctx {
	struct machine_config *cfg;
	int forms;
};

static int ready_key(const struct vctx *v, const char *k, void *ctx)
{
	struct ready_ctx *c = ctx;
	char field[64];

	snprintf(field, sizeof(field), "machine.ready.%s", k);
	if (!strcmp(k, "text") || !strcmp(k, "exec")) {
		c->forms++;
		return dup_string(v, k, field, !strcmp(k, "text") ? &c->cfg->ready
								  : &c->cfg->ready_when.exec);
	}
	if (!strcmp(k, "port") || !strcmp(k, "timeout")) {
		int isnum, port = !strcmp(k, "port");
		lua_Integer n = lua_tointegerx(v->L, -1, &isnum);
		if (!isnum || n < 1 || n > (port ? 65535 : 86400))
			return verr(v, k, field, "expected a whole number from 1 to %d, got %s",
				    port ? 65535 : 86400, luaL_tolstring(v->L, -1, NULL));
		if (port)
			c->cfg->ready_when.port = (uint32_t)n, c->forms++;
		else
			c->cfg->ready_when.timeout_s = (uint32_t)n;
		return 0;
	}
	return verr(v, k, field, "unknown key (known: exec, port, text, timeout)");
}

/* ready = "console text" or { exec = "cmd" | port = N | text = "...", timeout = S } */
static int read_ready(const struct vctx *v, struct machine_config *cfg)
{
	struct ready_ctx c = { cfg, 0 };
	int rc;

	if (lua_type(v->L, -1) == LUA_TSTRING)
		return dup_string(v, "ready", "machine.ready", &cfg->ready);
	if (!lua_istable(v->L, -1))
		return verr(v, "ready", "machine.ready",
			    "expected console text or a table { exec = \"command\" }, { port = N } "
			    "or { text = \"...\" } (with an optional timeout = seconds), got %s",
			    luaL_typename(v->L, -1));
	rc = each_key(v, "ready", "machine.ready", ready_key, &c);
	if (!rc && c.forms != 1)
		rc = verr(v, "ready", "machine.ready",
			  "give exactly one of exec, port and text (got %d)", c.forms);
	return rc;
}

static const struct {
	const char *key;
	enum rootfs_kind kind;
} rootfs_sources[] = {
	{ "debian", ROOTFS_DEBIAN }, { "oci", ROOTFS_OCI },
	{ "docker_archive", ROOTFS_DOCKER_ARCHIVE }, { "dir", ROOTFS_DIR },
	{ "tar", ROOTFS_TAR }, { "image", ROOTFS_IMAGE },
};

static int cmp_copy(const void *a, const void *b)
{
	return strcmp(((const struct rootfs_copy *)a)->to, ((const struct rootfs_copy *)b)->to);
}

/* One copy = { [from] = to } entry. */
static int copy_key(const struct vctx *v, const char *from, void *ctx)
{
	struct rootfs_spec *r = ctx;
	struct rootfs_copy *n, *c;
	char field[300];

	snprintf(field, sizeof(field), "rootfs.copy[\"%.200s\"]", from);
	if (lua_type(v->L, -1) != LUA_TSTRING || lua_tostring(v->L, -1)[0] != '/')
		return verr(v, "copy", field, "expected [\"host path\"] = \"/absolute/path/in/rootfs\"");
	if (r->ncopy == 256)
		return verr(v, "copy", "rootfs.copy", "more than 256 entries");
	n = realloc(r->copy, (r->ncopy + 1) * sizeof(*n));
	if (!n)
		return err_set(v->e, -ENOMEM, "out of memory");
	r->copy = n;
	c = &r->copy[r->ncopy++];
	c->from = resolve_path(v, from);
	c->to = strdup(lua_tostring(v->L, -1));
	return c->from && c->to ? 0 : err_set(v->e, -ENOMEM, "out of memory");
}

/* copy = { ["host path"] = "/path/in/rootfs", ... }, sorted by destination
 * so that the same table always builds (and hashes) the same way. */
static int read_copy(const struct vctx *v, struct rootfs_spec *r)
{
	int rc;

	if (!lua_istable(v->L, -1))
		return verr(v, "copy", "rootfs.copy",
			    "expected a table { [\"host path\"] = \"/path/in/rootfs\" }, got %s",
			    luaL_typename(v->L, -1));
	rc = each_key(v, "copy", "rootfs.copy", copy_key, r);
	if (!rc && r->ncopy)
		qsort(r->copy, r->ncopy, sizeof(*r->copy), cmp_copy);
	return rc;
}

struct rootfs_ctx {
	struct rootfs_spec *r;
	int sources;
};

static int rootfs_key(const struct vctx *v, const char *k, void *ctx)
{
	struct rootfs_ctx *c = ctx;
	struct rootfs_spec *r = c->r;
	char field[64];

	snprintf(field, sizeof(field), "rootfs.%s", k);
	for (size_t i = 0; i < sizeof(rootfs_sources) / sizeof(rootfs_sources[0]); i++) {
		if (strcmp(k, rootfs_sources[i].key))
			continue;
		if (lua_type(v->L, -1) != LUA_TSTRING)
			return verr(v, k, field, "expected a string, got %s",
				    luaL_typename(v->L, -1));
		c->sources++;
		r->kind = rootfs_sources[i].kind;
		free(r->source);
		r->source = r->kind == ROOTFS_DEBIAN ? strdup(lua_tostring(v->L, -1))
						     : resolve_path(v, lua_tostring(v->L, -1));
		return r->source ? 0 : err_set(v->e, -ENOMEM, "out of memory");
	}
	if (!strcmp(k, "packages"))
		return string_list(v, k, field, &r->packages, &r->npackages);
	if (!strcmp(k, "run"))
		return string_list(v, k, field, &r->run, &r->nrun);
	if (!strcmp(k, "mirror"))
		return dup_string(v, k, field, &r->mirror);
	if (!strcmp(k, "copy"))
		return read_copy(v, r);
	if (!strcmp(k, "size")) {
		int rc = size_value(v, k, field, &r->size);
		if (!rc && r->size < (16ull << 20))
			rc = verr(v, k, field, "at least 16M");
		return rc;
	}
	return verr(v, k, field, "unknown key (known: debian, oci, docker_archive, dir, tar, image, "
		    "packages, mirror, copy, run, size)");
}

static int read_rootfs(const struct vctx *v, struct machine_config *cfg)
{
	lua_State *L = v->L;
	struct rootfs_spec *r;
	struct rootfs_ctx c;
	int rc;

	if (!lua_istable(L, -1))
		return verr(v, "rootfs", "machine.rootfs",
			    "expected a table such as { debian = \"bookworm\", packages = { \"python3\" } }, got %s",
			    luaL_typename(L, -1));
	r = cfg->rootfs = calloc(1, sizeof(*r));
	if (!r)
		return err_set(v->e, -ENOMEM, "out of memory");
	c = (struct rootfs_ctx){ r, 0 };
	rc = each_key(v, "rootfs", "machine.rootfs", rootfs_key, &c);
	if (rc)
		return rc;
	if (c.sources != 1)
		return verr(v, "rootfs", "machine.rootfs",
			    "name exactly one source: debian = \"bookworm\", oci = \"layout:tag\", "
			    "docker_archive = \"image.tar\", dir = \"path\", tar = \"rootfs.tar\" or "
			    "image = \"rootfs.ext4\" (got %d)", c.sources);
	if (r->kind != ROOTFS_DEBIAN && (r->npackages || r->mirror))
		return verr(v, r->npackages ? "packages" : "mirror", "machine.rootfs",
			    "packages and mirror go with debian = \"suite\"");
	if (r->kind == ROOTFS_IMAGE && (r->ncopy || r->nrun || r->size))
		return verr(v, "image", "machine.rootfs",
			    "an ext4 image is used as it is: copy, run and size go with the other sources");
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
		int rc = size_value(v, f->key, field, &bytes);
		if (rc)
			return rc;
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
	case F_READY:
		return read_ready(v, cfg);
	case F_START:
		return string_list(v, "start", "machine.start", &cfg->start, &cfg->nstart);
	case F_ROOTFS:
		return read_rootfs(v, cfg);
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
			rc = verr(v, k, field, "unknown key (known: " KNOWN_KEYS ")");
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
	if (cfg->rootfs && (rc = add_rootfs_disk(v, cfg)))
		return rc;
	return name_devices(v, cfg);
}


int declare_validate(lua_State *L)
{
	struct validate_args *a = lua_touserdata(L, 1);

	lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY);
	a->rc = validate(a->v, a->cfg);
	return 0;
}
