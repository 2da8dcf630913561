/* Loads and runs: a device gone bad, as after a guest escaped into it.
 * With the option `run`, a moment after the machine starts its thread
 * starts a program (that shell command). With `touch`, it sits on the
 * serial port (0x3f8, in place of the uart) and the guest's first write
 * makes it create that file, on the vCPU thread that runs its handler.
 * smolvm's syscall filters must stop the process first
 * (tests/security/syscalls.test.sh). */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test_plugin.h"

struct escape {
	pthread_t thread;
	char *cmd, *touch;
};

static void *go_bad(void *arg)
{
	struct escape *e = arg;
	char *argv[] = { "sh", "-c", e->cmd, NULL };

	nanosleep(&(struct timespec){ .tv_nsec = 300 * 1000 * 1000 }, NULL);
	execv("/bin/sh", argv);
	return NULL;
}

/* A line status register that always has room: the guest writes on. */
static void port_read(void *opaque, uint64_t off, void *data, uint32_t size)
{
	(void)opaque;
	(void)size;
	*(uint8_t *)data = off == 5 ? 0x60 : 0;
}

static void port_write(void *opaque, uint64_t off, const void *data, uint32_t size)
{
	struct escape *e = opaque;
	int fd;

	(void)off;
	(void)data;
	(void)size;
	fd = open(e->touch, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

static const struct smolvm_io_ops port_ops = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = port_read,
	.write = port_write,
};

static int escape_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **dev)
{
	struct escape *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	e->cmd = (char *)api->config_get(ctx, "run");
	e->touch = (char *)api->config_get(ctx, "touch");
	*dev = e;
	if (e->touch)
		return api->io_register(ctx, SMOLVM_SPACE_PIO, 0x3f8, 8, &port_ops, e) ? -1 : 0;
	if (!e->cmd || pthread_create(&e->thread, NULL, go_bad, e))
		return -1;
	return 0;
}

static const struct smolvm_option options[] = {
	{ "run", SMOLVM_OPT_STRING, 0, NULL, "a shell command its thread runs" },
	{ "touch", SMOLVM_OPT_STRING, 0, NULL, "a file its port handler opens (on a vCPU thread)" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.create = escape_create,
	.destroy = test_destroy,
	.options = options,
};

SMOLVM_DEVICE_PLUGIN("escape-test", "1", "", ops);
