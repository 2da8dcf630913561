/* virtio-mmio (version 2) transport for device plugins.
 *
 * A virtio device plugin fills a struct smolvm_virtio_ops and calls
 * smolvm_virtio_init() from its create(); the transport claims an MMIO
 * window and an interrupt line, adds `virtio_mmio.device=` to the guest's
 * command line, implements the register file, feature negotiation and the
 * split virtqueues, and hands the device validated buffers:
 *
 *   struct smolvm_virtq_elem e;
 *   while ((rc = smolvm_virtq_pop(vd, q, &e)) > 0) {
 *       ... read e.out[], write e.in[] ...
 *       smolvm_virtq_push(vd, q, &e, bytes_written);
 *   }
 *   smolvm_virtq_notify(vd, q);
 *
 * Every descriptor chain is checked before the device sees it: addresses
 * and lengths inside guest RAM, no loops, at most the queue size long,
 * device-readable buffers before device-writable ones. A driver that breaks
 * the rules gets the device marked DEVICE_NEEDS_RESET and nothing more is
 * processed until it resets the device.
 *
 * A device whose instance starts with its struct smolvm_virtio_dev (member
 * `vd`) gets all its device ops but create from SMOLVM_VIRTIO_DEVICE_OPS():
 * the transport pauses, saves, restores, resets and destroys it, calling
 * the device's hooks in struct smolvm_virtio_ops where it has any.
 *
 * This code is part of the SDK (sdk/src/virtio_mmio.c, virtio_device.c,
 * linked into the plugin); it uses nothing but the host API.
 *
 * Changes: SDK 1.1: the device hooks pause, resume, save, restore and
 * destroy in struct smolvm_virtio_ops; SMOLVM_VIRTIO_DEVICE_OPS() and the
 * smolvm_virtio_dev_*() device ops; smolvm_virtio_pause() and
 * smolvm_virtio_resume() (kicks held while paused);
 * smolvm_virtio_put_state() and smolvm_virtio_get_state() on the typed
 * writer and reader of <smolvm/state.h>. ABI 1.2:
 * SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(), the device ops with the options the
 * device declares (the transport reads no option of its own).
 */
#ifndef SMOLVM_VIRTIO_H
#define SMOLVM_VIRTIO_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_ring.h>
#include <smolvm/plugin.h>
#include <smolvm/state.h>

#define SMOLVM_VIRTIO_MAX_QUEUES 8
#define SMOLVM_VIRTIO_MAX_SEGS 64 /* buffers in one chain, each direction */
#define SMOLVM_VIRTIO_MMIO_SIZE 0x1000

struct smolvm_virtio_dev;

struct smolvm_virtio_ops {
	uint32_t device_id;     /* VIRTIO_ID_* from <linux/virtio_ids.h> */
	uint32_t num_queues;
	uint16_t queue_max_size; /* power of two, at most 32768 */
	uint64_t features;       /* device features; VERSION_1 and EVENT_IDX are added */
	/* Device configuration space, read by the guest at 0x100+. The
	 * transport reads it under the device lock; config_write may be
	 * NULL for a read-only space. */
	uint32_t config_size;
	void (*config_read)(void *dev, uint32_t off, void *data, uint32_t size);
	void (*config_write)(void *dev, uint32_t off, const void *data, uint32_t size);
	/* The driver made buffers available on queue `q`. Called on a vCPU
	 * thread or on the event loop (ioeventfd), never concurrently for
	 * one device. */
	void (*queue_notify)(void *dev, uint32_t q);
	/* The driver reset the device (status 0) or the machine was reset:
	 * drop in-flight work. May be NULL. */
	void (*reset)(void *dev);
	/* DRIVER_OK was set: the queues are live. May be NULL. */
	void (*driver_ok)(void *dev);

	/* SDK 1.1: the device's part of SMOLVM_VIRTIO_DEVICE_OPS(); each may
	 * be NULL. */
	/* The machine pauses (resumes): stop (restart) the device's own work,
	 * such as its threads, fd watches and console input. Called with the
	 * notify lock held; from pause to resume the transport holds the
	 * driver's kicks back and calls queue_notify for them after resume. */
	void (*pause)(void *dev);
	void (*resume)(void *dev);
	/* The device's state, called with the notify lock held (and the
	 * machine paused). NULL: the transport's section alone. A hook writes
	 * (reads) the transport's section itself, where the device's state has
	 * it, with smolvm_virtio_put_state() (smolvm_virtio_get_state()).
	 * 0, or -errno after set_error(). */
	int (*save)(void *dev, struct smolvm_state_out *o);
	int (*restore)(void *dev, struct smolvm_state_in *in, uint32_t version);
	/* Releases what the device holds (threads first); then the transport
	 * is cleaned up and the instance freed with free(). */
	void (*destroy)(void *dev);
};

struct smolvm_virtq {
	uint16_t num;       /* queue size the driver chose */
	uint8_t ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host views (<linux/virtio_ring.h> layouts), valid while ready. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail; /* next avail entry the device will take */
	uint16_t used_idx;   /* next used entry the device will fill */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	uint8_t signalled_valid;
	int kick_fd;         /* ioeventfd, or -1 */
};

struct smolvm_virtq_elem {
	uint16_t head;
	uint16_t nout, nin;
	struct iovec out[SMOLVM_VIRTIO_MAX_SEGS]; /* driver -> device */
	struct iovec in[SMOLVM_VIRTIO_MAX_SEGS];  /* device -> driver */
	uint64_t out_len, in_len;
};

struct smolvm_virtio_dev {
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	const struct smolvm_virtio_ops *ops;
	void *dev;
	pthread_mutex_t lock; /* register file and interrupt state */

	pthread_mutex_t notify_lock; /* one queue_notify at a time */
	uint64_t base;
	uint32_t gsi;
	int irq_fd; /* irqfd, or -1 */

	/* Register state (saved and restored). */
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t isr;
	uint32_t config_generation;
	struct smolvm_virtq vq[SMOLVM_VIRTIO_MAX_QUEUES];
	uint32_t broken;

	/* Under notify_lock (SDK 1.1): paused by smolvm_virtio_pause(), and
	 * the queues kicked since (bit q). */
	int paused;
	uint32_t held_kicks;
};

/* Claims an MMIO window and an interrupt line, registers the register
 * file and adds the device to the guest's command line. */
int smolvm_virtio_init(struct smolvm_virtio_dev *vd, smolvm_ctx *ctx,
		       const struct smolvm_host_api *api,
		       const struct smolvm_virtio_ops *ops, void *dev);
void smolvm_virtio_cleanup(struct smolvm_virtio_dev *vd);
/* Machine reset: back to the state after init. */
void smolvm_virtio_reset(struct smolvm_virtio_dev *vd);

/* 1: `e` holds the next chain; 0: the queue is empty (or not ready);
 * -EINVAL: the chain was invalid and the device is now broken. */
int smolvm_virtq_pop(struct smolvm_virtio_dev *vd, uint32_t q, struct smolvm_virtq_elem *e);
/* Returns a chain with `written` bytes stored in its device-writable part. */
void smolvm_virtq_push(struct smolvm_virtio_dev *vd, uint32_t q,
		       const struct smolvm_virtq_elem *e, uint32_t written);
/* Interrupts the driver if it wants to hear about the pushes so far. */
void smolvm_virtq_notify(struct smolvm_virtio_dev *vd, uint32_t q);
/* Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver. */
void smolvm_virtio_set_broken(struct smolvm_virtio_dev *vd, const char *why);
/* The device's configuration changed: config generation + interrupt. */
void smolvm_virtio_config_changed(struct smolvm_virtio_dev *vd);

/* Copy helpers over an element's buffers, bounds-checked. */
size_t smolvm_iov_to_buf(const struct iovec *iov, unsigned n, uint64_t off,
			 void *buf, size_t len);
size_t smolvm_iov_from_buf(const struct iovec *iov, unsigned n, uint64_t off,
			   const void *buf, size_t len);

/* Transport state as a named section ("virtio") of the device's state. */
int smolvm_virtio_save(struct smolvm_virtio_dev *vd, struct smolvm_state_writer *w);
int smolvm_virtio_restore(struct smolvm_virtio_dev *vd, struct smolvm_state_reader *r);

/* SDK 1.1: the same through the typed writer and reader. A refused state
 * (-errno after set_error, with the path of what is wrong) leaves the
 * transport as it was. */
void smolvm_virtio_put_state(struct smolvm_virtio_dev *vd, struct smolvm_state_out *o);
int smolvm_virtio_get_state(struct smolvm_virtio_dev *vd, struct smolvm_state_in *in);

/* SDK 1.1: the machine pauses: takes the notify lock (queue work in
 * progress finishes), calls the pause hook, and from then on holds the
 * driver's kicks back. Resume calls the resume hook, then queue_notify for
 * the kicks held, under the notify lock. */
void smolvm_virtio_pause(struct smolvm_virtio_dev *vd);
void smolvm_virtio_resume(struct smolvm_virtio_dev *vd);

/* ---- SDK 1.1: the device ops of a virtio device -------------------------
 *
 *   struct rng { struct smolvm_virtio_dev vd; ... };   // vd first
 *   static const struct smolvm_virtio_ops rng_virtio = { ..., .save = ... };
 *   static int rng_create(smolvm_ctx *ctx, const struct smolvm_host_api *api,
 *                         void **out);  // calloc, smolvm_virtio_init(&r->vd, ...)
 *   static const struct smolvm_device_ops rng_ops =
 *           SMOLVM_VIRTIO_DEVICE_OPS(struct rng, rng_create, 1, 1);
 *
 * `dev` of these ops is the instance create() returned, which starts with
 * its struct smolvm_virtio_dev and was allocated with malloc/calloc. */
void smolvm_virtio_dev_destroy(void *dev);  /* hook, cleanup, free() */
void smolvm_virtio_dev_reset(void *dev);    /* smolvm_virtio_reset() */
void smolvm_virtio_dev_pause(void *dev);    /* smolvm_virtio_pause() */
void smolvm_virtio_dev_resume(void *dev);   /* smolvm_virtio_resume() */
/* The save or restore hook (else the transport's section alone) with the
 * notify lock held, through a typed writer or reader. */
int smolvm_virtio_dev_save(void *dev, struct smolvm_state_writer *w);
int smolvm_virtio_dev_restore(void *dev, struct smolvm_state_reader *r, uint32_t version);

/* 0, or a compile error unless `type_` starts with its vd (C11). */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define SMOLVM_VIRTIO_CHECK_FIRST_(type_)                                       \
	(0 * sizeof(struct {                                                    \
		int smolvm_vd_check_;                                           \
		_Static_assert(offsetof(type_, vd) == 0,                        \
			       "SMOLVM_VIRTIO_DEVICE_OPS: the instance must start " \
			       "with its struct smolvm_virtio_dev vd");          \
	}))
#else
#define SMOLVM_VIRTIO_CHECK_FIRST_(type_) 0
#endif

#define SMOLVM_VIRTIO_DEVICE_OPS(type_, create_, state_version_, min_state_version_) \
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(type_, create_, state_version_,        \
					 min_state_version_, NULL)

/* The same, with the options the device takes (ABI 1.2, an array of
 * struct smolvm_option ended by a NULL name; see <smolvm/plugin.h>). */
#define SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(type_, create_, state_version_,       \
					 min_state_version_, options_)          \
	{                                                                       \
		.struct_size = (uint32_t)(sizeof(struct smolvm_device_ops) +    \
					  SMOLVM_VIRTIO_CHECK_FIRST_(type_)),   \
		.state_version = (state_version_),                              \
		.min_state_version = (min_state_version_),                      \
		.create = (create_),                                            \
		.destroy = smolvm_virtio_dev_destroy,                           \
		.reset = smolvm_virtio_dev_reset,                               \
		.pause = smolvm_virtio_dev_pause,                               \
		.resume = smolvm_virtio_dev_resume,                             \
		.save = smolvm_virtio_dev_save,                                 \
		.restore = smolvm_virtio_dev_restore,                           \
		.options = (options_),                                          \
	}

#endif
