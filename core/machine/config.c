#include "machine/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void rootfs_spec_free(struct rootfs_spec *r)
{
	if (!r)
		return;
	free(r->source);
	free(r->mirror);
	free_list(r->packages, r->npackages);
	for (size_t i = 0; i < r->ncopy; i++) {
		free(r->copy[i].from);
		free(r->copy[i].to);
	}
	free(r->copy);
	free_list(r->run, r->nrun);
	free(r);
}

void machine_config_free(struct machine_config *c)
{
	for (size_t i = 0; i < c->ndevices; i++) {
		struct dev_config *d = &c->devices[i];
		for (size_t k = 0; k < d->n; k++) {
			free(d->keys[k]);
			free(d->vals[k]);
			if (d->paths)
				free(d->paths[k]);
		}
		free(d->paths);
		free(d->keys);
		free(d->vals);
		free(d->type);
		free(d->name);
	}
	free(c->devices);
	free(c->script);
	free(c->script_src);
	free(c->ready);
	free(c->ready_when.exec);
	free_list(c->start, c->nstart);
	rootfs_spec_free(c->rootfs);
	free(c->rootfs_id);
	free(c->name);
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->append);
	free(c->backend);
	memset(c, 0, sizeof(*c));
}

const char *dev_config_get(const struct dev_config *d, const char *key)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->keys[i], key))
			return d->vals[i];
	return NULL;
}

void dev_config_unset(struct dev_config *d, const char *key)
{
	for (size_t i = 0; d->paths && i < d->n; i++)
		free(d->paths[i]);
	free(d->paths);
	d->paths = NULL;
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->keys[i], key))
			continue;
		free(d->keys[i]);
		free(d->vals[i]);
		d->n--;
		d->keys[i] = d->keys[d->n];
		d->vals[i] = d->vals[d->n];
		return;
	}
}

int dev_config_set(struct dev_config *d, const char *key, const char *val)
{
	char *v = strdup(val), *k;

	if (!v)
		return -ENOMEM;
	/* Resolved paths are made again on demand. */
	for (size_t i = 0; d->paths && i < d->n; i++)
		free(d->paths[i]);
	free(d->paths);
	d->paths = NULL;
	for (size_t i = 0; i < d->n; i++) {
		if (!strcmp(d->keys[i], key)) {
			free(d->vals[i]);
			d->vals[i] = v;
			return 0;
		}
	}
	char **nk = realloc(d->keys, (d->n + 1) * sizeof(*nk));
	if (nk)
		d->keys = nk;
	char **nv = nk ? realloc(d->vals, (d->n + 1) * sizeof(*nv)) : NULL;
	if (nv)
		d->vals = nv;
	if (!nv || !(k = strdup(key))) {
		free(v);
		return -ENOMEM;
	}
	d->keys[d->n] = k;
	d->vals[d->n++] = v;
	return 0;
}

struct dev_config *machine_config_add_device(struct machine_config *c, const char *type)
{
	struct dev_config *nd = realloc(c->devices, (c->ndevices + 1) * sizeof(*nd)), *d;
	size_t same = 0;
	char name[96];

	if (!nd)
		return NULL;
	c->devices = nd;
	for (size_t i = 0; i < c->ndevices; i++)
		same += !strcmp(c->devices[i].type, type);
	snprintf(name, sizeof(name), "%s%zu", type, same);
	d = &c->devices[c->ndevices];
	memset(d, 0, sizeof(*d));
	d->type = strdup(type);
	d->name = strdup(name);
	if (!d->type || !d->name) {
		free(d->type);
		free(d->name);
		return NULL;
	}
	c->ndevices++;
	return d;
}

const char *dev_config_path(struct dev_config *d, const char *key, const char *script)
{
	const char *slash = script ? strrchr(script, '/') : NULL;

	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->keys[i], key))
			continue;
		if (d->vals[i][0] == '/' || !slash)
			return d->vals[i];
		if (!d->paths && !(d->paths = calloc(d->n, sizeof(*d->paths))))
			return NULL;
		if (!d->paths[i]) {
			size_t dir = (size_t)(slash - script);
			d->paths[i] = malloc(dir + strlen(d->vals[i]) + 2);
			if (!d->paths[i])
				return NULL;
			sprintf(d->paths[i], "%.*s/%s", (int)dir, script, d->vals[i]);
		}
		return d->paths[i];
	}
	return NULL;
}
