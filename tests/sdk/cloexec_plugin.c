/* A device plugin that opens what it holds close-on-exec, as the plugin
 * guide asks ("Memory and file descriptors"): a file (O_CLOEXEC), a pipe
 * (pipe2), a listening socket (SOCK_CLOEXEC) and the connections it takes
 * (accept4 on the event loop), an eventfd. Not loaded by anything: it
 * exists to be compiled by tests/sdk/check-build-flags.sh with exactly
 * the flags docs/plugin-guide.md ("Building your plugin") gives, which
 * strict -std=c11 alone does not build (O_CLOEXEC, pipe2 and accept4 are
 * POSIX and Linux, not C11). Defines no feature macro of its own. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <smolvm/plugin.h>

struct holder {
	int file, pipe[2], listener, wake;
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
};

static void on_connection(void *opaque, int fd, uint32_t revents)
{
	struct holder *h = opaque;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	(void)revents;
	if (c >= 0)
		close(c); /* (a real device would keep it) */
	else if (errno != EAGAIN)
		h->api->log(h->ctx, SMOLVM_LOG_WARN, "accept4: %s", strerror(errno));
}

static void holder_destroy(void *dev)
{
	struct holder *h = dev;
	int fds[] = { h->file, h->pipe[0], h->pipe[1], h->listener, h->wake };

	if (h->listener >= 0)
		h->api->fd_unwatch(h->ctx, h->listener);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(h);
}

static int holder_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	const char *path = api->config_path(ctx, "path");
	const char *sock = api->config_path(ctx, "socket");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct holder *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return -ENOMEM;
	h->ctx = ctx;
	h->api = api;
	h->file = h->pipe[0] = h->pipe[1] = h->listener = h->wake = -1;
	if (!path || !sock || strlen(sock) >= sizeof(sa.sun_path)) {
		api->set_error(ctx, "path and socket (a Unix socket's path) are required");
		rc = -EINVAL;
		goto fail;
	}
	strcpy(sa.sun_path, sock);
	h->file = open(path, O_RDONLY | O_CLOEXEC);
	if (h->file < 0 || pipe2(h->pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (h->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (h->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(h->listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(h->listener, 4) < 0) {
		rc = -errno;
		api->set_error(ctx, "%s", strerror(errno));
		goto fail;
	}
	rc = api->fd_watch(ctx, h->listener, POLLIN, on_connection, h);
	if (rc) {
		close(h->listener); /* not watched: destroy must not unwatch it */
		h->listener = -1;
		goto fail;
	}
	*out = h;
	return 0;
fail:
	holder_destroy(h);
	return rc;
}

static const struct smolvm_device_ops holder_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.create = holder_create,
	.destroy = holder_destroy,
};

SMOLVM_DEVICE_PLUGIN("cloexec", "0.1.0", "test: holds descriptors opened close-on-exec",
		     holder_ops);
