/* The disk behind a virtio-blk device (a raw image, or a base image with a
 * copy-on-write overlay) and the execution of one virtio-blk request over
 * a chain's buffers. Independent of the transport, so it can be tested
 * without a guest. */
#ifndef BLK_DISK_H
#define BLK_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_blk.h>

#include "cow.h"

#define BLK_SECTOR 512u

struct blk_disk {
	int fd;          /* the raw image, or -1 with an overlay */
	struct cow *cow; /* or NULL */
	uint64_t size;   /* bytes, a positive multiple of 512 */
	int readonly;
};

struct blk_disk_opts {
	const char *path;    /* the image (the base, with an overlay) */
	const char *overlay; /* NULL: write the image itself */
	int readonly;
	uint32_t cluster_size; /* for a new overlay; 0: default */
	int private_overlay;   /* restore: a throwaway overlay, not `overlay` */
};

/* 0, or -errno after api->set_error(ctx, ...) naming the file. Locks the
 * image (shared when only read, exclusive when written directly) so that a
 * machine writing an image cannot run beside another that reads it. */
__attribute__((warn_unused_result))
int blk_disk_open(const struct smolvm_host_api *api, smolvm_ctx *ctx, struct blk_disk *d,
		  const struct blk_disk_opts *o);
/* Flushes, closes; returns the flush result. */
int blk_disk_close(struct blk_disk *d);
__attribute__((warn_unused_result))
int blk_disk_read(struct blk_disk *d, void *buf, size_t len, uint64_t off);
__attribute__((warn_unused_result))
int blk_disk_write(struct blk_disk *d, const void *buf, size_t len, uint64_t off);
__attribute__((warn_unused_result))
int blk_disk_flush(struct blk_disk *d);

struct blk_req_result {
	uint32_t written;  /* bytes for the used ring (0: no status byte) */
	uint8_t status;    /* VIRTIO_BLK_S_* */
	uint32_t type;     /* the request type, when the header was readable */
	int host_err;      /* -errno of a host I/O failure, else 0 */
};

/* Executes one request: `out` holds the 16-byte header (then the data of
 * a write), `in` the data of a read and, as its last byte, the status.
 * Every request is validated (header size, data a multiple of 512 inside
 * the disk, the status byte last); a bad one gets VIRTIO_BLK_S_IOERR.
 * `serial` (at most 20 bytes used) answers GET_ID. With
 * `writethrough` (the driver did not negotiate FLUSH) each write is made
 * durable before it completes. */
struct blk_req_result blk_disk_request(struct blk_disk *d,
				       const struct iovec *out, unsigned nout,
				       const struct iovec *in, unsigned nin,
				       const char *serial,
				       int writethrough);

#endif
