/* Loads and runs: a device gone bad, as after a guest escaped into it.
 * A moment after the machine starts, its thread starts a program (the
 * shell command in the option `run`). smolvm's syscall filter must stop
 * the process first (tests/security/syscalls.test.sh). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test_plugin.h"

struct escape {
	pthread_t thread;
	char *cmd;
};

static void *go_bad(void *arg)
{
	struct escape *e = arg;
	char *argv[] = { "sh", "-c", e->cmd, NULL };

	nanosleep(&(struct timespec){ .tv_nsec = 300 * 1000 * 1000 }, NULL);
	execv("/bin/sh", argv);
	return NULL;
}

static int escape_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **dev)
{
	struct escape *e = calloc(1, sizeof(*e));
	const char *cmd = api->config_get(ctx, "run");

	if (!e || !cmd)
		return -1;
	e->cmd = (char *)cmd;
	*dev = e;
	return pthread_create(&e->thread, NULL, go_bad, e) ? -1 : 0;
}

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.create = escape_create,
	.destroy = test_destroy,
};

SMOLVM_DEVICE_PLUGIN("escape-test", "1", "", ops);
