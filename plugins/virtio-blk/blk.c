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
	rc = blk_disk_open(&b->disk, &o, err, sizeof(err));
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

static int blk_save(void *dev, struct smolvm_state_writer *w)
{
	struct blk *b = dev;
	struct blk_state s;
	int rc;

	/* The snapshot is only consistent with a disk that holds every
	 * write the guest saw complete. */
	rc = blk_disk_flush(&b->disk);
	if (rc) {
		b->api->set_error(b->ctx, "flushing the disk: %s", strerror(-rc));
		return rc;
	}
	fill_state(b, &s);
	rc = smolvm_state_save_fields(b->api, w, blk_fields, SMOLVM_ARRAY_LEN(blk_fields), &s);
	return rc ? rc : smolvm_virtio_save(&b->vd, w);
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
	return smolvm_virtio_restore(&b->vd, r);
}

static const struct smolvm_device_ops blk_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
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
