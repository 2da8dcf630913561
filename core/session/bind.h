/* Binding host resources to a machine's devices before it is built: a
 * private runtime directory for its sockets, the virtio-vsock socket each
 * device listens on, the root filesystem image under its overlay; the
 * grants of restored machines (grants.h) put their overlays there too. */
#ifndef SMOLVM_BIND_H
#define SMOLVM_BIND_H

#include "lib/err.h"
#include "machine/config.h"

/* A private directory for the machine's sockets, removed at the end. */
struct runtime {
	char dir[300];
	char *vsock; /* the first virtio-vsock device's socket */
};

/* Every virtio-vsock device gets a socket in the private directory unless
 * the script names one (and always with `force`: clones of one bundle must
 * not fight over a name). */
int bind_vsock(struct machine_config *cfg, int force, struct runtime *rt,
	       struct err *e) WARN_UNUSED;
/* The root filesystem's disk (devices[0], see script/declare.c) reads
 * `image` (cached as `id`) under a copy-on-write overlay in the private
 * directory. */
int bind_rootfs(struct machine_config *cfg, const char *image, const char *id,
		struct runtime *rt, struct err *e) WARN_UNUSED;
/* The private directory, made on first use. */
int runtime_dir(struct runtime *rt, struct err *e) WARN_UNUSED;
void runtime_cleanup(struct runtime *rt);

#endif
