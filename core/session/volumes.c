#include "session/volumes.h"

#include "agent/client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct volume {
	char host[PATH_MAX], guest[256];
	int ro;
	int used;
};

/* "HOST:GUEST[:ro]": the last ':' before GUEST splits them (a host path
 * may hold one). GUEST is absolute, not "/", and plain enough to be
 * quoted into the mount command. */
static int split_volume(const char *arg, struct volume *v, struct err *e)
{
	size_t n = strlen(arg);
	const char *colon;
	char buf[PATH_MAX + 300];

	memset(v, 0, sizeof(*v));
	if (n >= sizeof(buf))
		return err_set(e, -ENAMETOOLONG, "--volume \"%.60s...\": too long", arg);
	memcpy(buf, arg, n + 1);
	if (n > 3 && !strcmp(buf + n - 3, ":ro")) {
		v->ro = 1;
		buf[n -= 3] = 0;
	}
	colon = strrchr(buf, ':');
	if (!colon || colon == buf || colon[1] != '/' || !colon[2])
		return err_set(e, -EINVAL, "--volume \"%s\": expected HOSTDIR:GUESTDIR or "
			       "HOSTDIR:GUESTDIR:ro (GUESTDIR absolute, e.g. ./src:/work)", arg);
	if ((size_t)(colon - buf) >= sizeof(v->host) || strlen(colon + 1) >= sizeof(v->guest))
		return err_set(e, -ENAMETOOLONG, "--volume \"%s\": a path is too long", arg);
	for (const char *p = colon + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '\'' || *p == 0x7f)
			return err_set(e, -EINVAL, "--volume \"%s\": the guest path may not hold "
				       "quotes or control characters", arg);
	memcpy(v->host, buf, (size_t)(colon - buf));
	v->host[colon - buf] = 0;
	snprintf(v->guest, sizeof(v->guest), "%s", colon + 1);
	/* "/work/" and "/work" are one place */
	for (size_t l = strlen(v->guest); l > 1 && v->guest[l - 1] == '/'; l--)
		v->guest[l - 1] = 0;
	return 0;
}

int grant_check_volume(const char *arg, struct err *e)
{
	struct volume v;

	return split_volume(arg, &v, e);
}

static int has_type(const struct machine_config *cfg, const char *type)
{
	for (size_t i = 0; i < cfg->ndevices; i++)
		if (!strcmp(cfg->devices[i].type, type))
			return 1;
	return 0;
}

int volumes_add_slots(struct machine_config *cfg, const struct plugin_set *set, struct err *e)
{
	if (!has_type(cfg, "virtio-vsock") || !plugins_find(set, VOLUME_TYPE, SMOLVM_PLUGIN_DEVICE))
		return 0;
	for (int i = 0; i < VOLUME_SLOTS; i++)
		if (!machine_config_add_device(cfg, VOLUME_TYPE))
			return err_set(e, -ENOMEM, "out of memory");
	return 0;
}

int volumes_restore_slots(struct machine_config *cfg, const struct manifest *m, struct err *e)
{
	for (size_t i = cfg->ndevices; i < m->ndevs && !strcmp(m->devs[i].type, VOLUME_TYPE); i++)
		if (!machine_config_add_device(cfg, VOLUME_TYPE))
			return err_set(e, -ENOMEM, "out of memory");
	return 0;
}

/* The guest path the snapshot had in this slot, or NULL. */
static const char *kept_guest(struct kept *k, const char *dev, char *buf, size_t len)
{
	char key[KEPT_KEY_MAX + 1];
	const char *r = NULL;

	snprintf(key, sizeof(key), VOLUME_KEPT_PREFIX "%s", dev);
	pthread_mutex_lock(&k->lock);
	for (size_t i = 0; i < k->n && !r; i++)
		if (!strcmp(k->v[i].key, key) && k->v[i].len < len && k->v[i].len) {
			memcpy(buf, k->v[i].val, k->v[i].len);
			buf[k->v[i].len] = 0;
			r = buf;
		}
	pthread_mutex_unlock(&k->lock);
	return r;
}

/* Fills slot d with volume v. */
static int fill(struct dev_config *d, struct volume *v, struct kept *k, struct err *e)
{
	char abs[PATH_MAX], key[KEPT_KEY_MAX + 1];
	struct stat st;

	if (!realpath(v->host, abs))
		return err_set(e, -errno, "--volume %s:%s: %s", v->host, v->guest, strerror(errno));
	if (stat(abs, &st) || !S_ISDIR(st.st_mode))
		return err_set(e, -ENOTDIR, "--volume %s:%s: %s is not a directory", v->host,
			       v->guest, abs);
	if (dev_config_set(d, "path", abs) || dev_config_set(d, "guest", v->guest) ||
	    dev_config_set(d, "readonly", v->ro ? "true" : "false"))
		return err_set(e, -ENOMEM, "out of memory");
	snprintf(key, sizeof(key), VOLUME_KEPT_PREFIX "%s", d->name);
	v->used = 1;
	return kept_set(k, key, v->guest, strlen(v->guest), e);
}

/* The mount of slot d at v's guest path, for the guest's shell. The
 * slot's driver is bound first: the guest passed it over at boot. */
static int add_mount(char **script, size_t *len, const struct dev_config *d,
		     const struct volume *v)
{
	char line[800];
	int n = snprintf(line, sizeof(line),
			 "mkdir -p '%s' && mount -t 9p -o trans=virtio,version=9p2000.L %s '%s' || "
			 "{ echo \"smolvm: volume %s (%s): mount failed\" >&2; exit 1; }\n",
			 v->guest, d->name, v->guest, v->guest, d->name);
	char *s;

	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	s = realloc(*script, *len + (size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s + *len, line, (size_t)n + 1);
	*script = s;
	*len += (size_t)n;
	return 0;
}

/* Binds every virtio-mmio device without a driver: a filled slot probes
 * as a 9p device now, an empty one says ENODEV again (ignored). */
static const char bind_slots[] =
	"for d in /sys/bus/platform/devices/virtio-mmio.*; do "
	"[ -e \"$d/driver\" ] || echo \"${d##*/}\" > /sys/bus/platform/drivers/virtio-mmio/bind "
	"2>/dev/null; done; true\n";

int volumes_apply(struct machine_config *cfg, const char *const *vols, size_t n, int trusted,
		  const char *bundle, struct kept *k, char **script, struct err *e)
{
	struct volume *v = n ? calloc(n, sizeof(*v)) : NULL;
	size_t len = 0, slots = 0;
	int rc = 0, untrusted_paths = 0;
	char had[256];

	*script = NULL;
	if (n && !v)
		return err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < n; i++) {
		rc = split_volume(vols[i], &v[i], e);
		for (size_t j = 0; !rc && j < i; j++)
			if (!strcmp(v[i].guest, v[j].guest))
				rc = err_set(e, -EINVAL, "--volume: %s is given twice", v[i].guest);
	}
	/* an untrusted bundle's own shares are host paths it chose: slots */
	for (size_t i = 0; !rc && i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		if (strcmp(d->type, VOLUME_TYPE))
			continue;
		if (!trusted && dev_config_get(d, "path")) {
			dev_config_unset(d, "path");
			untrusted_paths++;
		}
		slots += !dev_config_get(d, "path");
	}
	if (!rc && untrusted_paths)
		fprintf(stderr, "smolvm: %s was not packed by you on this host: the host "
			"directories its script shares are not shared (--volume gives one)\n", bundle);
	/* the snapshot's mounts: the same guest path into the same slot */
	for (size_t i = 0; !rc && i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		const char *g;
		size_t j;
		if (strcmp(d->type, VOLUME_TYPE) || dev_config_get(d, "path") ||
		    !(g = kept_guest(k, d->name, had, sizeof(had))))
			continue;
		for (j = 0; j < n && strcmp(v[j].guest, g); j++)
			;
		if (j == n)
			rc = err_set(e, -ENOENT, "%s: its machine has a host directory mounted at %s "
				     "(%s): give it one with --volume HOSTDIR:%s (or :%s:ro)", bundle,
				     g, d->name, g, g);
		else
			rc = fill(d, &v[j], k, e);
	}
	/* the new ones: free slots, mounted by the agent */
	for (size_t j = 0; !rc && j < n; j++) {
		struct dev_config *d = NULL;
		if (v[j].used)
			continue;
		for (size_t i = 0; i < cfg->ndevices && !d; i++)
			if (!strcmp(cfg->devices[i].type, VOLUME_TYPE) &&
			    !dev_config_get(&cfg->devices[i], "path") &&
			    !kept_guest(k, cfg->devices[i].name, had, sizeof(had)))
				d = &cfg->devices[i];
		if (!d) {
			rc = err_set(e, -ENOSPC, "%s: --volume %s: %s", bundle, vols[j],
				     slots ? "every volume slot of its machine is taken"
					   : "its machine has no volume slot (it needs a guest agent, "
					     "virtio-vsock, and to be packed by a smolvm with the "
					     "virtio-9p plugin: pack it again)");
			break;
		}
		if (!len && !(rc = add_mount(script, &len, d, &v[j]))) {
			/* the bind goes first: prepend it */
			char *s = malloc(sizeof(bind_slots) + len);
			if (!s) {
				rc = -ENOMEM;
			} else {
				memcpy(s, bind_slots, sizeof(bind_slots) - 1);
				memcpy(s + sizeof(bind_slots) - 1, *script, len + 1);
				free(*script);
				*script = s;
				len += sizeof(bind_slots) - 1;
			}
		} else if (!rc) {
			rc = add_mount(script, &len, d, &v[j]);
		}
		if (rc == -ENOMEM || rc == -ENAMETOOLONG)
			rc = err_set(e, rc, "--volume %s: %s", vols[j], strerror(-rc));
		if (!rc)
			rc = fill(d, &v[j], k, e);
	}
	free(v);
	if (rc) {
		free(*script);
		*script = NULL;
	}
	return rc;
}

struct mount_out {
	char buf[1024];
	size_t len;
};

static int collect(void *opaque, int stream, const void *p, size_t n)
{
	struct mount_out *o = opaque;
	size_t room = sizeof(o->buf) - 1 - o->len;

	(void)stream;
	if (n > room)
		n = room;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = 0;
	return 0;
}

int volumes_mount(const char *vsock, const char *script, int timeout_ms, int cancel_fd,
		  struct err *e)
{
	const char *const argv[] = { "/bin/sh", "-c", script, NULL };
	struct mount_out out = { .len = 0 };
	struct agent_exec_io io = { .in_fd = -1, .out = collect, .opaque = &out,
				    .timeout_ms = timeout_ms };
	struct agent_conn a;
	struct agent_status st;
	int gerr = 0, rc = agent_connect(&a, vsock, timeout_ms, cancel_fd, e);

	out.buf[0] = 0;
	if (!rc)
		rc = agent_exec(&a, NULL, argv, NULL, &io, &st, &gerr, e);
	agent_close(&a);
	if (rc)
		return err_wrap(e, rc, "mounting the volumes in the guest");
	if (agent_status_code(&st)) {
		for (size_t l = out.len; l && out.buf[l - 1] == '\n'; l--)
			out.buf[l - 1] = 0;
		return err_set(e, -EIO, "mounting the volumes in the guest: %s (exit %d)",
			       out.buf[0] ? out.buf : "no message", agent_status_code(&st));
	}
	return 0;
}
