/* The 9P2000.L file server of virtio-9p: answers one request at a time
 * over a host directory (the share), never reaching outside it.
 *
 * Every path is resolved from the share's directory fd with openat2()
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: no `..` above the share, no
 * symlink followed on the host (the guest's client reads links and walks
 * their targets itself, in the guest's namespace), and a symlink swapped
 * in during an operation makes it fail with ELOOP. Creations and removals
 * work on one validated name in a parent opened that way. Device files,
 * FIFOs and sockets are never opened and mknod is refused. A read-only
 * share refuses every change with EROFS.
 *
 * A fid remembers its path relative to the share (renames update it), so
 * the fids survive a snapshot: p9_server_fid() lists them, and
 * p9_server_restore_fid() opens them again under another share. */
#ifndef SMOLVM_P9_SERVER_H
#define SMOLVM_P9_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* The largest message this server takes and gives: 128 KiB (Linux's
 * default) keeps every chain within the transport's 64 buffers. */
#define P9_MAX_MSIZE (128u * 1024)
#define P9_MIN_MSIZE 4096u
#define P9_MAX_FIDS 65536u

struct p9_fid;

struct p9_server {
	int root;        /* the share, O_PATH | O_DIRECTORY */
	int readonly;
	uint32_t msize;  /* negotiated by Tversion */
	struct p9_fid **buckets;
	size_t nbuckets, nfids;
};

/* `root` is taken over (closed by p9_server_free). */
int p9_server_init(struct p9_server *s, int root, int readonly);
void p9_server_free(struct p9_server *s);
/* Forgets every fid (device reset, Tversion). */
void p9_server_reset(struct p9_server *s);

/* Answers the request in[0..inlen) into out (at most outcap bytes, at
 * least P9_HDR + 4 for an error); returns the reply's length. */
size_t p9_server_handle(struct p9_server *s, const uint8_t *in, size_t inlen, uint8_t *out,
			size_t outcap);

/* The fids, for a snapshot: calls fn for each with its number, path ("" is
 * the share), open flags and whether it is open; stops at fn's first
 * non-zero result and returns it. */
int p9_server_each_fid(struct p9_server *s,
		       int (*fn)(void *opaque, uint32_t fid, const char *path, uint32_t oflags,
				 int open),
		       void *opaque);
/* Opens `path` again as fid `fid` (open with `oflags` when `open`; never
 * creating or truncating). 0; -EINVAL for a path that is not a plain
 * relative one (untrusted state); -EEXIST for a fid already there; the
 * open's -errno (the fid is then kept, stale: its uses fail with ESTALE). */
int p9_server_restore_fid(struct p9_server *s, uint32_t fid, const char *path,
			  uint32_t oflags, int open);
/* Checks a saved path: relative, no empty, "." or ".." component. */
int p9_path_ok(const char *path);

#endif
