#include "machine/loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/options.h"

/* Smallest descriptor / ops table an ABI 1.0 plugin can have. */
#define DESC_MIN_SIZE (offsetof(struct smolvm_plugin, ops) + sizeof(void *))
#define DEV_OPS_MIN_SIZE (offsetof(struct smolvm_device_ops, restore) + sizeof(void *))
#define BACKEND_OPS_MIN_SIZE \
	(offsetof(struct smolvm_backend_ops, vcpu_restore) + sizeof(void *))

const char *plugin_kind_name(uint32_t kind)
{
	switch (kind) {
	case SMOLVM_PLUGIN_BACKEND:
		return "backend";
	case SMOLVM_PLUGIN_DEVICE:
		return "device";
	}
	return "unknown";
}

static int tail_is_zero(const void *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (((const unsigned char *)p)[i])
			return 0;
	return 1;
}

/* copy_struct_from_user semantics: shorter is zero-extended, longer is
 * accepted only when the part we do not know is all zero. */
static int copy_sized(void *dst, size_t dst_size, const void *src, size_t src_size,
		      size_t min_size, const char *what, struct err *e)
{
	if (src_size < min_size)
		return err_set(e, -EINVAL, "%s is %zu bytes, smaller than ABI %d.0's %zu",
			       what, src_size, SMOLVM_ABI_MAJOR, min_size);
	if (src_size > dst_size && !tail_is_zero(src, dst_size, src_size))
		return err_set(e, -EINVAL,
			       "%s is %zu bytes and uses fields past the host's %zu",
			       what, src_size, dst_size);
	memset(dst, 0, dst_size);
	memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
	return 0;
}

static int valid_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static int check_desc(const struct smolvm_plugin *d, struct plugin *p, struct err *e)
{
	uint32_t size;
	int rc;

	/* The version fields come first in every ABI; read them before
	 * trusting struct_size. */
	if (d->abi_major != SMOLVM_ABI_MAJOR)
		return err_set(e, -EPROTO, "plugin ABI %u.%u, host %d.%d: different major version",
			       d->abi_major, d->abi_minor, SMOLVM_ABI_MAJOR, SMOLVM_ABI_MINOR);
	if (d->abi_minor > SMOLVM_ABI_MINOR)
		return err_set(e, -EPROTO, "plugin needs ABI %u.%u, host has %d.%d",
			       d->abi_major, d->abi_minor, SMOLVM_ABI_MAJOR, SMOLVM_ABI_MINOR);
	size = d->struct_size;
	rc = copy_sized(&p->desc, sizeof(p->desc), d, size, DESC_MIN_SIZE,
			"plugin descriptor", e);
	if (rc)
		return rc;
	if (!valid_name(p->desc.name))
		return err_set(e, -EINVAL, "plugin name \"%s\" is not 1-64 of [a-z0-9_-]",
			       p->desc.name ? p->desc.name : "(null)");
	if (!p->desc.version)
		p->desc.version = "?";
	if (!p->desc.summary)
		p->desc.summary = "";
	if (!p->desc.ops)
		return err_set(e, -EINVAL, "%s: no ops table", p->desc.name);

	const uint32_t ops_size = *(const uint32_t *)p->desc.ops;
	switch (p->desc.kind) {
	case SMOLVM_PLUGIN_DEVICE:
		rc = copy_sized(&p->ops.dev, sizeof(p->ops.dev), p->desc.ops, ops_size,
				DEV_OPS_MIN_SIZE, "device ops table", e);
		if (!rc && !p->ops.dev.create)
			rc = err_set(e, -EINVAL, "device ops table has no create()");
		if (!rc && p->ops.dev.min_state_version > p->ops.dev.state_version)
			rc = err_set(e, -EINVAL, "min_state_version %u above state_version %u",
				     p->ops.dev.min_state_version, p->ops.dev.state_version);
		/* (an ABI 1.0/1.1 table ends before `options`: NULL, nothing declared) */
		if (!rc)
			rc = options_check_declared(p->ops.dev.options, e);
		break;
	case SMOLVM_PLUGIN_BACKEND:
		rc = copy_sized(&p->ops.backend, sizeof(p->ops.backend), p->desc.ops,
				ops_size, BACKEND_OPS_MIN_SIZE, "backend ops table", e);
		if (!rc && (!p->ops.backend.vm_create || !p->ops.backend.vcpu_run ||
			    !p->ops.backend.vcpu_create || !p->ops.backend.mem_map))
			rc = err_set(e, -EINVAL, "backend ops table lacks a required entry");
		break;
	default:
		rc = err_set(e, -EINVAL, "unknown plugin kind %u", p->desc.kind);
	}
	if (rc)
		return err_wrap(e, rc, "%s", p->desc.name);
	return 0;
}

int plugin_open(const char *path, struct plugin *out, struct err *e)
{
	const struct smolvm_plugin *d;
	void *h;
	int rc;

	memset(out, 0, sizeof(*out));
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return err_set(e, -ENOEXEC, "cannot load: %s", dlerror());
	d = dlsym(h, SMOLVM_PLUGIN_SYMBOL);
	if (!d) {
		dlclose(h);
		return err_set(e, -ENOEXEC, "no %s symbol: not a smolvm plugin",
			       SMOLVM_PLUGIN_SYMBOL);
	}
	rc = check_desc(d, out, e);
	if (rc) {
		dlclose(h);
		return rc;
	}
	out->handle = h;
	out->path = strdup(path);
	if (!out->path) {
		dlclose(h);
		return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

const struct plugin *plugins_find(const struct plugin_set *set, const char *name,
				  uint32_t kind)
{
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->v[i].desc.name, name) &&
		    (!kind || set->v[i].desc.kind == kind))
			return &set->v[i];
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void scan_dir(struct plugin_set *set, const char *dir, plugin_refusal_cb cb,
		     void *opaque)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d)
		return; /* a search-path entry that does not exist is fine */
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 4 || strcmp(de->d_name + len - 3, ".so"))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(names, cap * sizeof(*nv));
			if (!nv)
				break;
			names = nv;
		}
		names[n] = strdup(de->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	/* Sorted, so which duplicate wins does not depend on readdir order. */
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);

	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct plugin p;
		struct err e;
		const struct plugin *prev;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		free(names[i]);
		if (plugin_open(path, &p, &e)) {
			cb(opaque, path, e.msg);
			continue;
		}
		prev = plugins_find(set, p.desc.name, 0);
		if (prev) {
			snprintf(e.msg, sizeof(e.msg), "duplicate plugin name \"%s\", already loaded from %s",
				 p.desc.name, prev->path);
			cb(opaque, path, e.msg);
			/* Keep it mapped: never dlclose something that was
			 * already initialised, cheap and safe. */
			free(p.path);
			continue;
		}
		struct plugin *nv = realloc(set->v, (set->n + 1) * sizeof(*nv));
		if (!nv) {
			free(p.path);
			continue;
		}
		set->v = nv;
		set->v[set->n++] = p;
	}
	free(names);
}

void plugins_scan(struct plugin_set *set, char *const *dirs, size_t ndirs,
		  plugin_refusal_cb cb, void *opaque)
{
	for (size_t i = 0; i < ndirs; i++)
		scan_dir(set, dirs[i], cb, opaque);
}

void plugins_free(struct plugin_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->v[i].path); /* handles stay: see scan_dir */
	free(set->v);
	set->v = NULL;
	set->n = 0;
}
