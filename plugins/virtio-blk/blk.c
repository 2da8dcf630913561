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
	/* Under vd.notify_lock: while paused, kicks are only remembered. */
	int paused, kicked;
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

/* Called with vd.notify_lock held, one at a time. */
static void blk_notify(void *dev, uint32_t q)
{
	struct blk *b = dev;

	if (b->paused) {
		b->kicked = 1;
		return;
	}
	process(b, q);
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

static int blk_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct blk *b = calloc(1, sizeof(*b));
	struct blk_disk_opts o = { 0 };
	const char *serial;
	char err[768];
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
	rc = blk_disk_open(&b->disk, &o, err, sizeof(err));
	/* Restored instances of one bundle hold the configured overlay only
	 * from here until their restore() lets it go: wait a little for it. */
	for (int tries = 0; o.overlay && (rc == -EWOULDBLOCK || rc == -EAGAIN) &&
			    tries < 150; tries++) {
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
		rc = blk_disk_open(&b->disk, &o, err, sizeof(err));
	}
	if (rc) {
		api->set_error(ctx, "%s", err);
		goto fail;
	}
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

static void blk_destroy(void *dev)
{
	struct blk *b = dev;
	int rc;

	smolvm_virtio_cleanup(&b->vd);
	rc = blk_disk_close(&b->disk);
	if (rc)
		b->api->log(b->ctx, SMOLVM_LOG_ERROR, "flushing the disk failed: %s",
			    strerror(-rc));
	free(b);
}

static void blk_reset(void *dev)
{
	smolvm_virtio_reset(&((struct blk *)dev)->vd);
}

static void blk_pause(void *dev)
{
	struct blk *b = dev;

	/* Waits for a request batch in progress to finish. */
	pthread_mutex_lock(&b->vd.notify_lock);
	b->paused = 1;
	pthread_mutex_unlock(&b->vd.notify_lock);
}

static void blk_resume(void *dev)
{
	struct blk *b = dev;

	pthread_mutex_lock(&b->vd.notify_lock);
	b->paused = 0;
	/* A kick that arrived while paused, or one a snapshot lost (an
	 * ioeventfd not yet read): look at the queue once. */
	b->kicked = 0;
	process(b, 0);
	pthread_mutex_unlock(&b->vd.notify_lock);
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
 *   cluster_size (u32), map (bytes), c<i> (bytes, one per allocated
 *   cluster i, cow_cluster_len() long)        DISK_OVERLAY only
 * A writable disk without an overlay has no content we could keep. */
enum { DISK_IMAGE = 1, DISK_OVERLAY = 2 };

static int save_disk(struct blk *b, struct smolvm_state_writer *w)
{
	const struct smolvm_host_api *api = b->api;
	struct blk_disk *d = &b->disk;
	uint8_t kind = d->cow ? DISK_OVERLAY : DISK_IMAGE;
	uint64_t size = d->size, hash = 0, map_len;
	const uint8_t *map;
	uint32_t cs;
	uint8_t *buf;
	int rc;

	if (d->cow)
		hash = cow_base_hash(d->cow);
	else if ((rc = cow_image_hash(d->fd, d->size, &hash))) {
		api->set_error(b->ctx, "reading the disk image: %s", strerror(-rc));
		return rc;
	}
	if ((rc = api->state_begin(w, "disk", 0)) ||
	    (rc = api->state_put(w, "kind", SMOLVM_STATE_U8, &kind, 1)) ||
	    (rc = api->state_put(w, "base_size", SMOLVM_STATE_U64, &size, 8)) ||
	    (rc = api->state_put(w, "base_hash", SMOLVM_STATE_U64, &hash, 8)))
		return rc;
	if (kind == DISK_OVERLAY) {
		cs = cow_cluster_size(d->cow);
		map = cow_map(d->cow, &map_len);
		if (map_len > UINT32_MAX) {
			api->set_error(b->ctx, "overlay map of %llu bytes is too big to save",
				       (unsigned long long)map_len);
			return -E2BIG;
		}
		if ((rc = api->state_put(w, "cluster_size", SMOLVM_STATE_U32, &cs, 4)) ||
		    (rc = api->state_put(w, "map", SMOLVM_STATE_BYTES, map, (uint32_t)map_len)))
			return rc;
		/* One cluster at a time through one buffer. */
		buf = malloc(cs);
		if (!buf)
			return -ENOMEM;
		for (uint64_t i = 0; !rc && i < cow_clusters(d->cow); i++) {
			uint32_t len = cow_cluster_len(d->cow, i);
			char name[32];

			if (!cow_allocated(d->cow, i))
				continue;
			rc = cow_read(d->cow, buf, len, i * cs);
			if (rc) {
				api->set_error(b->ctx, "reading overlay cluster %llu: %s",
					       (unsigned long long)i, strerror(-rc));
				break;
			}
			snprintf(name, sizeof(name), "c%llu", (unsigned long long)i);
			rc = api->state_put(w, name, SMOLVM_STATE_BYTES, buf, len);
		}
		free(buf);
		if (rc)
			return rc;
	}
	return api->state_end(w);
}

/* The disk this machine was created with must be the one saved; then an
 * overlay disk moves to a private overlay holding the saved content, and
 * the configured overlay file is let go (never written by this machine). */
static int restore_disk(struct blk *b, struct smolvm_state_reader *r)
{
	const struct smolvm_host_api *api = b->api;
	struct blk_disk *d = &b->disk;
	const char *path = api->config_path(b->ctx, "path");
	uint8_t kind, *map = NULL, *buf = NULL;
	uint64_t size, hash, have_hash = 0, clusters, map_len;
	struct cow *priv = NULL, *old;
	uint32_t cs = 0;
	char err[768];
	int rc;

	rc = api->state_enter(r, "disk");
	if (rc) {
		api->set_error(b->ctx, "snapshot has no disk section");
		return rc;
	}
	if ((rc = api->state_get(r, "kind", SMOLVM_STATE_U8, &kind, 1)) ||
	    (rc = api->state_get(r, "base_size", SMOLVM_STATE_U64, &size, 8)) ||
	    (rc = api->state_get(r, "base_hash", SMOLVM_STATE_U64, &hash, 8))) {
		api->set_error(b->ctx, "snapshot: disk section incomplete");
		return rc;
	}
	if (kind != DISK_IMAGE && kind != DISK_OVERLAY) {
		api->set_error(b->ctx, "snapshot: unknown disk kind %u", kind);
		return -EINVAL;
	}
	if ((kind == DISK_OVERLAY) != !!d->cow) {
		api->set_error(b->ctx, "snapshot has a disk %s an overlay, this one is %s",
			       kind == DISK_OVERLAY ? "with" : "without",
			       d->cow ? "with" : "without");
		return -EINVAL;
	}
	if (d->cow)
		have_hash = cow_base_hash(d->cow);
	else if ((rc = cow_image_hash(d->fd, d->size, &have_hash))) {
		api->set_error(b->ctx, "reading %s: %s", path, strerror(-rc));
		return rc;
	}
	if (size != d->size || hash != have_hash) {
		api->set_error(b->ctx, "disk image %s changed since the snapshot: it had %llu "
			       "bytes (hash %016llx of the first %u KiB), now %llu bytes (hash "
			       "%016llx)", path, (unsigned long long)size,
			       (unsigned long long)hash, COW_HASH_BYTES / 1024,
			       (unsigned long long)d->size, (unsigned long long)have_hash);
		return -EINVAL;
	}
	if (kind == DISK_IMAGE)
		return api->state_leave(r);

	rc = api->state_get(r, "cluster_size", SMOLVM_STATE_U32, &cs, 4);
	if (rc || cs < COW_MIN_CLUSTER || cs > COW_MAX_CLUSTER || (cs & (cs - 1))) {
		api->set_error(b->ctx, "snapshot: bad overlay cluster size %u", cs);
		return rc ? rc : -EINVAL;
	}
	clusters = (size + cs - 1) / cs;
	map_len = (clusters + 7) / 8;
	if (map_len > UINT32_MAX) {
		api->set_error(b->ctx, "snapshot: overlay map too big");
		return -E2BIG;
	}
	map = malloc(map_len);
	buf = malloc(cs);
	if (!map || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = api->state_get(r, "map", SMOLVM_STATE_BYTES, map, (uint32_t)map_len);
	if (!rc)
		rc = cow_check_map(size, cs, map, map_len, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "no map of %llu bytes", (unsigned long long)map_len);
	if (rc) {
		api->set_error(b->ctx, "snapshot: bad overlay map: %s", err);
		goto out;
	}
	rc = cow_open_private(path, cs, &priv, err, sizeof(err));
	if (!rc && (cow_size(priv) != size || cow_base_hash(priv) != hash)) {
		snprintf(err, sizeof(err), "%s changed while it was opened", path);
		rc = -EINVAL;
	}
	if (rc) {
		api->set_error(b->ctx, "%s", err);
		goto out;
	}
	for (uint64_t i = 0; i < clusters; i++) {
		uint32_t len = cow_cluster_len(priv, i);
		char name[32];

		if (!(map[i / 8] >> (i % 8) & 1))
			continue;
		snprintf(name, sizeof(name), "c%llu", (unsigned long long)i);
		rc = api->state_get(r, name, SMOLVM_STATE_BYTES, buf, len);
		if (rc) {
			api->set_error(b->ctx, "snapshot: overlay cluster %llu %s",
				       (unsigned long long)i,
				       rc == -ENOENT ? "is allocated but has no data"
						     : "has not the expected length");
			goto out;
		}
		rc = cow_import_cluster(priv, i, buf, len);
		if (rc) {
			api->set_error(b->ctx, "writing the private overlay: %s", strerror(-rc));
			goto out;
		}
	}
	rc = cow_flush(priv);
	if (rc) {
		api->set_error(b->ctx, "writing the private overlay: %s", strerror(-rc));
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
	rc = api->state_leave(r);
out:
	if (priv)
		(void)cow_close(priv);
	free(map);
	free(buf);
	return rc;
}

static int blk_save(void *dev, struct smolvm_state_writer *w)
{
	struct blk *b = dev;
	struct blk_state s;
	int rc;

	if (!b->disk.cow && !b->disk.readonly) {
		b->api->set_error(b->ctx, "a writable disk without an overlay cannot be "
				  "snapshotted (use readonly = true or an overlay)");
		return -ENOTSUP;
	}
	/* The snapshot is only consistent with a disk that holds every
	 * write the guest saw complete. */
	rc = blk_disk_flush(&b->disk);
	if (rc) {
		b->api->set_error(b->ctx, "flushing the disk: %s", strerror(-rc));
		return rc;
	}
	fill_state(b, &s);
	rc = smolvm_state_save_fields(b->api, w, blk_fields, SMOLVM_ARRAY_LEN(blk_fields), &s);
	if (!rc)
		rc = smolvm_virtio_save(&b->vd, w);
	return rc ? rc : save_disk(b, w);
}

static int blk_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	struct blk *b = dev;
	struct blk_state s, want;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = smolvm_state_load_fields(b->api, r, blk_fields, SMOLVM_ARRAY_LEN(blk_fields),
				      &s, version);
	if (rc)
		return rc;
	fill_state(b, &want);
	if (s.capacity != want.capacity) {
		b->api->set_error(b->ctx, "snapshot has a disk of %llu sectors, this one has %llu",
				  (unsigned long long)s.capacity,
				  (unsigned long long)want.capacity);
		return -EINVAL;
	}
	if (s.readonly != want.readonly) {
		b->api->set_error(b->ctx, "snapshot has a %s disk, this one is %s",
				  s.readonly ? "read-only" : "writable",
				  want.readonly ? "read-only" : "writable");
		return -EINVAL;
	}
	if (memcmp(s.serial, want.serial, sizeof(s.serial))) {
		b->api->set_error(b->ctx, "snapshot has disk serial \"%.20s\", this one \"%.20s\"",
				  (const char *)s.serial, want.serial);
		return -EINVAL;
	}
	rc = smolvm_virtio_restore(&b->vd, r);
	/* Version 1 kept no disk content: the configured files as they are. */
	return rc || version < 2 ? rc : restore_disk(b, r);
}

static const struct smolvm_device_ops blk_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 2,
	.min_state_version = 1,
	.create = blk_create,
	.destroy = blk_destroy,
	.reset = blk_reset,
	.pause = blk_pause,
	.resume = blk_resume,
	.save = blk_save,
	.restore = blk_restore,
};

SMOLVM_DEVICE_PLUGIN("virtio-blk", "1.0.0",
		     "virtio block device over a raw image, with an optional copy-on-write overlay",
		     blk_ops);
