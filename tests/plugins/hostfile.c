/* Loads and runs: a device with a host file, as a third party writes one.
 * Its option `log` (a file name, SMOLVM_OPT_PATH) is opened for appending
 * in create, and it writes a line there when created and when restored,
 * so a test sees which host file a machine used. Its state is empty.
 * tests/integration/options.test.sh re-binds it at restore (--bind). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_plugin.h"

struct hostfile {
	int fd;
};

static void say(struct hostfile *h, const char *what)
{
	ssize_t n = write(h->fd, what, strlen(what));
	(void)n;
}

static int hostfile_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **dev)
{
	const char *path = api->config_path(ctx, "log");
	struct hostfile *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (h->fd < 0) {
		int rc = -errno;
		api->set_error(ctx, "%s: %s", path, strerror(errno));
		free(h);
		return rc;
	}
	if (!SMOLVM_HAS(api, restoring) || !api->restoring(ctx))
		say(h, "created\n");
	*dev = h;
	return 0;
}

static void hostfile_destroy(void *dev)
{
	struct hostfile *h = dev;

	close(h->fd);
	free(h);
}

static int hostfile_save(void *dev, struct smolvm_state_writer *w)
{
	(void)dev;
	(void)w;
	return 0;
}

static int hostfile_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	(void)r;
	(void)version;
	say(dev, "restored\n");
	return 0;
}

static const struct smolvm_option options[] = {
	{ "log", SMOLVM_OPT_PATH, SMOLVM_OPT_REQUIRED, NULL, "a file it writes a line to" },
	{ "label", SMOLVM_OPT_STRING, 0, NULL, "any text" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.create = hostfile_create,
	.destroy = hostfile_destroy,
	.save = hostfile_save,
	.restore = hostfile_restore,
	.options = options,
};

SMOLVM_DEVICE_PLUGIN("hostfile-test", "1", "", ops);
