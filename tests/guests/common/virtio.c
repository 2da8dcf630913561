/* Minimal modern virtio-mmio driver; see virtio.h. */
#include "virtio.h"

#define VIRTIO_MAGIC 0x74726976 /* "virt" */
#define IRQ_VECTOR0 0x21
#define MAX_QUEUES 8

uint64_t tsc_hz;

/* Queue state and rings live in the user page so CPL3 code can drive them. */
static struct vq_ring rings[MAX_QUEUES] __attribute__((section(".user.bss"), aligned(4096)));
static struct virtq queues[MAX_QUEUES] __attribute__((section(".user.bss")));
static unsigned queues_used;

static struct vdev *irq_devs;
static unsigned irq_ndevs;

/* ---- command line ---- */

static bool parse_num(const char **ps, uint64_t *out)
{
	const char *p = *ps;
	unsigned base = 10;
	uint64_t v = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	const char *start = p;
	for (;; p++) {
		unsigned dig;
		if (*p >= '0' && *p <= '9')
			dig = *p - '0';
		else if (base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
			dig = (*p | 0x20) - 'a' + 10;
		else
			break;
		v = v * base + dig;
	}
	if (p == start)
		return false;
	*out = v;
	*ps = p;
	return true;
}

/* Linux's memparse suffixes. */
static uint64_t parse_suffix(const char **ps, uint64_t v)
{
	switch (**ps | 0x20) {
	case 'k': (*ps)++; return v << 10;
	case 'm': (*ps)++; return v << 20;
	case 'g': (*ps)++; return v << 30;
	}
	return v;
}

const char *virtio_id_name(uint32_t id)
{
	switch (id) {
	case VIRTIO_ID_NET: return "net";
	case VIRTIO_ID_BLOCK: return "blk";
	case VIRTIO_ID_CONSOLE: return "console";
	case VIRTIO_ID_RNG: return "rng";
	case 0: return "none";
	}
	return "unknown";
}

unsigned virtio_find(const char *s, struct vdev *devs, unsigned max)
{
	static const char key[] = "virtio_mmio.device=";
	const size_t klen = sizeof(key) - 1;
	unsigned n = 0, seen = 0;

	while (*s) {
		while (*s == ' ')
			s++;
		if (!memcmp(s, key, klen)) {
			const char *p = s + klen;
			uint64_t size, base, irq;
			bool ok = parse_num(&p, &size);
			if (ok)
				size = parse_suffix(&p, size);
			ok = ok && *p++ == '@' && parse_num(&p, &base);
			if (ok)
				base = parse_suffix(&p, base);
			ok = ok && *p++ == ':' && parse_num(&p, &irq);
			/* An optional ":id" (Linux's platform device id) follows. */
			ok = ok && (*p == ' ' || *p == 0 || *p == ':');
			if (!ok) {
				kprintf("FAIL: virtio: cannot parse command-line word %d\n", (int)seen);
			} else if (base + size > 0x100000000ull || size < 0x100) {
				kprintf("FAIL: virtio: device %u at 0x%lx size 0x%lx: outside the 4 GiB we map\n",
					seen, (unsigned long)base, (unsigned long)size);
			} else if (n < max) {
				struct vdev *d = &devs[n];
				memset(d, 0, sizeof(*d));
				d->base = base;
				d->size = size;
				d->irq = (unsigned)irq;
				d->index = n;
				uint32_t magic = vreg_read(d, VMMIO_MAGIC);
				d->version = vreg_read(d, VMMIO_VERSION);
				d->id = vreg_read(d, VMMIO_DEVICE_ID);
				kprintf("virtio: device %u: 0x%lx size 0x%lx irq %u: magic 0x%x version %u id %u (%s) vendor 0x%x\n",
					n, (unsigned long)base, (unsigned long)size, d->irq, magic, d->version,
					d->id, virtio_id_name(d->id), vreg_read(d, VMMIO_VENDOR_ID));
				if (magic != VIRTIO_MAGIC) {
					kprintf("FAIL: virtio: device %u: bad magic 0x%x\n", n, magic);
					d->id = 0;
				}
				n++;
			} else {
				kprintf("virtio: more than %u devices, ignoring the rest\n", max);
			}
			seen++;
		}
		while (*s && *s != ' ')
			s++;
	}
	return n;
}

/* ---- device setup ---- */

uint32_t virtio_status(struct vdev *d)
{
	return vreg_read(d, VMMIO_STATUS);
}

void virtio_reset(struct vdev *d)
{
	vreg_write(d, VMMIO_STATUS, 0);
	for (int i = 0; i < 1000 && vreg_read(d, VMMIO_STATUS); i++)
		;
}

const char *virtio_start(struct vdev *d, uint64_t want)
{
	if (d->version != 2)
		return d->version == 1 ? "legacy virtio-mmio (version 1), not supported"
				       : "unknown virtio-mmio version";
	virtio_reset(d);
	if (vreg_read(d, VMMIO_STATUS))
		return "status not 0 after reset";
	vreg_write(d, VMMIO_STATUS, VSTATUS_ACK);
	vreg_write(d, VMMIO_STATUS, VSTATUS_ACK | VSTATUS_DRIVER);

	vreg_write(d, VMMIO_DEV_FEAT_SEL, 0);
	uint64_t offered = vreg_read(d, VMMIO_DEV_FEAT);
	vreg_write(d, VMMIO_DEV_FEAT_SEL, 1);
	offered |= (uint64_t)vreg_read(d, VMMIO_DEV_FEAT) << 32;
	kprintf("virtio: device %u: features offered 0x%lx\n", d->index, (unsigned long)offered);
	if (!(offered & VIRTIO_F_VERSION_1))
		return "VERSION_1 not offered";
	d->features = offered & (want | VIRTIO_F_VERSION_1);
	vreg_write(d, VMMIO_DRV_FEAT_SEL, 0);
	vreg_write(d, VMMIO_DRV_FEAT, (uint32_t)d->features);
	vreg_write(d, VMMIO_DRV_FEAT_SEL, 1);
	vreg_write(d, VMMIO_DRV_FEAT, (uint32_t)(d->features >> 32));
	vreg_write(d, VMMIO_STATUS, VSTATUS_ACK | VSTATUS_DRIVER | VSTATUS_FEATURES_OK);
	if (!(vreg_read(d, VMMIO_STATUS) & VSTATUS_FEATURES_OK))
		return "device refused FEATURES_OK";
	return NULL;
}

void virtio_queues_release(void)
{
	queues_used = 0;
}

struct virtq *virtio_queue(struct vdev *d, unsigned index, unsigned max_num, const char **err)
{
	if (queues_used == MAX_QUEUES) {
		*err = "out of queue memory";
		return NULL;
	}
	vreg_write(d, VMMIO_QUEUE_SEL, index);
	if (vreg_read(d, VMMIO_QUEUE_READY)) {
		*err = "QueueReady already set";
		return NULL;
	}
	uint32_t max = vreg_read(d, VMMIO_QUEUE_NUM_MAX);
	if (!max) {
		*err = "queue not available (QueueNumMax 0)";
		return NULL;
	}
	unsigned num = max < VQ_MAX ? max : VQ_MAX;
	if (max_num && num > max_num)
		num = max_num;

	struct vq_ring *r = &rings[queues_used];
	struct virtq *q = &queues[queues_used++];
	memset(r, 0, sizeof(*r));
	memset(q, 0, sizeof(*q));
	q->r = r;
	q->notify = (volatile uint32_t *)(d->base + VMMIO_QUEUE_NOTIFY);
	q->used_event = &r->avail.ring[0] + num;
	q->avail_event = (volatile uint16_t *)(&r->used.ring[0] + num);
	q->index = index;
	q->num = (uint16_t)num;
	q->nfree = (uint16_t)num;
	q->event_idx = !!(d->features & VIRTIO_RING_F_EVENT_IDX);
	for (unsigned i = 0; i < num; i++)
		q->next[i] = (uint16_t)(i + 1);

	uint64_t desc = (uintptr_t)r->desc, avail = (uintptr_t)&r->avail,
		 used = (uintptr_t)&r->used;
	vreg_write(d, VMMIO_QUEUE_NUM, num);
	vreg_write(d, VMMIO_QUEUE_DESC, (uint32_t)desc);
	vreg_write(d, VMMIO_QUEUE_DESC + 4, (uint32_t)(desc >> 32));
	vreg_write(d, VMMIO_QUEUE_AVAIL, (uint32_t)avail);
	vreg_write(d, VMMIO_QUEUE_AVAIL + 4, (uint32_t)(avail >> 32));
	vreg_write(d, VMMIO_QUEUE_USED, (uint32_t)used);
	vreg_write(d, VMMIO_QUEUE_USED + 4, (uint32_t)(used >> 32));
	vreg_write(d, VMMIO_QUEUE_READY, 1);
	if (vreg_read(d, VMMIO_QUEUE_READY) != 1) {
		*err = "QueueReady does not read back 1";
		return NULL;
	}
	return q;
}

const char *virtio_driver_ok(struct vdev *d)
{
	vreg_write(d, VMMIO_STATUS, VSTATUS_ACK | VSTATUS_DRIVER | VSTATUS_FEATURES_OK |
					    VSTATUS_DRIVER_OK);
	uint32_t s = vreg_read(d, VMMIO_STATUS);
	if (s & VSTATUS_NEEDS_RESET)
		return "DEVICE_NEEDS_RESET after DRIVER_OK";
	if (!(s & VSTATUS_DRIVER_OK))
		return "DRIVER_OK does not read back";
	return NULL;
}

uint8_t virtio_cfg8(struct vdev *d, unsigned off)
{
	return *(volatile uint8_t *)(d->base + VMMIO_CONFIG + off);
}

uint16_t virtio_cfg16(struct vdev *d, unsigned off)
{
	return *(volatile uint16_t *)(d->base + VMMIO_CONFIG + off);
}

uint32_t virtio_cfg32(struct vdev *d, unsigned off)
{
	return *(volatile uint32_t *)(d->base + VMMIO_CONFIG + off);
}

uint64_t virtio_cfg64(struct vdev *d, unsigned off)
{
	uint32_t gen, lo, hi;

	do {
		gen = vreg_read(d, VMMIO_CONFIG_GEN);
		lo = virtio_cfg32(d, off);
		hi = virtio_cfg32(d, off + 4);
	} while (gen != vreg_read(d, VMMIO_CONFIG_GEN));
	return (uint64_t)hi << 32 | lo;
}

/* ---- interrupts ---- */

static void virtio_irq(struct trap_frame *f)
{
	unsigned i = (unsigned)f->vector - IRQ_VECTOR0;

	if (i < irq_ndevs) {
		struct vdev *d = &irq_devs[i];
		uint32_t isr = vreg_read(d, VMMIO_INT_STATUS);
		vreg_write(d, VMMIO_INT_ACK, isr);
		d->isr |= isr;
		if (!d->irqs++)
			d->irq_tsc = rdtsc();
	}
	lapic_eoi();
}

void virtio_irqs_init(struct vdev *devs, unsigned n)
{
	irq_devs = devs;
	irq_ndevs = n;
	pic_mask_all();
	lapic_enable();
	for (unsigned i = 0; i < n; i++) {
		if (devs[i].irq >= 24 || IRQ_VECTOR0 + i > 47) {
			kprintf("virtio: device %u: irq %u not routed (one IOAPIC, pins 0-23), polling only\n",
				i, devs[i].irq);
			continue;
		}
		trap_set_handler(IRQ_VECTOR0 + i, virtio_irq);
		ioapic_route(devs[i].irq, (uint8_t)(IRQ_VECTOR0 + i), lapic_id());
		devs[i].irq_routed = true;
	}
}

void virtio_note_used(struct vdev *d)
{
	if (!d->used_tsc)
		d->used_tsc = rdtsc();
}

/* Sets U/S on the 2 MiB page (entry.S's identity map) holding the registers. */
void virtio_user_map(struct vdev *d)
{
	user_map(d->base, 1);
}

/* ---- time ---- */

void tsc_calibrate(void)
{
	pit_clock_start();
	uint64_t us0 = pit_clock_us(), t0 = rdtsc(), us, t;
	do {
		us = pit_clock_us();
		t = rdtsc();
	} while (us - us0 < 50000 && t - t0 < 50000000000ull);
	if (us - us0 < 1000) {
		kprintf("virtio: the PIT does not count, assuming a 2 GHz TSC\n");
		tsc_hz = 2000000000ull;
		return;
	}
	tsc_hz = (t - t0) * 1000000 / (us - us0);
}

uint64_t tsc_deadline_ms(unsigned ms)
{
	return rdtsc() + tsc_hz / 1000 * ms;
}

/* ---- data path: user text, no kernel calls, no kernel data ---- */

#define barrier() __asm__ volatile("" : : : "memory")

USER_TEXT int virtq_add(struct virtq *q, const struct vbuf *b, unsigned n)
{
	if (!n || n > q->nfree)
		return -1;
	uint16_t head = q->free_head, i = head;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *d = &q->r->desc[i];
		d->addr = b[k].addr;
		d->len = b[k].len;
		d->flags = (uint16_t)((b[k].write ? VRING_DESC_F_WRITE : 0) |
				      (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		d->next = q->next[i];
		i = q->next[i];
	}
	q->free_head = i;
	q->nfree = (uint16_t)(q->nfree - n);
	q->chain_len[head] = (uint16_t)n;
	q->r->avail.ring[q->avail_idx % q->num] = head;
	q->avail_idx++;
	return head;
}

USER_TEXT void virtq_kick(struct virtq *q)
{
	uint16_t old = q->kicked_idx, now = q->avail_idx;

	barrier(); /* descriptors and ring entries before the index (x86: stores in order) */
	*(volatile uint16_t *)&q->r->avail.idx = now;
	q->kicked_idx = now;
	/* Our index store before reading the device's suppression state. */
	__asm__ volatile("mfence" : : : "memory");
	bool need;
	if (q->event_idx) {
		uint16_t evt = *q->avail_event;
		need = (uint16_t)(now - evt - 1) < (uint16_t)(now - old);
	} else {
		need = !(*(volatile uint16_t *)&q->r->used.flags & 1);
	}
	if (need) {
		*q->notify = q->index;
		q->kicks++;
	}
}

USER_TEXT int virtq_get(struct virtq *q, uint32_t *len)
{
	uint16_t idx = *(volatile uint16_t *)&q->r->used.idx;

	if (idx == q->last_used)
		return -1;
	barrier(); /* the entry after the index (x86: loads in order) */
	uint32_t id = q->r->used.ring[q->last_used % q->num].id;
	*len = q->r->used.ring[q->last_used % q->num].len;
	q->last_used++;
	/* Interrupt us for the next one, or (no_irq) not for a long while. */
	if (q->event_idx)
		*q->used_event = (uint16_t)(q->no_irq ? q->last_used + 0x7fff : q->last_used);
	else
		*(volatile uint16_t *)&q->r->avail.flags = q->no_irq;
	if (id >= q->num || !q->chain_len[id])
		return -2;
	unsigned n = q->chain_len[id];
	uint16_t i = (uint16_t)id;
	for (unsigned k = 1; k < n; k++)
		i = q->next[i];
	q->next[i] = q->free_head;
	q->free_head = (uint16_t)id;
	q->nfree = (uint16_t)(q->nfree + n);
	q->chain_len[id] = 0;
	return (int)id;
}

USER_TEXT int virtq_wait(struct virtq *q, uint32_t *len, uint64_t deadline)
{
	for (;;) {
		int id = virtq_get(q, len);
		if (id != -1)
			return id;
		if ((int64_t)(rdtsc() - deadline) > 0)
			return -1;
		__asm__ volatile("pause");
	}
}
