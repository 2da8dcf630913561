#include "session/grants.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Device types whose options smolvm knows: any other plugin may name host
 * resources in ways only --trust can vouch for. */
static const char *const known_types[] = { "uart", "virtio-rng", "virtio-console",
					   "virtio-vsock", "virtio-net", "virtio-blk",
					   "virtio-9p" /* session/volumes.c */ };

static int known(const char *type)
{
	for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
		if (!strcmp(type, known_types[i]))
			return 1;
	return 0;
}

/* "NAME=PATH[:ro]" -> its parts (name and path copied into the buffers). */
static int split_disk(const char *arg, char *name, size_t nlen, char *path, size_t plen, int *ro,
		      struct err *e)
{
	const char *eq = strchr(arg, '=');
	size_t n;

	if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) >= nlen)
		return err_set(e, -EINVAL, "--disk \"%s\": expected NAME=PATH or NAME=PATH:ro "
			       "(NAME: the disk's serial, as smolvm names it)", arg);
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = 0;
	n = strlen(eq + 1);
	*ro = n > 3 && !strcmp(eq + 1 + n - 3, ":ro");
	if (*ro)
		n -= 3;
	if (n >= plen)
		return err_set(e, -ENAMETOOLONG, "--disk \"%s\": path too long", arg);
	memcpy(path, eq + 1, n);
	path[n] = 0;
	return 0;
}

int grant_check_disk(const char *arg, struct err *e)
{
	char name[64], path[PATH_MAX];
	int ro;

	return split_disk(arg, name, sizeof(name), path, sizeof(path), &ro, e);
}

static int parse_port(const char *s, const char *end, unsigned *out)
{
	unsigned long v = 0;

	if (s == end || end - s > 5)
		return -1;
	for (const char *p = s; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (!v || v > 65535)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int split_publish(const char *arg, unsigned *host, unsigned *guest, struct err *e)
{
	const char *colon = strchr(arg, ':');

	if (!colon || parse_port(arg, colon, host) ||
	    parse_port(colon + 1, colon + 1 + strlen(colon + 1), guest))
		return err_set(e, -EINVAL, "--publish \"%s\": expected HOSTPORT:GUESTPORT (1 to "
			       "65535; the host side listens on 127.0.0.1)", arg);
	return 0;
}

int grant_check_publish(const char *arg, struct err *e)
{
	unsigned h, g;

	return split_publish(arg, &h, &g, e);
}

int grant_check_net(const char *arg, struct err *e)
{
	if (!strcmp(arg, "none") || !strcmp(arg, "nat") || !strcmp(arg, "nat+host"))
		return 0;
	return err_set(e, -EINVAL, "--net \"%s\": expected none, nat or nat+host", arg);
}

/* An overlay the bundle named is a host path too: one in the runtime
 * directory instead (restores keep their writes in a private one anyway). */
static int private_overlay(struct dev_config *d, struct runtime *rt, struct err *e)
{
	char cow[400];
	int rc;

	if (!dev_config_get(d, "overlay"))
		return 0;
	if ((rc = runtime_dir(rt, e)))
		return rc;
	snprintf(cow, sizeof(cow), "%s/%s.cow", rt->dir, d->name);
	return dev_config_set(d, "overlay", cow) ? err_set(e, -ENOMEM, "out of memory") : 0;
}

/* The grant for this disk, by serial or device name; 1 when found. */
static int find_disk(const struct grants *g, const struct dev_config *d, char *path,
		     size_t plen, int *ro, struct err *e)
{
	const char *serial = dev_config_get(d, "serial");
	char name[64];

	for (size_t i = 0; i < g->ndisks; i++) {
		if (split_disk(g->disks[i], name, sizeof(name), path, plen, ro, e))
			return -EINVAL;
		if ((serial && !strcmp(name, serial)) || !strcmp(name, d->name))
			return 1;
	}
	return 0;
}

static int grant_disk(struct dev_config *d, const struct grants *g, int trusted,
		      const char *bundle, const char *script, struct runtime *rt, struct err *e)
{
	char path[PATH_MAX], abs[PATH_MAX];
	const char *serial = dev_config_get(d, "serial");
	int ro, rc = find_disk(g, d, path, sizeof(path), &ro, e);

	if (rc < 0)
		return rc;
	/* its image came in the bundle: nothing of the host's, and the
	 * overlay its script names was made for another file */
	if (!rc && d->from_bundle)
		return private_overlay(d, rt, e);
	if (!rc) {
		const char *want = dev_config_path(d, "path", script);
		if (trusted)
			return 0;
		return err_set(e, -EPERM, "%s was not packed by you on this host, and its disk "
			       "\"%s\" (%s) would be the host file %s: give it a disk with "
			       "--disk %s=PATH[:ro] (or, if you trust the bundle, --trust)",
			       bundle, serial ? serial : d->name, d->name, want ? want : "(none)",
			       serial ? serial : d->name);
	}
	if (!realpath(path, abs))
		return err_set(e, -errno, "--disk %s=%s: %s", serial ? serial : d->name, path,
			       strerror(errno));
	if (dev_config_set(d, "path", abs) || (ro && dev_config_set(d, "readonly", "true")))
		return err_set(e, -ENOMEM, "out of memory");
	d->from_bundle = 0; /* (a save reads this file, not the bundle's) */
	return trusted ? 0 : private_overlay(d, rt, e);
}

/* Port forwards: the user's (--publish) replace the bundle's; an untrusted
 * bundle's are dropped. */
static int grant_forwards(struct dev_config *d, const struct grants *g, int trusted,
			  const char *bundle, struct err *e)
{
	char key[32], spec[64];
	size_t keys = d->n; /* forward[i] goes no higher; unsetting shrinks d->n */
	unsigned h, gp;
	int had = 0;

	if (trusted && !g->npublish)
		return 0;
	for (size_t i = 0; i <= keys; i++) {
		if (i)
			snprintf(key, sizeof(key), "forward[%zu]", i);
		else
			snprintf(key, sizeof(key), "forward");
		had |= dev_config_get(d, key) != NULL;
		dev_config_unset(d, key);
	}
	if (had && !g->npublish && !trusted)
		fprintf(stderr, "smolvm: %s was not packed by you on this host: its port forwards "
			"are not opened (--publish HOSTPORT:GUESTPORT opens one)\n", bundle);
	for (size_t i = 0; i < g->npublish; i++) {
		if (split_publish(g->publish[i], &h, &gp, e))
			return -EINVAL;
		snprintf(key, sizeof(key), "forward[%zu]", i + 1);
		snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%u-:%u", h, gp);
		if (dev_config_set(d, key, spec))
			return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

static int grant_net(struct dev_config *d, const struct grants *g, int trusted, struct err *e)
{
	const char *mode = g->net ? g->net : trusted ? NULL : "nat";

	if (!mode)
		return 0;
	if (dev_config_set(d, "egress", strcmp(mode, "none") ? "true" : "false") ||
	    dev_config_set(d, "host_loopback", strcmp(mode, "nat+host") ? "false" : "true"))
		return err_set(e, -ENOMEM, "out of memory");
	return 0;
}

/* "DEV.OPTION=PATH" -> its parts, in the buffers. */
static int split_bind(const char *arg, char *dev, size_t dlen, char *opt, size_t olen,
		      const char **path, struct err *e)
{
	const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');

	if (!dot || !eq || dot > eq || dot == arg || eq == dot + 1 || !eq[1] ||
	    (size_t)(dot - arg) >= dlen || (size_t)(eq - dot - 1) >= olen)
		return err_set(e, -EINVAL, "--bind \"%s\": expected DEVICE.OPTION=PATH (DEVICE as "
			       "smolvm names it, e.g. tally0.log=out.txt)", arg);
	snprintf(dev, dlen, "%.*s", (int)(dot - arg), arg);
	snprintf(opt, olen, "%.*s", (int)(eq - dot - 1), dot + 1);
	*path = eq + 1;
	return 0;
}

int grant_check_bind(const char *arg, struct err *e)
{
	char dev[64], opt[72];
	const char *path;

	return split_bind(arg, dev, sizeof(dev), opt, sizeof(opt), &path, e);
}

static const struct smolvm_option *declared(const struct plugin_set *set,
					    const struct dev_config *d)
{
	const struct plugin *p = plugins_find(set, d->type, SMOLVM_PLUGIN_DEVICE);

	return p ? p->ops.dev.options : NULL;
}

/* The file options `opts` declares, for a message. */
static void file_options(const struct smolvm_option *opts, char *out, size_t len)
{
	size_t used = 0;

	out[0] = 0;
	for (size_t i = 0; opts && opts[i].name && used < len; i++)
		if (opts[i].type == SMOLVM_OPT_PATH)
			used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "",
						 opts[i].name);
	if (!out[0])
		snprintf(out, len, "none");
}

static int bind_one(struct machine_config *cfg, const char *arg, const struct plugin_set *set,
		    const char *bundle, struct err *e)
{
	char dev[64], opt[72], cwd[PATH_MAX], files[256];
	const char *path;
	struct dev_config *d = NULL;
	const struct smolvm_option *opts, *o = NULL;

	if (split_bind(arg, dev, sizeof(dev), opt, sizeof(opt), &path, e))
		return -EINVAL;
	for (size_t i = 0; i < cfg->ndevices && !d; i++)
		if (!strcmp(cfg->devices[i].name, dev))
			d = &cfg->devices[i];
	if (!d)
		return err_set(e, -ENOENT, "%s: --bind %s: its machine has no device %s "
			       "(smolvm inspect names them)", bundle, arg, dev);
	opts = declared(set, d);
	for (size_t i = 0; opts && opts[i].name && !o; i++)
		if (!strcmp(opts[i].name, opt))
			o = &opts[i];
	file_options(opts, files, sizeof(files));
	if (!o || o->type != SMOLVM_OPT_PATH)
		return err_set(e, -EINVAL, "%s: --bind %s: %s has no file option \"%s\" (its "
			       "plugin %s declares %s as file options)", bundle, arg, d->name, opt,
			       d->type, opts ? files : "no options, so nothing");
	/* relative to where the user runs smolvm */
	if (path[0] != '/') {
		if (!getcwd(cwd, sizeof(cwd)))
			return err_set(e, -errno, "--bind %s: the working directory: %s", arg,
				       strerror(errno));
		if (strlen(cwd) + strlen(path) + 2 > sizeof(cwd))
			return err_set(e, -ENAMETOOLONG, "--bind %s: the path is too long", arg);
		strcat(strcat(cwd, "/"), path);
		path = cwd;
	}
	return dev_config_set(d, opt, path) ? err_set(e, -ENOMEM, "out of memory") : 0;
}

int grants_bind(struct machine_config *cfg, const struct grants *g, int trusted,
		const char *bundle, const struct plugin_set *set, struct err *e)
{
	for (size_t i = 0; i < g->nbinds; i++) {
		int rc = bind_one(cfg, g->binds[i], set, bundle, e);
		if (rc)
			return rc;
	}
	if (trusted)
		return 0;
	/* The devices without rules of their own: their file options are
	 * host resources, the rest are values. */
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		const struct smolvm_option *opts;
		if (known(d->type))
			continue;
		opts = declared(set, d);
		if (!opts)
			return err_set(e, -EPERM, "%s was not packed by you on this host, and its "
				       "device %s comes from a plugin that does not declare its "
				       "options, so smolvm cannot tell which name host files: run "
				       "it with --trust if you trust the bundle", bundle, d->name);
		for (size_t k = 0; opts[k].name; k++) {
			char key[80];
			int bound = 0;
			if (opts[k].type != SMOLVM_OPT_PATH || !dev_config_get(d, opts[k].name))
				continue;
			snprintf(key, sizeof(key), "%s.%s=", d->name, opts[k].name);
			for (size_t b = 0; b < g->nbinds; b++)
				bound |= !strncmp(g->binds[b], key, strlen(key));
			if (!bound)
				return err_set(e, -EPERM, "%s was not packed by you on this host, and "
					       "its device %s would use the host file %s (option %s): "
					       "give it one with --bind %s.%s=PATH (or, if you trust "
					       "the bundle, --trust)", bundle, d->name,
					       dev_config_path(d, opts[k].name, cfg->script),
					       opts[k].name, d->name, opts[k].name);
		}
	}
	return 0;
}

int grants_apply(struct machine_config *cfg, const struct grants *g, int trusted,
		 const char *bundle, struct runtime *rt, struct err *e)
{
	int nets = 0, rc = 0;

	for (size_t i = 0; !rc && i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];

		if (!strcmp(d->type, "virtio-blk")) {
			/* its own root filesystem: from the cache, by content */
			if (i == 0 && cfg->rootfs)
				continue;
			rc = grant_disk(d, g, trusted, bundle, cfg->script, rt, e);
		} else if (!strcmp(d->type, "virtio-net")) {
			nets++;
			rc = grant_forwards(d, g, trusted, bundle, e);
			if (!rc)
				rc = grant_net(d, g, trusted, e);
		}
	}
	if (!rc && !nets && (g->npublish || g->net))
		rc = err_set(e, -EINVAL, "%s: --%s: its machine has no virtio-net device", bundle,
			     g->npublish ? "publish" : "net");
	for (size_t i = 0; !rc && i < g->ndisks; i++) {
		char name[64], path[PATH_MAX];
		int ro, used = 0;
		rc = split_disk(g->disks[i], name, sizeof(name), path, sizeof(path), &ro, e);
		for (size_t j = 0; !rc && j < cfg->ndevices; j++) {
			const char *s = dev_config_get(&cfg->devices[j], "serial");
			used |= !strcmp(cfg->devices[j].type, "virtio-blk") &&
				((s && !strcmp(s, name)) || !strcmp(cfg->devices[j].name, name));
		}
		if (!rc && !used)
			rc = err_set(e, -ENOENT, "%s: --disk %s: its machine has no disk of that "
				     "name", bundle, name);
	}
	return rc;
}
