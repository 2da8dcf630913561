/* virtio-mmio transport (virtio 1.2, section 4.2 "Virtio Over MMIO") and
 * split virtqueues (section 2.7), for device plugins. See smolvm/virtio.h. */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include <smolvm/state.h>
#include <smolvm/virtio.h>

#define MMIO_MAGIC 0x74726976 /* "virt" */
#define MMIO_VERSION 2
#define VENDOR_ID 0x4c4f4d53 /* "SMOL" */

#define ISR_USED 1u
#define ISR_CONFIG 2u

static uint64_t dev_features(const struct smolvm_virtio_dev *vd)
{
	return vd->ops->features | (1ull << VIRTIO_F_VERSION_1) |
	       (1ull << VIRTIO_RING_F_EVENT_IDX);
}

static int has_event_idx(const struct smolvm_virtio_dev *vd)
{
	return !!(vd->driver_features & (1ull << VIRTIO_RING_F_EVENT_IDX));
}

/* An edge on the interrupt line: the driver reads the cause from ISR. */
static void raise_irq(struct smolvm_virtio_dev *vd, uint32_t cause)
{
	pthread_mutex_lock(&vd->lock);
	vd->isr |= cause;
	pthread_mutex_unlock(&vd->lock);
	if (vd->irq_fd >= 0) {
		uint64_t one = 1;
		if (write(vd->irq_fd, &one, sizeof(one)) == sizeof(one))
			return;
	}
	vd->api->irq_set(vd->ctx, vd->gsi, 1);
	vd->api->irq_set(vd->ctx, vd->gsi, 0);
}

void smolvm_virtio_set_broken(struct smolvm_virtio_dev *vd, const char *why)
{
	int was;

	pthread_mutex_lock(&vd->lock);
	was = vd->broken;
	vd->broken = 1;
	vd->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	pthread_mutex_unlock(&vd->lock);
	if (!was) {
		vd->api->log(vd->ctx, SMOLVM_LOG_WARN, "driver error, device needs reset: %s", why);
		raise_irq(vd, ISR_CONFIG);
	}
}

void smolvm_virtio_config_changed(struct smolvm_virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->config_generation++;
	pthread_mutex_unlock(&vd->lock);
	raise_irq(vd, ISR_CONFIG);
}

/* Maps a queue's rings; on failure the queue stays not ready. */
static int map_queue(struct smolvm_virtio_dev *vd, struct smolvm_virtq *q)
{
	uint64_t n = q->num;

	if (!n || n > vd->ops->queue_max_size || (n & (n - 1)))
		return -EINVAL;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	/* Rings plus the event-index word after avail and used. */
	q->desc = vd->api->guest_ptr(vd->ctx, q->desc_gpa, 16 * n);
	q->avail = vd->api->guest_ptr(vd->ctx, q->avail_gpa, 6 + 2 * n);
	q->used = vd->api->guest_ptr(vd->ctx, q->used_gpa, 6 + 8 * n);
	if (!q->desc || !q->avail || !q->used) {
		q->desc = NULL;
		q->avail = NULL;
		q->used = NULL;
		return -EFAULT;
	}
	return 0;
}

static void reset_queues(struct smolvm_virtio_dev *vd)
{
	for (unsigned i = 0; i < SMOLVM_VIRTIO_MAX_QUEUES; i++) {
		struct smolvm_virtq *q = &vd->vq[i];
		int fd = q->kick_fd;
		memset(q, 0, sizeof(*q));
		q->kick_fd = fd;
		q->num = vd->ops->queue_max_size;
	}
}

/* Device reset: what the driver sees after writing 0 to Status. */
static void reset_locked(struct smolvm_virtio_dev *vd)
{
	vd->status = 0;
	vd->dev_features_sel = vd->drv_features_sel = 0;
	vd->driver_features = 0;
	vd->queue_sel = 0;
	vd->isr = 0;
	vd->broken = 0;
	reset_queues(vd);
}

void smolvm_virtio_reset(struct smolvm_virtio_dev *vd)
{
	pthread_mutex_lock(&vd->notify_lock);
	pthread_mutex_lock(&vd->lock);
	reset_locked(vd);
	pthread_mutex_unlock(&vd->lock);
	vd->held_kicks = 0; /* for queues that no longer exist */
	if (vd->ops->reset)
		vd->ops->reset(vd->dev);
	pthread_mutex_unlock(&vd->notify_lock);
}

static void notify(struct smolvm_virtio_dev *vd, uint32_t q)
{
	if (q >= vd->ops->num_queues)
		return;
	pthread_mutex_lock(&vd->notify_lock);
	if (vd->paused)
		vd->held_kicks |= 1u << q;
	else
		vd->ops->queue_notify(vd->dev, q);
	pthread_mutex_unlock(&vd->notify_lock);
}

void smolvm_virtio_pause(struct smolvm_virtio_dev *vd)
{
	pthread_mutex_lock(&vd->notify_lock);
	vd->paused = 1;
	if (vd->ops->pause)
		vd->ops->pause(vd->dev);
	pthread_mutex_unlock(&vd->notify_lock);
}

void smolvm_virtio_resume(struct smolvm_virtio_dev *vd)
{
	uint32_t held;

	pthread_mutex_lock(&vd->notify_lock);
	vd->paused = 0;
	if (vd->ops->resume)
		vd->ops->resume(vd->dev);
	held = vd->held_kicks;
	vd->held_kicks = 0;
	for (uint32_t q = 0; q < vd->ops->num_queues; q++)
		if (held & (1u << q))
			vd->ops->queue_notify(vd->dev, q);
	pthread_mutex_unlock(&vd->notify_lock);
}

static uint32_t reg_read(struct smolvm_virtio_dev *vd, uint64_t off)
{
	struct smolvm_virtq *q = vd->queue_sel < SMOLVM_VIRTIO_MAX_QUEUES &&
						 vd->queue_sel < vd->ops->num_queues
					 ? &vd->vq[vd->queue_sel] : NULL;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: return MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION: return MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID: return vd->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID: return VENDOR_ID;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return vd->dev_features_sel > 1 ? 0
		       : (uint32_t)(dev_features(vd) >> (32 * vd->dev_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? vd->ops->queue_max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return vd->isr;
	case VIRTIO_MMIO_STATUS: return vd->status;
	case VIRTIO_MMIO_CONFIG_GENERATION: return vd->config_generation;
	}
	return 0;
}

static void set_queue_addr(uint64_t *gpa, int high, uint32_t v)
{
	if (high)
		*gpa = (*gpa & 0xffffffffull) | (uint64_t)v << 32;
	else
		*gpa = (*gpa & ~0xffffffffull) | v;
}

/* Returns what must happen once the lock is dropped. */
enum after { NOTHING, DO_RESET, DO_DRIVER_OK, BAD_QUEUE };

static enum after reg_write(struct smolvm_virtio_dev *vd, uint64_t off, uint32_t v)
{
	struct smolvm_virtq *q = vd->queue_sel < vd->ops->num_queues ? &vd->vq[vd->queue_sel] : NULL;
	/* Queue layout is fixed once the queue is live. */
	int q_writable = q && !q->ready;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: vd->dev_features_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: vd->drv_features_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (vd->drv_features_sel <= 1 && !(vd->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			int sh = 32 * (int)vd->drv_features_sel;
			vd->driver_features = (vd->driver_features & ~(0xffffffffull << sh)) |
					      ((uint64_t)v << sh);
		}
		break;
	case VIRTIO_MMIO_QUEUE_SEL: vd->queue_sel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM: if (q_writable) q->num = (uint16_t)(v > 0xffff ? 0 : v); break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (q_writable) set_queue_addr(&q->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (q_writable) set_queue_addr(&q->avail_gpa, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (q_writable) set_queue_addr(&q->used_gpa, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			break;
		if (!v) {
			q->ready = 0;
		} else if (!q->ready) {
			if (map_queue(vd, q) == 0) {
				q->ready = 1;
				q->last_avail = q->used_idx = 0;
				q->signalled_valid = 0;
			} else {
				return BAD_QUEUE;
			}
		}
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK: vd->isr &= ~v; break;
	case VIRTIO_MMIO_STATUS:
		if (v == 0)
			return DO_RESET;
		if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(vd->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			/* Only features we offered, and the modern interface. */
			if ((vd->driver_features & ~dev_features(vd)) ||
			    !(vd->driver_features & (1ull << VIRTIO_F_VERSION_1)))
				v &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
		}
		if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(vd->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
			vd->status = v | (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET);
			return DO_DRIVER_OK;
		}
		vd->status = v | (vd->status & VIRTIO_CONFIG_S_NEEDS_RESET);
		break;
	}
	return NOTHING;
}

static void mmio_read(void *opaque, uint64_t off, void *data, uint32_t size)
{
	struct smolvm_virtio_dev *vd = opaque;

	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c < vd->ops->config_size && size <= vd->ops->config_size - c &&
		    vd->ops->config_read) {
			pthread_mutex_lock(&vd->lock);
			vd->ops->config_read(vd->dev, (uint32_t)c, data, size);
			pthread_mutex_unlock(&vd->lock);
		}
		return;
	}
	if (size != 4 || (off & 3))
		return; /* registers are 32-bit only */
	pthread_mutex_lock(&vd->lock);
	uint32_t v = htole32(reg_read(vd, off));
	pthread_mutex_unlock(&vd->lock);
	memcpy(data, &v, 4);
}

static void mmio_write(void *opaque, uint64_t off, const void *data, uint32_t size)
{
	struct smolvm_virtio_dev *vd = opaque;
	enum after after;
	uint32_t v;

	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c < vd->ops->config_size && size <= vd->ops->config_size - c &&
		    vd->ops->config_write)
			vd->ops->config_write(vd->dev, (uint32_t)c, data, size);
		return;
	}
	if (size != 4 || (off & 3))
		return;
	memcpy(&v, data, 4);
	v = le32toh(v);
	if (off == VIRTIO_MMIO_QUEUE_NOTIFY) {
		notify(vd, v);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	after = reg_write(vd, off, v);
	pthread_mutex_unlock(&vd->lock);
	if (after == DO_RESET)
		smolvm_virtio_reset(vd);
	else if (after == BAD_QUEUE)
		smolvm_virtio_set_broken(vd, "queue size or ring addresses invalid");
	else if (after == DO_DRIVER_OK && vd->ops->driver_ok)
		vd->ops->driver_ok(vd->dev);
}

static const struct smolvm_io_ops mmio_ops = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = mmio_read,
	.write = mmio_write,
};

static void on_kick(void *opaque, int fd, uint32_t revents)
{
	struct smolvm_virtio_dev *vd = opaque;
	uint64_t n;

	(void)revents;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	for (uint32_t q = 0; q < vd->ops->num_queues; q++)
		if (vd->vq[q].kick_fd == fd)
			notify(vd, q);
}

/* An ioeventfd per queue when the backend offers them; without them
 * notifications go through vCPU exits. */
static void setup_fast_paths(struct smolvm_virtio_dev *vd)
{
	for (uint32_t q = 0; q < vd->ops->num_queues; q++) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0)
			break;
		if (vd->api->ioeventfd(vd->ctx, vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q, fd, 1) ||
		    vd->api->fd_watch(vd->ctx, fd, POLLIN, on_kick, vd)) {
			close(fd);
			break;
		}
		vd->vq[q].kick_fd = fd;
	}
	/* No irqfd: KVM injects an IOAPIC-routed irqfd from a kernel worker,
	 * which on a busy host arrived 7-16 ms late in a fifth of the runs
	 * (test guest, rng); irq_set from the device's thread is immediate. */
}

int smolvm_virtio_init(struct smolvm_virtio_dev *vd, smolvm_ctx *ctx,
		       const struct smolvm_host_api *api,
		       const struct smolvm_virtio_ops *ops, void *dev)
{
	char arg[96];
	int rc;

	memset(vd, 0, sizeof(*vd));
	vd->ctx = ctx;
	vd->api = api;
	vd->ops = ops;
	vd->dev = dev;
	vd->irq_fd = -1;
	for (unsigned i = 0; i < SMOLVM_VIRTIO_MAX_QUEUES; i++)
		vd->vq[i].kick_fd = -1;
	if (!ops->num_queues || ops->num_queues > SMOLVM_VIRTIO_MAX_QUEUES ||
	    !ops->queue_max_size || (ops->queue_max_size & (ops->queue_max_size - 1)) ||
	    ops->queue_max_size > 32768 || !ops->queue_notify ||
	    ops->config_size > SMOLVM_VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG) {
		api->set_error(ctx, "virtio: invalid device description");
		return -EINVAL;
	}
	if (!SMOLVM_HAS(api, resource_alloc) || !SMOLVM_HAS(api, cmdline_append)) {
		api->set_error(ctx, "virtio: the host lacks system-bus resources (ABI too old)");
		return -ENOTSUP;
	}
	pthread_mutex_init(&vd->lock, NULL);
	pthread_mutex_init(&vd->notify_lock, NULL);
	reset_locked(vd);
	rc = api->resource_alloc(ctx, SMOLVM_VIRTIO_MMIO_SIZE, &vd->base, &vd->gsi);
	if (!rc)
		rc = api->io_register(ctx, SMOLVM_SPACE_MMIO, vd->base, SMOLVM_VIRTIO_MMIO_SIZE,
				      &mmio_ops, vd);
	if (!rc) {
		snprintf(arg, sizeof(arg), "virtio_mmio.device=4K@0x%llx:%u",
			 (unsigned long long)vd->base, vd->gsi);
		rc = api->cmdline_append(ctx, arg);
	}
	if (rc) {
		smolvm_virtio_cleanup(vd);
		return rc;
	}
	setup_fast_paths(vd);
	return 0;
}

void smolvm_virtio_cleanup(struct smolvm_virtio_dev *vd)
{
	for (unsigned i = 0; i < SMOLVM_VIRTIO_MAX_QUEUES; i++) {
		int fd = vd->vq[i].kick_fd;
		if (fd < 0)
			continue;
		vd->api->fd_unwatch(vd->ctx, fd);
		vd->api->ioeventfd(vd->ctx, vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, i, fd, 0);
		close(fd);
		vd->vq[i].kick_fd = -1;
	}
	if (vd->irq_fd >= 0) {
		vd->api->irqfd(vd->ctx, vd->gsi, vd->irq_fd, 0);
		close(vd->irq_fd);
		vd->irq_fd = -1;
	}
	pthread_mutex_destroy(&vd->lock);
	pthread_mutex_destroy(&vd->notify_lock);
}

/* ---- virtqueues ----------------------------------------------------------- */

static struct smolvm_virtq *live_queue(struct smolvm_virtio_dev *vd, uint32_t q)
{
	struct smolvm_virtq *vq;

	if (q >= vd->ops->num_queues)
		return NULL;
	vq = &vd->vq[q];
	if (!vq->ready || vd->broken || !(vd->status & VIRTIO_CONFIG_S_DRIVER_OK))
		return NULL;
	return vq;
}

static int bad_chain(struct smolvm_virtio_dev *vd, uint32_t q, const char *why)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "queue %u: %s", q, why);
	smolvm_virtio_set_broken(vd, msg);
	return -EINVAL;
}

int smolvm_virtq_pop(struct smolvm_virtio_dev *vd, uint32_t q, struct smolvm_virtq_elem *e)
{
	struct smolvm_virtq *vq = live_queue(vd, q);
	uint16_t avail_idx, head, i;
	unsigned count = 0;

	if (!vq)
		return 0;
	avail_idx = le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->num)
		return bad_chain(vd, q, "available index ran ahead of the queue");
	if (avail_idx == vq->last_avail)
		return 0;

	head = le16toh(vq->avail->ring[vq->last_avail % vq->num]);
	e->head = head;
	e->nout = e->nin = 0;
	e->out_len = e->in_len = 0;
	for (i = head;;) {
		struct vring_desc d;
		void *p;

		if (i >= vq->num)
			return bad_chain(vd, q, "descriptor index out of the table");
		if (++count > vq->num)
			return bad_chain(vd, q, "descriptor chain loops");
		memcpy(&d, &vq->desc[i], sizeof(d));
		d.addr = le64toh(d.addr);
		d.len = le32toh(d.len);
		d.flags = le16toh(d.flags);
		d.next = le16toh(d.next);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return bad_chain(vd, q, "indirect descriptor (not offered)");
		p = vd->api->guest_ptr(vd->ctx, d.addr, d.len);
		if (!d.len) {
			/* Legal and empty: the device never sees it. */
		} else if (!p) {
			return bad_chain(vd, q, "buffer outside guest memory");
		} else if (d.flags & VRING_DESC_F_WRITE) {
			if (e->nin == SMOLVM_VIRTIO_MAX_SEGS)
				return bad_chain(vd, q, "too many buffers");
			e->in[e->nin].iov_base = p;
			e->in[e->nin++].iov_len = d.len;
			e->in_len += d.len;
		} else {
			if (e->nin)
				return bad_chain(vd, q, "device-readable buffer after a writable one");
			if (e->nout == SMOLVM_VIRTIO_MAX_SEGS)
				return bad_chain(vd, q, "too many buffers");
			e->out[e->nout].iov_base = p;
			e->out[e->nout++].iov_len = d.len;
			e->out_len += d.len;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		i = d.next;
	}
	vq->last_avail++;
	if (has_event_idx(vd)) {
		/* Ask to be kicked when the driver adds past what we took. */
		uint16_t *avail_event = (uint16_t *)&vq->used->ring[vq->num];
		__atomic_store_n(avail_event, htole16(vq->last_avail), __ATOMIC_RELEASE);
		/* The next pop's read of avail->idx must not pass this store
		 * (store-load order needs a full fence even on x86), or the
		 * driver may skip a kick while we see an empty ring. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return 1;
}

void smolvm_virtq_push(struct smolvm_virtio_dev *vd, uint32_t q,
		       const struct smolvm_virtq_elem *e, uint32_t written)
{
	struct smolvm_virtq *vq = live_queue(vd, q);
	struct vring_used_elem *u;

	if (!vq)
		return;
	if (written > e->in_len)
		written = (uint32_t)e->in_len;
	u = &vq->used->ring[vq->used_idx % vq->num];
	u->id = htole32(e->head);
	u->len = htole32(written);
	vq->used_idx++;
	__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
}

void smolvm_virtq_notify(struct smolvm_virtio_dev *vd, uint32_t q)
{
	struct smolvm_virtq *vq = live_queue(vd, q);
	int need;

	if (!vq)
		return;
	/* The driver's event index / flags must be read after our used
	 * index is visible. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (has_event_idx(vd)) {
		uint16_t event = le16toh(*(volatile uint16_t *)&vq->avail->ring[vq->num]);
		need = !vq->signalled_valid ||
		       vring_need_event(event, vq->used_idx, vq->signalled_used);
	} else {
		need = !(le16toh(vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (vq->signalled_valid && vq->signalled_used == vq->used_idx)
		need = 0; /* nothing new since the last interrupt */
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = 1;
	if (need)
		raise_irq(vd, ISR_USED);
}

size_t smolvm_iov_to_buf(const struct iovec *iov, unsigned n, uint64_t off,
			 void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)buf + done, (char *)iov[i].iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t smolvm_iov_from_buf(const struct iovec *iov, unsigned n, uint64_t off,
			   const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)iov[i].iov_base + off, (const char *)buf + done, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

/* ---- state ------------------------------------------------------------------ */

static const struct smolvm_state_field dev_fields[] = {
	SMOLVM_FIELD(struct smolvm_virtio_dev, status, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, driver_features, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, dev_features_sel, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, drv_features_sel, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, queue_sel, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, isr, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, config_generation, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct smolvm_virtio_dev, broken, SMOLVM_STATE_U32, 1),
};

static const struct smolvm_state_field queue_fields[] = {
	SMOLVM_FIELD(struct smolvm_virtq, num, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct smolvm_virtq, ready, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct smolvm_virtq, desc_gpa, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct smolvm_virtq, avail_gpa, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct smolvm_virtq, used_gpa, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct smolvm_virtq, last_avail, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct smolvm_virtq, used_idx, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct smolvm_virtq, signalled_used, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct smolvm_virtq, signalled_valid, SMOLVM_STATE_U8, 1),
};

#define TRANSPORT_STATE_VERSION 1

void smolvm_virtio_put_state(struct smolvm_virtio_dev *vd, struct smolvm_state_out *o)
{
	pthread_mutex_lock(&vd->lock);
	smolvm_state_begin(o, "virtio");
	smolvm_state_put_fields(o, dev_fields, SMOLVM_ARRAY_LEN(dev_fields), vd);
	for (uint32_t i = 0; i < vd->ops->num_queues; i++) {
		char name[8];
		snprintf(name, sizeof(name), "q%u", i);
		smolvm_state_begin(o, name);
		smolvm_state_put_fields(o, queue_fields, SMOLVM_ARRAY_LEN(queue_fields), &vd->vq[i]);
		smolvm_state_end(o);
	}
	smolvm_state_end(o);
	pthread_mutex_unlock(&vd->lock);
}

/* Into `tmp`, a copy of the transport, validated: the caller applies it. */
static int load_state(struct smolvm_virtio_dev *vd, struct smolvm_state_in *in,
		      struct smolvm_virtio_dev *tmp)
{
	uint64_t extra;
	int rc;

	rc = smolvm_state_get_fields(in, dev_fields, SMOLVM_ARRAY_LEN(dev_fields), tmp,
				     TRANSPORT_STATE_VERSION);
	if (rc)
		return rc;
	extra = tmp->driver_features & ~dev_features(vd);
	if (extra)
		return smolvm_state_bad(in, "driver_features",
					"0x%llx has features this device does not offer (0x%llx)",
					(unsigned long long)tmp->driver_features,
					(unsigned long long)extra);
	if (tmp->broken > 1)
		return smolvm_state_bad(in, "broken", "%u is not 0 or 1", tmp->broken);
	for (uint32_t i = 0; i < vd->ops->num_queues; i++) {
		struct smolvm_virtq *q = &tmp->vq[i];
		char name[8];

		snprintf(name, sizeof(name), "q%u", i);
		if ((rc = smolvm_state_enter(in, name)) ||
		    (rc = smolvm_state_get_fields(in, queue_fields, SMOLVM_ARRAY_LEN(queue_fields), q,
						  TRANSPORT_STATE_VERSION)))
			return rc;
		/* Hostile input: the rings are checked like a driver's setup. */
		if (q->ready && (rc = map_queue(vd, q)))
			return smolvm_state_in_fail(in, rc, "%s: queue size %u or ring addresses "
						    "(desc 0x%llx, avail 0x%llx, used 0x%llx) invalid",
						    in->path, q->num,
						    (unsigned long long)q->desc_gpa,
						    (unsigned long long)q->avail_gpa,
						    (unsigned long long)q->used_gpa);
		if (!q->ready)
			q->desc = NULL, q->avail = NULL, q->used = NULL;
		smolvm_state_leave(in);
	}
	return 0;
}

int smolvm_virtio_get_state(struct smolvm_virtio_dev *vd, struct smolvm_state_in *in)
{
	struct smolvm_virtio_dev tmp;
	int depth = in->depth, rc;

	rc = smolvm_state_enter(in, "virtio");
	if (rc)
		return rc;
	pthread_mutex_lock(&vd->lock);
	/* Into a copy: nothing changes unless all of it is valid. */
	tmp = *vd;
	rc = load_state(vd, in, &tmp);
	if (!rc) {
		/* Only the saved registers; locks, fds and ops stay ours. */
		vd->status = tmp.status;
		vd->driver_features = tmp.driver_features;
		vd->dev_features_sel = tmp.dev_features_sel;
		vd->drv_features_sel = tmp.drv_features_sel;
		vd->queue_sel = tmp.queue_sel;
		vd->isr = tmp.isr;
		vd->config_generation = tmp.config_generation;
		vd->broken = tmp.broken;
		for (uint32_t i = 0; i < vd->ops->num_queues; i++) {
			int fd = vd->vq[i].kick_fd;
			vd->vq[i] = tmp.vq[i];
			vd->vq[i].kick_fd = fd;
		}
	}
	pthread_mutex_unlock(&vd->lock);
	while (in->depth > depth)
		smolvm_state_leave(in);
	return rc;
}

int smolvm_virtio_save(struct smolvm_virtio_dev *vd, struct smolvm_state_writer *w)
{
	struct smolvm_state_out o;

	smolvm_state_out_init(&o, vd->api, vd->ctx, w);
	smolvm_virtio_put_state(vd, &o);
	return smolvm_state_out_done(&o);
}

int smolvm_virtio_restore(struct smolvm_virtio_dev *vd, struct smolvm_state_reader *r)
{
	struct smolvm_state_in in;
	int rc;

	smolvm_state_in_init(&in, vd->api, vd->ctx, r);
	rc = smolvm_virtio_get_state(vd, &in);
	smolvm_state_in_done(&in);
	return rc;
}
