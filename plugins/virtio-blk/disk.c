/* virtio-blk disk backends and request execution: see disk.h. */
#include "disk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int blk_disk_open(const struct smolvm_host_api *api, smolvm_ctx *ctx, struct blk_disk *d,
		  const struct blk_disk_opts *o)
{
	off_t end;
	int rc;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	d->readonly = !!o->readonly;
	if (o->overlay) {
		struct cow_params p = { .cluster_size = o->cluster_size,
					.readonly = o->readonly };
		/* A restored disk's content comes from the snapshot: the
		 * configured overlay is not even opened. */
		rc = o->private_overlay
			     ? cow_open_private(api, ctx, o->path, o->cluster_size, &d->cow)
			     : cow_open(api, ctx, o->path, o->overlay, &p, &d->cow);
		if (!rc)
			d->size = cow_size(d->cow);
		return rc;
	}

	d->fd = open(o->path, (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (d->fd < 0) {
		rc = -errno;
		api->set_error(ctx, "cannot open disk image %s: %s", o->path, strerror(-rc));
		return rc;
	}
	if (flock(d->fd, (d->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		rc = -errno;
		api->set_error(ctx, "disk image %s is in use by another process%s", o->path,
			       d->readonly ? " that writes it" : "");
		goto fail;
	}
	end = lseek(d->fd, 0, SEEK_END);
	if (end < 0) {
		rc = -errno;
		api->set_error(ctx, "disk image %s: %s", o->path, strerror(-rc));
		goto fail;
	}
	d->size = (uint64_t)end;
	if (!d->size || d->size % BLK_SECTOR) {
		api->set_error(ctx, "disk image %s is %llu bytes, not a positive multiple of 512",
			       o->path, (unsigned long long)d->size);
		rc = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	close(d->fd);
	d->fd = -1;
	return rc;
}

int blk_disk_close(struct blk_disk *d)
{
	int rc = 0;

	if (d->cow) {
		rc = cow_close(d->cow);
		d->cow = NULL;
	} else if (d->fd >= 0) {
		rc = blk_disk_flush(d);
		close(d->fd);
		d->fd = -1;
	}
	return rc;
}

int blk_disk_read(struct blk_disk *d, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (d->cow)
		return cow_read(d->cow, buf, len, off);
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	while (done < len) {
		ssize_t n = pread(d->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the image shrank */
		done += (size_t)n;
	}
	return 0;
}

int blk_disk_write(struct blk_disk *d, const void *buf, size_t len, uint64_t off)
{
	if (d->readonly)
		return -EROFS;
	if (d->cow)
		return cow_write(d->cow, buf, len, off);
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return cow_pwrite_full(d->fd, buf, len, off);
}

int blk_disk_flush(struct blk_disk *d)
{
	if (d->cow)
		return cow_flush(d->cow);
	if (d->readonly)
		return 0;
	while (fdatasync(d->fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* Reads (to_guest) or writes the disk at `pos` from the bytes
 * [skip, skip + len) of a chain's buffers, one guest buffer at a time. */
static int transfer(struct blk_disk *d, const struct iovec *iov, unsigned n,
		    uint64_t skip, uint64_t len, uint64_t pos, int to_guest)
{
	for (unsigned i = 0; i < n && len; i++) {
		uint64_t seg = iov[i].iov_len;
		char *p = iov[i].iov_base;
		int rc;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		p += skip;
		seg -= skip;
		skip = 0;
		if (seg > len)
			seg = len;
		rc = to_guest ? blk_disk_read(d, p, (size_t)seg, pos)
			      : blk_disk_write(d, p, (size_t)seg, pos);
		if (rc)
			return rc;
		pos += seg;
		len -= seg;
	}
	return len ? -EINVAL : 0;
}

static uint64_t iov_total(const struct iovec *iov, unsigned n)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static size_t copy_from_iov(const struct iovec *iov, unsigned n, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((char *)buf + done, iov[i].iov_base, chunk);
		done += chunk;
	}
	return done;
}

static void copy_to_iov(const struct iovec *iov, unsigned n, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy(iov[i].iov_base, (const char *)buf + done, chunk);
		done += chunk;
	}
}

/* The status byte: the last byte of the last non-empty buffer. */
static void put_status(const struct iovec *iov, unsigned n, uint8_t status)
{
	while (n--) {
		if (iov[n].iov_len) {
			((uint8_t *)iov[n].iov_base)[iov[n].iov_len - 1] = status;
			return;
		}
	}
}

/* The sectors [sector, sector + bytes/512) lie inside the disk. */
static int range_ok(const struct blk_disk *d, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = d->size / BLK_SECTOR;

	return bytes % BLK_SECTOR == 0 && sector <= cap && bytes / BLK_SECTOR <= cap - sector;
}

static uint8_t do_request(struct blk_disk *d, const struct iovec *out, unsigned nout,
			  uint64_t out_len, const struct iovec *in, unsigned nin,
			  uint64_t data_in, const char *serial, int writethrough,
			  struct blk_req_result *r)
{
	struct virtio_blk_outhdr h;
	uint64_t sector, data_out = out_len - sizeof(h);
	int rc;

	copy_from_iov(out, nout, &h, sizeof(h));
	r->type = le32toh(h.type);
	sector = le64toh(h.sector);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		if (data_out || !range_ok(d, sector, data_in))
			return VIRTIO_BLK_S_IOERR;
		rc = transfer(d, in, nin, 0, data_in, sector * BLK_SECTOR, 1);
		break;
	case VIRTIO_BLK_T_OUT:
		if (d->readonly || data_in || !range_ok(d, sector, data_out))
			return VIRTIO_BLK_S_IOERR;
		rc = transfer(d, out, nout, sizeof(h), data_out, sector * BLK_SECTOR, 0);
		if (!rc && writethrough)
			rc = blk_disk_flush(d);
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (data_out || data_in)
			return VIRTIO_BLK_S_IOERR;
		rc = blk_disk_flush(d);
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES];
		if (data_out || !data_in)
			return VIRTIO_BLK_S_IOERR;
		/* NUL-padded; no terminator when all 20 bytes are used. */
		memset(id, 0, sizeof(id));
		memcpy(id, serial, strnlen(serial, sizeof(id)));
		copy_to_iov(in, nin, id, data_in < sizeof(id) ? (size_t)data_in : sizeof(id));
		return VIRTIO_BLK_S_OK;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (rc) {
		r->host_err = rc;
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

struct blk_req_result blk_disk_request(struct blk_disk *d,
				       const struct iovec *out, unsigned nout,
				       const struct iovec *in, unsigned nin,
				       const char *serial,
				       int writethrough)
{
	struct blk_req_result r = { .status = VIRTIO_BLK_S_IOERR, .type = ~0u };
	uint64_t out_len = iov_total(out, nout), in_len = iov_total(in, nin);
	uint8_t status;

	if (!in_len)
		return r; /* nowhere to put a status: give the buffers back */
	if (out_len < sizeof(struct virtio_blk_outhdr))
		status = VIRTIO_BLK_S_IOERR;
	else
		status = do_request(d, out, nout, out_len, in, nin, in_len - 1, serial,
				    writethrough, &r);
	/* The status goes last, after the data and any flush. */
	put_status(in, nin, status);
	r.status = status;
	r.written = in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)in_len;
	return r;
}
