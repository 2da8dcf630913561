#include "session/bind.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void runtime_cleanup(struct runtime *rt)
{
	if (rt->dir[0]) {
		DIR *d = opendir(rt->dir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char p[600];
			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", rt->dir, de->d_name);
			unlink(p);
		}
		if (d)
			closedir(d);
		rmdir(rt->dir);
		rt->dir[0] = 0;
	}
	free(rt->vsock);
	rt->vsock = NULL;
}

static int make_dir(struct runtime *rt, struct err *e)
{
	const char *base = getenv("XDG_RUNTIME_DIR");

	snprintf(rt->dir, sizeof(rt->dir), "%s/smolvm-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(rt->dir)) {
		int code = errno;
		err_set(e, -code, "%s: %s", rt->dir, strerror(code));
		rt->dir[0] = 0;
		return -code;
	}
	return 0;
}

int runtime_dir(struct runtime *rt, struct err *e)
{
	return rt->dir[0] ? 0 : make_dir(rt, e);
}

int bind_vsock(struct machine_config *cfg, int force, struct runtime *rt, struct err *e)
{
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		const char *path;
		char sock[400];
		int rc;

		if (strcmp(d->type, "virtio-vsock"))
			continue;
		if (force || !dev_config_get(d, "socket")) {
			if (!rt->dir[0] && (rc = make_dir(rt, e)))
				return rc;
			snprintf(sock, sizeof(sock), "%s/%s.sock", rt->dir, d->name);
			if (dev_config_set(d, "socket", sock))
				return err_set(e, -ENOMEM, "out of memory");
		}
		path = dev_config_path(d, "socket", cfg->script);
		if (!rt->vsock && path && !(rt->vsock = strdup(path)))
			return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

int bind_rootfs(struct machine_config *cfg, const char *image, const char *id,
		struct runtime *rt, struct err *e)
{
	struct dev_config *d = cfg->ndevices ? &cfg->devices[0] : NULL;
	char cow[400];
	int rc;

	if (!d || strcmp(d->type, "virtio-blk") || !dev_config_get(d, "serial") ||
	    strcmp(dev_config_get(d, "serial"), "rootfs"))
		return err_set(e, -EINVAL, "the root filesystem's disk is missing");
	if (!rt->dir[0] && (rc = make_dir(rt, e)))
		return rc;
	/* the image is only read; what the guest writes goes to an overlay
	 * that lives as long as the machine (a bundle saves its content) */
	snprintf(cow, sizeof(cow), "%s/rootfs.cow", rt->dir);
	free(cfg->rootfs_id);
	cfg->rootfs_id = strdup(id);
	if (!cfg->rootfs_id || dev_config_set(d, "path", image) ||
	    dev_config_set(d, "overlay", cow))
		return err_set(e, -ENOMEM, "out of memory");
	return 0;
}
