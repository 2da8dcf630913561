/* virtio-blk: a raw disk image as the guest's /dev/vdX, optionally behind a
 * copy-on-write overlay that leaves the image untouched.
 *
 *   { type = "virtio-blk", path = "disk.img", readonly = false,
 *     overlay = "disk.cow", serial = "data" }
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

#include "disk.h"

#define QUEUE_SIZE 256
/* Data buffers per request: the chain's limit less the header and the
 * status, with one to spare for a driver that splits the header. */
#define SEG_MAX (SMOLVM_VIRTIO_MAX_SEGS - 2)

struct blk {
	struct smolvm_virtio_dev vd;
	struct smolvm_virtio_ops vops; /* features depend on the options */
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	struct blk_disk disk;
	struct virtio_blk_config cfg; /* little-endian, as the guest reads it */
	char serial[VIRTIO_BLK_ID_BYTES];
	int io_errors; /* host I/O failures so far (only the first is logged) */
};

/* Guest-visible facts a snapshot depends on; restore checks they still
 * hold for the disk this machine was built with. */
struct blk_state {
	uint64_t capacity;
	uint8_t readonly;
	uint8_t serial[VIRTIO_BLK_ID_BYTES];
};

static const struct smolvm_state_field blk_fields[] = {
	SMOLVM_FIELD(struct blk_state, capacity, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct blk_state, readonly, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct blk_state, serial, SMOLVM_STATE_BYTES, 1),
};

static void handle(struct blk *b, uint32_t q, const struct smolvm_virtq_elem *e)
{
	int writethrough = !(b->vd.driver_features & (1ull << VIRTIO_BLK_F_FLUSH));
	struct blk_req_result r = blk_disk_request(&b->disk, e->out, e->nout, e->in, e->nin,
						   b->serial, writethrough);

	if (r.host_err && !b->io_errors++)
		b->api->log(b->ctx, SMOLVM_LOG_WARN,
			    "I/O error on request type %u: %s (further errors not logged)",
			    r.type, strerror(-r.host_err));
	smolvm_virtq_push(&b->vd, q, e, r.written);
}

/* Every available request, then one interrupt if the driver wants it. */
static void process(struct blk *b, uint32_t q)
{
	struct smolvm_virtq_elem e;
	int rc;

	for (;;) {
		while ((rc = smolvm_virtq_pop(&b->vd, q, &e)) > 0)
			handle(b, q, &e);
		smolvm_virtq_notify(&b->vd, q);
		if (rc < 0)
			return;
		/* smolvm_virtq_pop() publishes avail_event with a release
		 * store and then reads avail->idx: a later load may pass an
		 * earlier store, so the driver could skip its kick while we
		 * saw an empty ring. A full fence, then look once more. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (smolvm_virtq_pop(&b->vd, q, &e) <= 0)
			return;
		handle(b, q, &e);
	}
}

/* Called with vd.notify_lock held, one at a time; never while paused (the
 * transport holds kicks back until resume). */
static void blk_notify(void *dev, uint32_t q)
{
	process(dev, q);
}

static void blk_config_read(void *dev, uint32_t off, void *data, uint32_t size)
{
	struct blk *b = dev;

	/* The transport checked off + size against config_size. */
	memcpy(data, (const uint8_t *)&b->cfg + off, size);
}

static int parse_bool(const char *s, int dflt, int *out)
{
	if (!s) {
		*out = dflt;
		return 0;
	}
	if (!strcmp(s, "true") || !strcmp(s, "1")) {
		*out = 1;
		return 0;
	}
	if (!strcmp(s, "false") || !strcmp(s, "0")) {
		*out = 0;
		return 0;
	}
	return -EINVAL;
}

static int configure(struct blk *b, struct blk_disk_opts *o)
{
	const struct smolvm_host_api *api = b->api;
	const char *ro = api->config_get(b->ctx, "readonly");
	const char *serial = api->config_get(b->ctx, "serial");

	o->path = api->config_path(b->ctx, "path");
	o->overlay = api->config_path(b->ctx, "overlay");
	if (!o->path) {
		api->set_error(b->ctx, "missing option \"path\" (the raw disk image, e.g. "
			       "path = \"disk.img\")");
		return -EINVAL;
	}
	if (parse_bool(ro, 0, &o->readonly)) {
		api->set_error(b->ctx, "readonly: expected true or false, got \"%s\"", ro);
		return -EINVAL;
	}
	if (serial && strlen(serial) > VIRTIO_BLK_ID_BYTES) {
		api->set_error(b->ctx, "serial \"%s\": at most %d characters", serial,
			       VIRTIO_BLK_ID_BYTES);
		return -EINVAL;
	}
	return 0;
}

/* The default serial: "smolvm" and the device's slot on the virtio-mmio
 * bus (the host API does not tell a plugin its instance index). */
static void default_serial(struct blk *b)
{
	unsigned slot = (unsigned)((b->vd.base / SMOLVM_VIRTIO_MMIO_SIZE) & 0xfff);

	snprintf(b->serial, sizeof(b->serial), "smolvm%u", slot);
}

static void fill_state(const struct blk *b, struct blk_state *s)
{
	memset(s, 0, sizeof(*s));
	s->capacity = b->disk.size / BLK_SECTOR;
	s->readonly = (uint8_t)b->disk.readonly;
	memcpy(s->serial, b->serial, sizeof(s->serial));
}

/* The disk's content in a snapshot, section "disk":
 *   kind (u8)        DISK_IMAGE: a read-only image, only identified;
 *                    DISK_OVERLAY: a base and the overlay's content
 *   base_size, base_hash (u64)  the image / base: size, cow_image_hash()
 *   cluster_size (u32), map (bytes)           DISK_OVERLAY only, then
 *   either image (u8, 1): the clusters are in the bundle's image
 *     "overlay" (ABI 1.4 save_image: cluster i at i * cluster_size, the
 *     rest holes; chunked, compressed, and in a child bundle only what
 *     changed since the parent) - state version 3;
 *   or c<i> (bytes, one per allocated cluster i, cow_cluster_len() long),
 *     from a host without save_image, and state version 2.
 * A writable disk without an overlay has no content we could keep. */
enum { DISK_IMAGE = 1, DISK_OVERLAY = 2 };

struct disk_id {
	uint8_t kind;
	uint64_t base_size;
	uint64_t base_hash;
};

static const struct smolvm_state_field disk_fields[] = {
	SMOLVM_FIELD(struct disk_id, kind, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct disk_id, base_size, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct disk_id, base_hash, SMOLVM_STATE_U64, 1),
};

static int save_disk(struct blk *b, struct smolvm_state_out *o)
{
	struct blk_disk *d = &b->disk;
	struct disk_id id = { .kind = d->cow ? DISK_OVERLAY : DISK_IMAGE, .base_size = d->size };
	uint64_t map_len;
	const uint8_t *map;
	uint32_t cs;
	uint8_t *buf;
	int rc;

	if (d->cow)
		id.base_hash = cow_base_hash(d->cow);
	else if ((rc = cow_image_hash(d->fd, d->size, &id.base_hash)))
		return smolvm_state_out_fail(o, rc, "reading the disk image: %s", strerror(-rc));
	smolvm_state_begin(o, "disk");
	smolvm_state_put_fields(o, disk_fields, SMOLVM_ARRAY_LEN(disk_fields), &id);
	if (id.kind == DISK_OVERLAY) {
		cs = cow_cluster_size(d->cow);
		map = cow_map(d->cow, &map_len);
		if (map_len > UINT32_MAX)
			return smolvm_state_out_fail(o, -E2BIG,
						     "overlay map of %llu bytes is too big to save",
						     (unsigned long long)map_len);
		smolvm_state_put_u32(o, "cluster_size", cs);
		smolvm_state_put_bytes(o, "map", map, (uint32_t)map_len);
		if (SMOLVM_HAS(b->api, save_image)) {
			rc = b->api->save_image(b->ctx, "overlay", cow_fd(d->cow),
						cow_data_offset(d->cow), d->size);
			if (rc)
				return smolvm_state_out_fail(o, rc, "saving the overlay's clusters");
			smolvm_state_put_u8(o, "image", 1);
			smolvm_state_end(o);
			return o->rc;
		}
		/* One cluster at a time through one buffer. */
		buf = malloc(cs);
		if (!buf)
			return smolvm_state_out_fail(o, -ENOMEM, "out of memory");
		for (uint64_t i = 0; !o->rc && i < cow_clusters(d->cow); i++) {
			uint32_t len = cow_cluster_len(d->cow, i);
			char name[32];

			if (!cow_allocated(d->cow, i))
				continue;
			rc = cow_read(d->cow, buf, len, i * cs);
			if (rc) {
				smolvm_state_out_fail(o, rc, "reading overlay cluster %llu: %s",
						      (unsigned long long)i, strerror(-rc));
				break;
			}
			snprintf(name, sizeof(name), "c%llu", (unsigned long long)i);
			smolvm_state_put_bytes(o, name, buf, len);
		}
		free(buf);
	}
	smolvm_state_end(o);
	return o->rc;
}

/* The disk this machine was created with must be the one saved; then an
 * overlay disk moves to a private overlay holding the saved content, and
 * the configured overlay file is let go (never written by this machine). */
static int restore_disk(struct blk *b, struct smolvm_state_in *in)
{
	const struct smolvm_host_api *api = b->api;
	struct blk_disk *d = &b->disk;
	const char *path = api->config_path(b->ctx, "path");
	struct disk_id id;
	uint8_t *map = NULL, *buf = NULL, in_image = 0;
	uint64_t have_hash = 0, clusters, map_len, img_size = 0;
	int img = -1;
	struct cow *priv = NULL, *old;
	uint32_t cs = 0;
	int missing, rc;

	rc = smolvm_state_enter_opt(in, "disk", &missing);
	if (!rc && missing)
		rc = smolvm_state_in_fail(in, -ENOENT, "snapshot has no disk section");
	if (rc || (rc = smolvm_state_get_fields(in, disk_fields, SMOLVM_ARRAY_LEN(disk_fields),
						&id, 1)))
		return rc;
	if (id.kind != DISK_IMAGE && id.kind != DISK_OVERLAY)
		return smolvm_state_in_fail(in, -EINVAL, "snapshot: unknown disk kind %u", id.kind);
	if ((id.kind == DISK_OVERLAY) != !!d->cow)
		return smolvm_state_in_fail(in, -EINVAL,
					    "snapshot has a disk %s an overlay, this one is %s",
					    id.kind == DISK_OVERLAY ? "with" : "without",
					    d->cow ? "with" : "without");
	if (d->cow)
		have_hash = cow_base_hash(d->cow);
	else if ((rc = cow_image_hash(d->fd, d->size, &have_hash)))
		return smolvm_state_in_fail(in, rc, "reading %s: %s", path, strerror(-rc));
	if (id.base_size != d->size || id.base_hash != have_hash)
		return smolvm_state_in_fail(in, -EINVAL, "disk image %s changed since the snapshot: "
					    "it had %llu bytes (hash %016llx of the first %u KiB), "
					    "now %llu bytes (hash %016llx)", path,
					    (unsigned long long)id.base_size,
					    (unsigned long long)id.base_hash, COW_HASH_BYTES / 1024,
					    (unsigned long long)d->size,
					    (unsigned long long)have_hash);
	if (id.kind == DISK_IMAGE) {
		smolvm_state_leave(in);
		return 0;
	}

	rc = smolvm_state_get_opt(in, "cluster_size", SMOLVM_STATE_U32, &cs, sizeof(cs));
	if (rc || cs < COW_MIN_CLUSTER || cs > COW_MAX_CLUSTER || (cs & (cs - 1)))
		return smolvm_state_in_fail(in, rc ? rc : -EINVAL,
					    "snapshot: bad overlay cluster size %u", cs);
	clusters = (id.base_size + cs - 1) / cs;
	map_len = (clusters + 7) / 8;
	if (map_len > UINT32_MAX)
		return smolvm_state_in_fail(in, -E2BIG, "snapshot: overlay map too big");
	map = malloc(map_len);
	buf = malloc(cs);
	if (!map || !buf) {
		rc = smolvm_state_in_fail(in, -ENOMEM, "out of memory");
		goto out;
	}
	rc = smolvm_state_get_opt(in, "map", SMOLVM_STATE_BYTES, map, (uint32_t)map_len);
	if (rc)
		smolvm_state_in_fail(in, rc, "snapshot: bad overlay map: no map of %llu bytes",
				     (unsigned long long)map_len);
	if (!rc)
		rc = cow_check_map(api, b->ctx, id.base_size, cs, map, map_len);
	if (!rc)
		rc = cow_open_private(api, b->ctx, path, cs, &priv);
	if (!rc && (cow_size(priv) != id.base_size || cow_base_hash(priv) != id.base_hash))
		rc = smolvm_state_in_fail(in, -EINVAL, "%s changed while it was opened", path);
	if (!rc && !smolvm_state_get_opt(in, "image", SMOLVM_STATE_U8, &in_image, 1) && in_image) {
		rc = SMOLVM_HAS(api, open_image) ? api->open_image(b->ctx, "overlay", &img, &img_size)
						 : -ENOTSUP;
		if (rc)
			smolvm_state_in_fail(in, rc, "snapshot: cannot read the overlay's clusters "
					     "(its image \"overlay\")");
		else if (img_size != id.base_size)
			rc = smolvm_state_in_fail(in, -EINVAL, "snapshot: the overlay's image holds "
						  "%llu bytes for a disk of %llu",
						  (unsigned long long)img_size,
						  (unsigned long long)id.base_size);
	}
	if (rc)
		goto out;
	for (uint64_t i = 0; i < clusters; i++) {
		uint32_t len = cow_cluster_len(priv, i);
		char name[32];

		if (!(map[i / 8] >> (i % 8) & 1))
			continue;
		snprintf(name, sizeof(name), "c%llu", (unsigned long long)i);
		if (img >= 0) {
			ssize_t n = pread(img, buf, len, (off_t)(i * cs));
			rc = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
			if (rc)
				smolvm_state_in_fail(in, rc, "reading overlay cluster %llu from its "
						     "image: %s", (unsigned long long)i, strerror(-rc));
		} else {
			rc = smolvm_state_get_opt(in, name, SMOLVM_STATE_BYTES, buf, len);
			if (rc == -ENOENT || rc == -EBADMSG)
				smolvm_state_in_fail(in, rc, "snapshot: overlay cluster %llu %s",
						     (unsigned long long)i,
						     rc == -ENOENT ? "is allocated but has no data"
								   : "has not the expected length");
		}
		if (rc)
			goto out;
		rc = cow_import_cluster(priv, i, buf, len);
		if (rc) {
			smolvm_state_in_fail(in, rc, "writing the private overlay: %s", strerror(-rc));
			goto out;
		}
	}
	rc = cow_flush(priv);
	if (rc) {
		smolvm_state_in_fail(in, rc, "writing the private overlay: %s", strerror(-rc));
		goto out;
	}
	old = d->cow;
	d->cow = priv;
	priv = NULL;
	/* Opened by create() and not written since: only its lock to drop. */
	if (cow_close(old))
		api->log(b->ctx, SMOLVM_LOG_WARN, "closing the configured overlay failed");
	api->log(b->ctx, SMOLVM_LOG_DEBUG, "disk restored into a private overlay (%llu "
		 "clusters)", (unsigned long long)cow_allocated_count(d->cow));
	smolvm_state_leave(in);
out:
	if (priv)
		(void)cow_close(priv);
	if (img >= 0)
		close(img);
	free(map);
	free(buf);
	return rc;
}

/* ---- the device's hooks (the transport holds vd.notify_lock) ------------------ */

static int blk_save(void *dev, struct smolvm_state_out *o)
{
	struct blk *b = dev;
	struct blk_state s;
	int rc;

	if (!b->disk.cow && !b->disk.readonly)
		return smolvm_state_out_fail(o, -ENOTSUP, "a writable disk without an overlay "
					     "cannot be snapshotted (use readonly = true or an "
					     "overlay)");
	/* The snapshot is only consistent with a disk that holds every
	 * write the guest saw complete. */
	rc = blk_disk_flush(&b->disk);
	if (rc)
		return smolvm_state_out_fail(o, rc, "flushing the disk: %s", strerror(-rc));
	fill_state(b, &s);
	smolvm_state_put_fields(o, blk_fields, SMOLVM_ARRAY_LEN(blk_fields), &s);
	smolvm_virtio_put_state(&b->vd, o);
	return save_disk(b, o);
}

static int blk_restore(void *dev, struct smolvm_state_in *in, uint32_t version)
{
	struct blk *b = dev;
	struct blk_state s, want;
	int rc;

	/* As blk_save: with no overlay a writable disk would be the host file
	 * itself, whatever the snapshot says it held. Version 1 saved no disk
	 * identity at all: only a read-only disk may restore from it. */
	if (!b->disk.cow && !b->disk.readonly)
		return smolvm_state_in_fail(in, -ENOTSUP, "a writable disk without an overlay "
					    "cannot be restored (use readonly = true or an "
					    "overlay)");
	if (version < 2 && !b->disk.readonly)
		return smolvm_state_in_fail(in, -EINVAL, "snapshot of a writable disk from an old "
					    "version without the disk's content: refused");
	memset(&s, 0, sizeof(s));
	rc = smolvm_state_get_fields(in, blk_fields, SMOLVM_ARRAY_LEN(blk_fields), &s, version);
	if (rc)
		return rc;
	fill_state(b, &want);
	if (s.capacity != want.capacity)
		return smolvm_state_in_fail(in, -EINVAL,
					    "snapshot has a disk of %llu sectors, this one has %llu",
					    (unsigned long long)s.capacity,
					    (unsigned long long)want.capacity);
	if (s.readonly != want.readonly)
		return smolvm_state_in_fail(in, -EINVAL, "snapshot has a %s disk, this one is %s",
					    s.readonly ? "read-only" : "writable",
					    want.readonly ? "read-only" : "writable");
	if (memcmp(s.serial, want.serial, sizeof(s.serial)))
		return smolvm_state_in_fail(in, -EINVAL,
					    "snapshot has disk serial \"%.20s\", this one \"%.20s\"",
					    (const char *)s.serial, want.serial);
	rc = smolvm_virtio_get_state(&b->vd, in);
	/* Version 1 kept no disk content: the configured files as they are. */
	return rc || version < 2 ? rc : restore_disk(b, in);
}

/* A kick that arrived while paused is delivered after this, but one a
 * snapshot lost (an ioeventfd not yet read) is not: look at the queue once. */
static void blk_resume(void *dev)
{
	process(dev, 0);
}

static void blk_destroy(void *dev)
{
	struct blk *b = dev;
	int rc = blk_disk_close(&b->disk);

	if (rc)
		b->api->log(b->ctx, SMOLVM_LOG_ERROR, "flushing the disk failed: %s",
			    strerror(-rc));
}

static int blk_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct blk *b = calloc(1, sizeof(*b));
	struct blk_disk_opts o = { 0 };
	const char *serial;
	uint64_t features;
	int rc;

	if (!b)
		return -ENOMEM;
	b->ctx = ctx;
	b->api = api;
	b->disk.fd = -1;
	rc = configure(b, &o);
	if (rc)
		goto fail;
	o.private_overlay = SMOLVM_HAS(api, restoring) && api->restoring(ctx);
	rc = blk_disk_open(api, ctx, &b->disk, &o);
	/* Restored instances of one bundle hold the configured overlay only
	 * from here until their restore() lets it go: wait a little for it. */
	for (int tries = 0; o.overlay && (rc == -EWOULDBLOCK || rc == -EAGAIN) &&
			    tries < 150; tries++) {
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
		rc = blk_disk_open(api, ctx, &b->disk, &o);
	}
	if (rc)
		goto fail; /* blk_disk_open said why */
	if (b->disk.cow && cow_warning(b->disk.cow))
		api->log(ctx, SMOLVM_LOG_WARN, "%s", cow_warning(b->disk.cow));

	features = (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
		   (1ull << VIRTIO_BLK_F_BLK_SIZE);
	if (b->disk.readonly)
		features |= 1ull << VIRTIO_BLK_F_RO;
	b->cfg.capacity = htole64(b->disk.size / BLK_SECTOR);
	b->cfg.seg_max = htole32(SEG_MAX);
	b->cfg.blk_size = htole32(BLK_SECTOR);

	b->vops = (struct smolvm_virtio_ops){
		.device_id = VIRTIO_ID_BLOCK,
		.num_queues = 1,
		.queue_max_size = QUEUE_SIZE,
		.features = features,
		.config_size = sizeof(b->cfg),
		.config_read = blk_config_read,
		.queue_notify = blk_notify,
		.resume = blk_resume,
		.save = blk_save,
		.restore = blk_restore,
		.destroy = blk_destroy,
	};
	rc = smolvm_virtio_init(&b->vd, ctx, api, &b->vops, b);
	if (rc)
		goto fail;
	serial = api->config_get(ctx, "serial");
	if (serial)
		memcpy(b->serial, serial, strnlen(serial, sizeof(b->serial)));
	else
		default_serial(b);
	*out = b;
	return 0;
fail:
	blk_disk_close(&b->disk);
	free(b);
	return rc;
}

static const struct smolvm_option blk_options[] = {
	{ "path", SMOLVM_OPT_PATH, SMOLVM_OPT_REQUIRED, NULL,
	  "the raw disk image, a multiple of 512 bytes" },
	{ "readonly", SMOLVM_OPT_BOOL, 0, "false", "the guest cannot write" },
	{ "overlay", SMOLVM_OPT_PATH, 0, NULL,
	  "a copy-on-write file (made if absent): the image is only read" },
	{ "serial", SMOLVM_OPT_STRING, 0, "smolvm<slot>", "the disk's ID, at most 20 bytes" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops blk_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct blk, blk_create, 3, 1, blk_options);

SMOLVM_DEVICE_PLUGIN("virtio-blk", "1.0.0",
		     "virtio block device over a raw image, with an optional copy-on-write overlay",
		     blk_ops);
