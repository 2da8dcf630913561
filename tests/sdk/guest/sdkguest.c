/*
 * sdkguest: drives the SDK's example device plugins (sdk/examples) once a
 * round, about every 100 ms (PIT at 100 Hz, halting in between), so that a
 * machine packed in the middle and run later shows whether their state
 * came back:
 *
 *   sdkguest: seqrng: device 0
 *   sdkguest: tally v2 at 0x700, scratch 5eed0001
 *   round 0: tally 0 scratch 5eed0001 v2 seqrng 40 41 42 43
 *   round 1: tally 1 scratch 5eed0001 v2 seqrng 44 45 46 47
 *
 * tally (port I/O): COUNT advances on every read, SCRATCH is written once
 * at the start, VERSION is the state version of the plugin build serving
 * the guest right now. seqrng (virtio entropy device, DeviceID 4): 4 bytes
 * a round from its queue, polled. Without a device the round says "none".
 *
 * Command line: tally=PORT (default 0x700), scratch=VALUE (0x5eed0001),
 * rounds=N (stop after N rounds; default: run until stopped).
 */
#include "guest.h"
#include "virtio.h"

#define TIMER_VECTOR 0x20
#define PIT_IOAPIC_PIN 2
#define IRQS_PER_ROUND 10

enum { REG_COUNT = 0, REG_SCRATCH = 4, REG_VERSION = 8 };

static volatile unsigned long irqs;

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void timer_irq(struct trap_frame *f)
{
	(void)f;
	irqs++;
	lapic_eoi();
}

/* The seqrng queue, or NULL. */
static struct virtq *seqrng_setup(const char *cmdline)
{
	static struct vdev devs[VIRTIO_MAX_DEVS];
	const char *err = NULL;
	struct virtq *q;
	unsigned n = virtio_find(cmdline, devs, VIRTIO_MAX_DEVS);

	for (unsigned i = 0; i < n; i++) {
		struct vdev *d = &devs[i];
		if (d->id != VIRTIO_ID_RNG)
			continue;
		if ((err = virtio_start(d, 0)) || !(q = virtio_queue(d, 0, 8, &err)) ||
		    (err = virtio_driver_ok(d))) {
			kprintf("FAIL: seqrng setup: %s\n", err);
			return NULL;
		}
		kprintf("sdkguest: seqrng: device %u\n", i);
		return q;
	}
	return NULL;
}

static uint8_t rbuf[4] __attribute__((aligned(64)));

/* 4 bytes from the device into rbuf; false on a timeout or junk. */
static bool seqrng_read(struct virtq *q)
{
	struct vbuf b = { (uintptr_t)rbuf, sizeof(rbuf), 1 };
	uint32_t len = 0;
	int head;

	memset(rbuf, 0, sizeof(rbuf));
	head = virtq_add(q, &b, 1);
	if (head < 0)
		return false;
	virtq_kick(q);
	return virtq_wait(q, &len, tsc_deadline_ms(2000)) == head && len == sizeof(rbuf);
}

void guest_main(const char *cmdline)
{
	unsigned long port = 0x700, scratch = 0x5eed0001, rounds = 0;
	bool bounded = cmdline_uint(cmdline, "rounds", &rounds);
	struct virtq *q;

	cmdline_uint(cmdline, "tally", &port);
	cmdline_uint(cmdline, "scratch", &scratch);
	if (port > 0xfff0)
		fail("tally=%lu: not a port\n", port);

	tsc_calibrate(); /* before the PIT becomes the round timer */
	q = seqrng_setup(cmdline);
	outl((uint16_t)(port + REG_SCRATCH), (uint32_t)scratch);
	kprintf("sdkguest: tally v%u at 0x%lx, scratch %x\n", inl((uint16_t)(port + REG_VERSION)),
		port, inl((uint16_t)(port + REG_SCRATCH)));

	pic_mask_all();
	lapic_enable();
	trap_set_handler(TIMER_VECTOR, timer_irq);
	ioapic_route(PIT_IOAPIC_PIN, TIMER_VECTOR, lapic_id());
	pit_periodic(100);

	unsigned long next = 1, round = 0;
	for (;;) {
		__asm__ volatile("sti; hlt; cli" : : : "memory");
		if (irqs < next)
			continue;
		next = irqs + IRQS_PER_ROUND;
		uint32_t count = inl((uint16_t)(port + REG_COUNT));
		uint32_t sc = inl((uint16_t)(port + REG_SCRATCH));
		uint32_t ver = inl((uint16_t)(port + REG_VERSION));
		if (!q)
			kprintf("round %lu: tally %u scratch %x v%u seqrng none\n", round, count, sc, ver);
		else if (seqrng_read(q))
			kprintf("round %lu: tally %u scratch %x v%u seqrng %x %x %x %x\n", round, count,
				sc, ver, rbuf[0], rbuf[1], rbuf[2], rbuf[3]);
		else
			kprintf("FAIL: round %lu: seqrng did not answer\n", round);
		round++;
		if (bounded && round >= rounds) {
			kprintf("sdkguest: done\n");
			return; /* start_c resets: the machine ends */
		}
	}
}
