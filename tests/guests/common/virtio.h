/*
 * A minimal modern virtio-mmio driver (virtio 1.2, 4.2 and 2.7): devices
 * from `virtio_mmio.device=SIZE@BASE:IRQ` on the command line, feature
 * negotiation (VERSION_1 required), split virtqueues polled for completions.
 *
 * Two halves:
 *  - kernel side (virtio.c, CPL0): discovery, reset, features, queue setup,
 *    configuration space, interrupts;
 *  - the data path (virtq_*, USER_TEXT): works on rings and virtq state kept
 *    in the user page, so it runs at CPL0 or, for bulk work, at CPL3 (native
 *    speed on hosts that emulate kernel mode) once virtio_user_map() made
 *    the device registers user-accessible. It calls nothing but itself and
 *    uses no kernel data.
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "guest.h"

#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

#define VIRTIO_F_VERSION_1       (1ull << 32)
#define VIRTIO_RING_F_EVENT_IDX  (1ull << 29)
#define VIRTIO_RING_F_INDIRECT   (1ull << 28)

#define VIRTIO_MAX_DEVS 8
#define VQ_MAX 64 /* ring entries we use at most (queue size = min(this, max)) */

/* Registers (4.2.2). */
#define VMMIO_MAGIC        0x000
#define VMMIO_VERSION      0x004
#define VMMIO_DEVICE_ID    0x008
#define VMMIO_VENDOR_ID    0x00c
#define VMMIO_DEV_FEAT     0x010
#define VMMIO_DEV_FEAT_SEL 0x014
#define VMMIO_DRV_FEAT     0x020
#define VMMIO_DRV_FEAT_SEL 0x024
#define VMMIO_QUEUE_SEL    0x030
#define VMMIO_QUEUE_NUM_MAX 0x034
#define VMMIO_QUEUE_NUM    0x038
#define VMMIO_QUEUE_READY  0x044
#define VMMIO_QUEUE_NOTIFY 0x050
#define VMMIO_INT_STATUS   0x060
#define VMMIO_INT_ACK      0x064
#define VMMIO_STATUS       0x070
#define VMMIO_QUEUE_DESC   0x080 /* low; high at +4 */
#define VMMIO_QUEUE_AVAIL  0x090
#define VMMIO_QUEUE_USED   0x0a0
#define VMMIO_CONFIG_GEN   0x0fc
#define VMMIO_CONFIG       0x100

#define VSTATUS_ACK         1
#define VSTATUS_DRIVER      2
#define VSTATUS_DRIVER_OK   4
#define VSTATUS_FEATURES_OK 8
#define VSTATUS_NEEDS_RESET 0x40
#define VSTATUS_FAILED      0x80

#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2

#define ALWAYS_INLINE static inline __attribute__((always_inline))

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* Rings of one queue, shared with the device (in the user page). */
struct vq_ring {
	struct vring_desc desc[VQ_MAX];
	struct {
		uint16_t flags, idx, ring[VQ_MAX];
		uint16_t used_event; /* ring[num]: only at this offset when num == VQ_MAX */
	} avail;
	uint16_t pad;
	struct {
		uint16_t flags, idx;
		struct {
			uint32_t id, len;
		} ring[VQ_MAX];
		uint16_t avail_event;
	} used __attribute__((aligned(4)));
} __attribute__((aligned(64)));

/* Driver state of one queue (in the user page). */
struct virtq {
	struct vq_ring *r;
	volatile uint32_t *notify;
	volatile uint16_t *used_event, *avail_event; /* ring[num] of avail / used */
	uint32_t index;
	uint16_t num, free_head, nfree;
	uint16_t avail_idx, kicked_idx, last_used;
	uint8_t event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint8_t no_irq;    /* ask the device not to interrupt */
	uint16_t next[VQ_MAX];      /* free list and chain links (ours, not the device's) */
	uint16_t chain_len[VQ_MAX]; /* by head; 0 = not in flight */
	uint64_t kicks;             /* notifications written */
};

struct vbuf {
	uint64_t addr;
	uint32_t len;
	uint32_t write; /* device-writable */
};

/* One device found on the command line. */
struct vdev {
	uintptr_t base;
	uint64_t size;
	unsigned irq;
	unsigned index;     /* order on the command line */
	uint32_t id;        /* DeviceID; 0 = none/placeholder */
	uint32_t version;   /* 2 = modern */
	uint64_t features;  /* negotiated */
	bool irq_routed;
	volatile uint32_t irqs; /* interrupts taken */
	volatile uint32_t isr;  /* InterruptStatus bits seen */
	volatile uint64_t irq_tsc; /* TSC at the first interrupt */
	uint64_t used_tsc;         /* TSC when a test first saw a used buffer */
};

ALWAYS_INLINE uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

ALWAYS_INLINE uint32_t vreg_read(const struct vdev *d, unsigned off)
{
	return *(volatile uint32_t *)(d->base + off);
}

ALWAYS_INLINE void vreg_write(const struct vdev *d, unsigned off, uint32_t v)
{
	*(volatile uint32_t *)(d->base + off) = v;
}

/* ---- kernel side (virtio.c) ---- */

/* Parses every virtio_mmio.device= and reads MagicValue/Version/DeviceID.
 * Prints a line per device; returns how many were stored in devs. */
unsigned virtio_find(const char *cmdline, struct vdev *devs, unsigned max);
const char *virtio_id_name(uint32_t id);
/* Reset, ACKNOWLEDGE|DRIVER, features (VERSION_1 required; `want` & offered),
 * FEATURES_OK. NULL on success, else why not. */
const char *virtio_start(struct vdev *d, uint64_t want);
/* Sets up queue `index` (size min(QueueNumMax, VQ_MAX, max_num)); NULL + *err on failure. */
struct virtq *virtio_queue(struct vdev *d, unsigned index, unsigned max_num, const char **err);
/* DRIVER_OK; NULL or why it failed (NEEDS_RESET). */
const char *virtio_driver_ok(struct vdev *d);
void virtio_reset(struct vdev *d);
uint32_t virtio_status(struct vdev *d);
uint8_t virtio_cfg8(struct vdev *d, unsigned off);
uint16_t virtio_cfg16(struct vdev *d, unsigned off);
uint32_t virtio_cfg32(struct vdev *d, unsigned off);
uint64_t virtio_cfg64(struct vdev *d, unsigned off); /* generation-consistent */
/* Routes each device's IRQ (IOAPIC pin = irq, if < 24) to vector 0x21+index. */
void virtio_irqs_init(struct vdev *devs, unsigned n);
/* Makes the device's register page accessible from CPL3. */
void virtio_user_map(struct vdev *d);
/* A test saw its first used buffer (for the interrupt latency report). */
void virtio_note_used(struct vdev *d);
/* Frees all queue memory (call between devices after virtio_reset). */
void virtio_queues_release(void);

/* TSC frequency, calibrated against the PIT (tsc_calibrate, virtio.c). */
extern uint64_t tsc_hz;
void tsc_calibrate(void);
uint64_t tsc_deadline_ms(unsigned ms);

/* ---- data path (USER_TEXT: CPL0 or CPL3) ---- */

/* Adds a chain (device-readable buffers first); returns its head or -1 (full). */
int virtq_add(struct virtq *q, const struct vbuf *b, unsigned n);
/* Publishes added chains and notifies the device if it wants that. */
void virtq_kick(struct virtq *q);
/* Next used chain: head id and written length; -1 none; -2 device gave back junk. */
int virtq_get(struct virtq *q, uint32_t *len);
/* virtq_get, polling until the TSC passes `deadline`: -1 on timeout. */
int virtq_wait(struct virtq *q, uint32_t *len, uint64_t deadline);

#endif
