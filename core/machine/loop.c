#include "machine/loop.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int loop_init(struct loop *l, struct err *e)
{
	memset(l, 0, sizeof(*l));
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0)
		return err_set(e, -errno, "eventfd: %s", strerror(errno));
	return 0;
}

void loop_free(struct loop *l)
{
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	free(l->w);
	l->w = NULL;
	l->n = 0;
	l->wake_fd = -1;
}

int loop_watch(struct loop *l, int fd, uint32_t events, smolvm_fd_cb cb, void *opaque)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->w[i].fd == fd)
			return -EEXIST;
	struct loop_watch *nv = realloc(l->w, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->w = nv;
	l->w[l->n++] = (struct loop_watch){ fd, events, cb, opaque };
	return 0;
}

int loop_unwatch(struct loop *l, int fd)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->w[i].fd == fd) {
			l->w[i] = l->w[--l->n];
			return 0;
		}
	}
	return -ENOENT;
}

int loop_set_events(struct loop *l, int fd, uint32_t events)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->w[i].fd == fd) {
			l->w[i].events = events;
			return 0;
		}
	}
	return -ENOENT;
}

void loop_wake(struct loop *l)
{
	uint64_t one = 1;
	ssize_t r = write(l->wake_fd, &one, sizeof(one));
	(void)r; /* a full counter already means "wake up" */
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, 1);
	loop_wake(l);
}

int loop_run(struct loop *l)
{
	struct pollfd *pfd = NULL;
	size_t cap = 0;

	while (!atomic_load(&l->stop)) {
		size_t n = l->n + 1;
		if (n > cap) {
			struct pollfd *np = realloc(pfd, n * sizeof(*np));
			if (!np) {
				free(pfd);
				return -ENOMEM;
			}
			pfd = np;
			cap = n;
		}
		pfd[0] = (struct pollfd){ .fd = l->wake_fd, .events = POLLIN };
		for (size_t i = 0; i < l->n; i++)
			pfd[i + 1] = (struct pollfd){ .fd = l->w[i].fd,
						      .events = (short)l->w[i].events };
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			free(pfd);
			return -errno;
		}
		if (pfd[0].revents) {
			uint64_t v;
			ssize_t r = read(l->wake_fd, &v, sizeof(v));
			(void)r;
			if (l->on_wake)
				l->on_wake(l->wake_opaque);
		}
		/* Callbacks may add or drop watches: match by fd, not index. */
		for (size_t i = 1; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			for (size_t j = 0; j < l->n; j++) {
				if (l->w[j].fd == pfd[i].fd) {
					l->w[j].cb(l->w[j].opaque, pfd[i].fd,
						   (uint32_t)pfd[i].revents);
					break;
				}
			}
		}
	}
	free(pfd);
	return 0;
}
