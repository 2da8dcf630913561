/* The event loop of the main thread: fds of devices and of the console,
 * plus a wake-up eventfd that any thread may poke. */
#ifndef SMOLVM_LOOP_H
#define SMOLVM_LOOP_H

#include <stdatomic.h>
#include <smolvm/plugin.h>

#include "lib/err.h"

struct loop_watch {
	int fd;
	uint32_t events;
	smolvm_fd_cb cb;
	void *opaque;
};

struct loop {
	struct loop_watch *w;
	size_t n;
	int wake_fd;
	atomic_int stop;
	void (*on_wake)(void *opaque);
	void *wake_opaque;
};

int loop_init(struct loop *l, struct err *e) WARN_UNUSED;
void loop_free(struct loop *l);
/* Only from the loop thread (or before it runs). */
int loop_watch(struct loop *l, int fd, uint32_t events, smolvm_fd_cb cb, void *opaque);
int loop_unwatch(struct loop *l, int fd);
int loop_set_events(struct loop *l, int fd, uint32_t events);
/* From any thread: run on_wake() on the loop thread soon. */
void loop_wake(struct loop *l);
/* From any thread: make loop_run() return. */
void loop_stop(struct loop *l);
int loop_run(struct loop *l);

#endif
