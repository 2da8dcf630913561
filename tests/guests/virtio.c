/*
 * virtio: exercises every virtio-mmio device named on the command line
 * (virtio_mmio.device=SIZE@BASE:IRQ, in order) with the driver in
 * common/virtio.c, one test per DeviceID, each ending in "PASS: ...",
 * "FAIL: ...: why" or "SKIP: ...":
 *
 *   blk (2)      capacity; 64 KiB pattern at sector 8, FLUSH, read back and
 *                compare (`blkseed=N` varies the pattern); an out-of-range
 *                read must fail. `blkbench=N`: N MiB sequential write + FLUSH
 *                and read from 1 MiB on (64 KiB requests, queue depth 8),
 *                then `blkbench4k=K` (default 2000) random 4 KiB reads at
 *                queue depth 1; the bulk runs in user mode.
 *                `blkread=M`: a read-only bench (no writes: a read-only disk
 *                does): M MiB sequential reads from sector 0 (64 KiB
 *                requests, queue depth 8), then `blkread4k=K` (default 2000)
 *                random 4 KiB reads at queue depth 1 over those M MiB, then
 *                a hash of 4 KiB in every MiB (the MiB at i: bytes
 *                i MiB + (i % 256) * 4 KiB on, FNV-1a over the 64-bit words,
 *                bench/disk.sh computes the same on the host); the write
 *                test is skipped. With `blkwait=1` it prints "blkread:
 *                waiting" first and waits for a byte on the serial port
 *                (a pack saves there; the reads start after the restore,
 *                once bench/disk.sh sends the byte). With `blkhold=1` it
 *                prints "blkread: holding" after the reads and waits for
 *                another byte (a save of the machine after a small change).
 *   net (1)      ARP for the slirp gateway 10.0.2.2 (we are 10.0.2.15), then
 *                with `udpecho=PORT` a UDP datagram to 10.0.2.2:PORT and its
 *                echo.
 *   rng (4)      64 random bytes.
 *   console (3)  a line on port 0's transmitq.
 *   9p (9)       the mount tag, Tversion and Tattach; `p9bench=M` and
 *                `p9files=K`: see test_9p().
 *
 * Then one check that every device interrupted at least once (IOAPIC pin =
 * the IRQ; completions themselves are polled), "virtio: done", and a reset.
 * Pattern word at disk byte offset o (o % 4 == 0):
 * (o / 4 + seed) * 0x9e3779b1 ^ 0x736d6f6c, little-endian.
 *
 * Transport variations: `vqsize=N` caps every queue at N entries (a power
 * of two; blk needs 3 per request), `noeventidx=1` leaves EVENT_IDX off.
 *
 * Under QEMU: -M microvm,acpi=off (with ACPI on, microvm does not put the
 * devices on the command line) -global virtio-mmio.force-legacy=false.
 */
#include "virtio.h"

#define USER_BSS __attribute__((section(".user.bss")))

#define TIMEOUT_MS 5000

static unsigned npass, nfail, nskip;
static unsigned long vqsize;    /* `vqsize=N`: queue size at most N (0: up to VQ_MAX) */
static uint64_t no_feats;       /* `noeventidx=1`: do not negotiate EVENT_IDX */

/* The features a test asks for, less those the command line turned off. */
#define FEATS(f) ((f) & ~no_feats)

#define PASS(...) (npass++, kprintf("PASS: " __VA_ARGS__))
#define SKIP(...) (nskip++, kprintf("SKIP: " __VA_ARGS__))
#define FAILED(...) (nfail++, kprintf("FAIL: " __VA_ARGS__))

/* Runs fn(arg) at CPL3 (arg must be in the user page); interrupts back on. */
static uint64_t user_call(uint64_t (*fn)(void *), void *arg)
{
	uint64_t r = run_user(fn, arg, user_stack_top(0));
	__asm__ volatile("sti");
	return r;
}

static const char *wait_err(int rc)
{
	return rc == -1 ? "timeout waiting for the used ring" : "device returned a bad descriptor id";
}

/* Kernel-mode helper: one chain, kick, wait for it. */
static int vq_roundtrip(struct virtq *q, const struct vbuf *b, unsigned n, uint32_t *len)
{
	int head = virtq_add(q, b, n);
	if (head < 0)
		return -3;
	virtq_kick(q);
	int id = virtq_wait(q, len, tsc_deadline_ms(TIMEOUT_MS));
	if (id >= 0 && id != head)
		return -2;
	return id;
}

static void diag(struct vdev *d, struct virtq *q)
{
	kprintf("    status 0x%x isr 0x%x irqs %u; queue %u: avail idx %u, used idx %u, avail_event %u, kicks %lu\n",
		virtio_status(d), vreg_read(d, VMMIO_INT_STATUS), d->irqs, q->index, q->avail_idx,
		*(volatile uint16_t *)&q->r->used.idx, *q->avail_event, (unsigned long)q->kicks);
}

/* ---- block ------------------------------------------------------------------ */

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_F_RO (1ull << 5)
#define BLK_F_FLUSH (1ull << 9)
#define BLK_SLOTS 8
#define BLK_REQ (64 * 1024)
#define PATTERN_SECTOR 8
#define BENCH_SECTOR 2048

struct blk_req {
	uint32_t type, ioprio;
	uint64_t sector;
	uint8_t status;
	uint8_t pad[7];
};

static struct blk_req blk_reqs[BLK_SLOTS] USER_BSS;
static uint8_t blk_bufs[BLK_SLOTS][BLK_REQ] USER_BSS __attribute__((aligned(4096)));

/* Chain for request slot `s`: header, data (if any), status. */
USER_TEXT static int blk_add(struct virtq *q, struct blk_req *r, uint32_t type, uint64_t sector,
			     void *buf, uint32_t len)
{
	struct vbuf b[3];
	unsigned n = 0;

	r->type = type;
	r->ioprio = 0;
	r->sector = sector;
	r->status = 0xff;
	b[n].addr = (uintptr_t)r;
	b[n].len = 16;
	b[n++].write = 0;
	if (len) {
		b[n].addr = (uintptr_t)buf;
		b[n].len = len;
		b[n++].write = type != BLK_T_OUT;
	}
	b[n].addr = (uintptr_t)&r->status;
	b[n].len = 1;
	b[n++].write = 1;
	return virtq_add(q, b, n);
}

/* One request from kernel mode; returns the status byte or a negative error. */
static int blk_do(struct virtq *q, uint32_t type, uint64_t sector, void *buf, uint32_t len,
		  uint32_t *used_len)
{
	int head = blk_add(q, &blk_reqs[0], type, sector, buf, len);
	if (head < 0)
		return -3;
	virtq_kick(q);
	int id = virtq_wait(q, used_len, tsc_deadline_ms(TIMEOUT_MS));
	if (id < 0)
		return id;
	if (id != head)
		return -2;
	return blk_reqs[0].status;
}

struct pattern_args {
	uint32_t *buf;
	uint64_t words, first, seed;
};
static struct pattern_args pat USER_BSS;

USER_TEXT static uint32_t pattern_word(uint64_t w, uint64_t seed)
{
	return (uint32_t)((w + seed) * 0x9e3779b1u) ^ 0x736d6f6cu;
}

USER_TEXT static uint64_t pattern_fill(void *arg)
{
	struct pattern_args *a = arg;
	for (uint64_t i = 0; i < a->words; i++)
		a->buf[i] = pattern_word(a->first + i, a->seed);
	return 0;
}

/* Index of the first word that differs, or ~0. */
USER_TEXT static uint64_t pattern_check(void *arg)
{
	struct pattern_args *a = arg;
	for (uint64_t i = 0; i < a->words; i++)
		if (a->buf[i] != pattern_word(a->first + i, a->seed))
			return i;
	return ~0ull;
}

/* Reads every word (the sum keeps the loads). */
USER_TEXT static uint64_t peek(void *arg)
{
	struct pattern_args *a = arg;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < a->words; i++)
		sum += ((volatile uint32_t *)a->buf)[i];
	return sum;
}

USER_TEXT static uint64_t poison(void *arg)
{
	struct pattern_args *a = arg;
	for (uint64_t i = 0; i < a->words; i++)
		a->buf[i] = 0xdeadbeef;
	return 0;
}

struct bench_args {
	struct virtq *q;
	struct blk_req *reqs;
	uint8_t (*bufs)[BLK_REQ];
	uint64_t sector, region_sectors; /* region */
	uint64_t count;                  /* requests */
	uint32_t type, len, qd, random, flush;
	uint32_t hash;    /* fold each completed buffer into `sum` (FNV-1a, 64-bit words) */
	uint64_t stride;  /* sectors from one sequential request to the next (0: len) */
	uint64_t timeout, rng, sum;
	uint64_t cycles; /* out */
	int err;         /* out: 0, -1 timeout, -2 bad id, -3 bad status */
	uint8_t slot_of[VQ_MAX];
	uint8_t free_slots[BLK_SLOTS];
};
static struct bench_args bench USER_BSS;

/* Sequential (or random 4 KiB-aligned) requests with up to qd in flight. */
USER_TEXT static uint64_t bench_run(void *arg)
{
	struct bench_args *a = arg;
	struct virtq *q = a->q;
	uint64_t submitted = 0, done = 0, t0 = rdtsc();
	unsigned nfree = a->qd;
	uint32_t len;

	for (unsigned i = 0; i < a->qd; i++)
		a->free_slots[i] = (uint8_t)i;
	a->err = 0;
	while (done < a->count) {
		bool added = false;
		while (nfree && submitted < a->count) {
			unsigned s = a->free_slots[--nfree];
			uint64_t sector;
			if (a->random) {
				a->rng ^= a->rng << 13;
				a->rng ^= a->rng >> 7;
				a->rng ^= a->rng << 17;
				sector = a->sector + (a->rng % (a->region_sectors / 8)) * 8;
			} else {
				sector = a->sector + submitted * (a->stride ? a->stride : a->len / 512);
				if (a->hash) /* a 4 KiB step within each stride, for the hash */
					sector += (submitted % 256) * 8;
			}
			int head = blk_add(q, &a->reqs[s], a->type, sector, a->bufs[s], a->len);
			if (head < 0) {
				a->err = -2;
				return 0;
			}
			a->slot_of[head] = (uint8_t)s;
			submitted++;
			added = true;
		}
		if (added)
			virtq_kick(q);
		int id = virtq_wait(q, &len, rdtsc() + a->timeout);
		if (id < 0) {
			a->err = id;
			return 0;
		}
		unsigned s = a->slot_of[id];
		if (a->reqs[s].status != 0) {
			a->err = -3;
			return 0;
		}
		if (a->hash) {
			const uint64_t *w = (const uint64_t *)a->bufs[s];
			for (uint32_t i = 0; i < a->len / 8; i++)
				a->sum = (a->sum ^ w[i]) * 0x100000001b3ull;
		}
		a->free_slots[nfree++] = (uint8_t)s;
		done++;
	}
	if (a->flush) {
		int head = blk_add(q, &a->reqs[0], BLK_T_FLUSH, 0, 0, 0);
		virtq_kick(q);
		int id = virtq_wait(q, &len, rdtsc() + a->timeout);
		if (id != head || a->reqs[0].status != 0) {
			a->err = id < 0 ? id : -3;
			return 0;
		}
	}
	a->cycles = rdtsc() - t0;
	return 0;
}

/* Tenths of `units` per second. */
static uint64_t rate10(uint64_t units, uint64_t cycles)
{
	cycles /= 1000;
	return units * 10 * (tsc_hz / 1000) / (cycles ? cycles : 1);
}

static struct vdev *bench_dev;

static bool blk_bench_phase(const char *what, uint64_t *cycles)
{
	user_call(bench_run, &bench);
	if (bench.err) {
		FAILED("blkbench: %s: %s\n", what,
		       bench.err == -3 ? "request failed (status not OK)" : wait_err(bench.err));
		diag(bench_dev, bench.q);
		return false;
	}
	*cycles = bench.cycles;
	return true;
}

static void blk_bench(struct vdev *d, struct virtq *q, uint64_t capacity, unsigned long mib,
		      unsigned long k4)
{
	uint64_t sectors = (uint64_t)mib * 2048, cw, cr, c4;
	unsigned qd = q->num / 3 < BLK_SLOTS ? q->num / 3 : BLK_SLOTS;

	if (capacity < BENCH_SECTOR + sectors) {
		FAILED("blkbench: %lu MiB from 1 MiB on needs %lu sectors, the disk has %lu\n", mib,
		       (unsigned long)(BENCH_SECTOR + sectors), (unsigned long)capacity);
		return;
	}
	virtio_user_map(d);
	bench_dev = d;
	q->no_irq = 1;
	bench = (struct bench_args){
		.q = q, .reqs = blk_reqs, .bufs = blk_bufs, .sector = BENCH_SECTOR,
		.region_sectors = sectors, .count = sectors / (BLK_REQ / 512), .type = BLK_T_OUT,
		.len = BLK_REQ, .qd = qd, .flush = 1, .timeout = tsc_hz / 1000 * TIMEOUT_MS,
		.rng = 0x2545f4914f6cdd1dull,
	};
	if (!blk_bench_phase("write", &cw))
		goto out;
	bench.type = BLK_T_IN;
	bench.flush = 0;
	if (!blk_bench_phase("read", &cr))
		goto out;
	bench.count = k4;
	bench.len = 4096;
	bench.qd = 1;
	bench.random = 1;
	if (k4 && !blk_bench_phase("4k-read", &c4))
		goto out;
	uint64_t w = rate10((uint64_t)mib << 20, cw) / 1000000, r = rate10((uint64_t)mib << 20, cr) / 1000000;
	uint64_t z = k4 ? rate10(k4, c4) : 0;
	kprintf("blkbench: write %lu.%lu MB/s read %lu.%lu MB/s 4k-read %lu req/s\n",
		(unsigned long)(w / 10), (unsigned long)(w % 10), (unsigned long)(r / 10),
		(unsigned long)(r % 10), (unsigned long)(z / 10));
	kprintf("blkbench: %lu MiB in 64 KiB requests at queue depth %u (write includes a FLUSH), "
		"%lu random 4 KiB reads at queue depth 1; driver in user mode; %lu kicks, %u irqs\n",
		mib, qd, k4, (unsigned long)q->kicks, d->irqs);
out:
	q->no_irq = 0;
}

/* `blkread=M`: sequential and random reads only, then the hash (see the top). */
static void blk_read_bench(struct vdev *d, struct virtq *q, uint64_t capacity, unsigned long mib,
			   unsigned long k4)
{
	uint64_t sectors = (uint64_t)mib * 2048, cr, c4, ch;
	unsigned qd = q->num / 3 < BLK_SLOTS ? q->num / 3 : BLK_SLOTS;

	if (capacity < sectors) {
		FAILED("blkread: %lu MiB needs %lu sectors, the disk has %lu\n", mib,
		       (unsigned long)sectors, (unsigned long)capacity);
		return;
	}
	virtio_user_map(d);
	bench_dev = d;
	q->no_irq = 1;
	bench = (struct bench_args){
		.q = q, .reqs = blk_reqs, .bufs = blk_bufs, .sector = 0,
		.region_sectors = sectors, .count = sectors / (BLK_REQ / 512), .type = BLK_T_IN,
		.len = BLK_REQ, .qd = qd, .timeout = tsc_hz / 1000 * TIMEOUT_MS,
		.rng = 0x2545f4914f6cdd1dull,
	};
	if (!blk_bench_phase("read", &cr))
		goto out;
	bench.count = k4;
	bench.len = 4096;
	bench.qd = 1;
	bench.random = 1;
	if (k4 && !blk_bench_phase("4k-read", &c4))
		goto out;
	bench.count = mib;
	bench.random = 0;
	bench.stride = 2048;
	bench.hash = 1;
	bench.sum = 0xcbf29ce484222325ull;
	if (!blk_bench_phase("hash", &ch))
		goto out;
	uint64_t r = rate10((uint64_t)mib << 20, cr) / 1000000, z = k4 ? rate10(k4, c4) : 0;
	kprintf("blkread: read %lu.%lu MB/s 4k-read %lu req/s\n", (unsigned long)(r / 10),
		(unsigned long)(r % 10), (unsigned long)(z / 10));
	kprintf("blkread: hash %lx (%lu x 4 KiB)\n", (unsigned long)bench.sum, mib);
	kprintf("blkread: %lu MiB from sector 0 in 64 KiB requests at queue depth %u, %lu random "
		"4 KiB reads at queue depth 1; driver in user mode; %lu kicks, %u irqs\n",
		mib, qd, k4, (unsigned long)q->kicks, d->irqs);
out:
	q->no_irq = 0;
}

static void test_blk(struct vdev *d, const char *cmdline)
{
	const char *err;
	struct virtq *q;
	uint32_t len;
	int st;

	if ((err = virtio_start(d, FEATS(BLK_F_FLUSH | BLK_F_RO | VIRTIO_RING_F_EVENT_IDX))) ||
	    !(q = virtio_queue(d, 0, vqsize, &err)) || (err = virtio_driver_ok(d))) {
		FAILED("blk: setup: %s\n", err);
		return;
	}
	uint64_t cap = virtio_cfg64(d, 0);
	kprintf("blk: capacity %lu sectors (%lu KiB), queue size %u%s%s\n", (unsigned long)cap,
		(unsigned long)(cap / 2), q->num, d->features & BLK_F_FLUSH ? ", flush" : "",
		d->features & BLK_F_RO ? ", read-only" : "");

	/* GET_ID: the serial, for the log. */
	char *id = (char *)blk_bufs[2];
	memset(id, 0, 21);
	st = blk_do(q, BLK_T_GET_ID, 0, id, 20, &len);
	if (st >= 0)
		virtio_note_used(d);
	if (st == 0)
		kprintf("blk: serial \"%s\"\n", id);
	else
		kprintf("blk: GET_ID status %d\n", st);

	unsigned long seed = 0, readmib = 0;
	cmdline_uint(cmdline, "blkseed", &seed);
	cmdline_uint(cmdline, "blkread", &readmib);
	const uint32_t bytes = BLK_REQ;
	if (readmib) {
		SKIP("blk write/read/flush (blkread: no writes)\n");
	} else if (d->features & BLK_F_RO) {
		SKIP("blk write/read/flush (read-only disk)\n");
	} else if (cap < PATTERN_SECTOR + bytes / 512) {
		FAILED("blk write/read/flush: disk of %lu sectors too small\n", (unsigned long)cap);
	} else {
		pat = (struct pattern_args){ (uint32_t *)blk_bufs[0], bytes / 4,
					     PATTERN_SECTOR * 512 / 4, seed };
		user_call(pattern_fill, &pat);
		st = blk_do(q, BLK_T_OUT, PATTERN_SECTOR, blk_bufs[0], bytes, &len);
		if (st) {
			FAILED("blk write/read/flush: write: %s\n",
			       st > 0 ? "status not OK" : wait_err(st));
			if (st < 0)
				diag(d, q);
			goto bench;
		}
		if (d->features & BLK_F_FLUSH) {
			st = blk_do(q, BLK_T_FLUSH, 0, NULL, 0, &len);
			if (st) {
				FAILED("blk write/read/flush: flush: status %d\n", st);
				goto bench;
			}
		} else {
			kprintf("blk: no FLUSH feature, the device writes through\n");
		}
		pat.buf = (uint32_t *)blk_bufs[1];
		user_call(poison, &pat);
		st = blk_do(q, BLK_T_IN, PATTERN_SECTOR, blk_bufs[1], bytes, &len);
		if (st) {
			FAILED("blk write/read/flush: read: status %d\n", st);
			goto bench;
		}
		if (len != bytes + 1)
			kprintf("blk: note: read used length %u, expected %u\n", len, bytes + 1);
		uint64_t bad = user_call(pattern_check, &pat);
		if (bad != ~0ull) {
			FAILED("blk write/read/flush: read back differs at byte %lu: 0x%x\n",
			       (unsigned long)bad * 4, pat.buf[bad]);
			goto bench;
		}
		PASS("blk write/read/flush (%u KiB at sector %u)\n", bytes / 1024, PATTERN_SECTOR);
		/* Buffers the guest has only read so far, from user mode and
		 * from kernel mode: what the device writes into them must be
		 * what the guest reads next, in both modes. */
		for (int b = 3; b <= 4; b++) {
			pat.buf = (uint32_t *)blk_bufs[b];
			uint64_t before = b == 3 ? user_call(peek, &pat) : peek(&pat);
			st = blk_do(q, BLK_T_IN, PATTERN_SECTOR, blk_bufs[b], bytes, &len);
			uint64_t ubad = user_call(pattern_check, &pat), kbad = ~0ull;
			for (uint64_t i = 0; i < pat.words; i++)
				if (((volatile uint32_t *)pat.buf)[i] != pattern_word(pat.first + i, pat.seed)) {
					kbad = i;
					break;
				}
			if (st || ubad != ~0ull || kbad != ~0ull)
				FAILED("blk read into a page read from %s mode: status %d, user sees it "
				       "differ at word %ld, kernel at %ld (sum before %lx)\n",
				       b == 3 ? "user" : "kernel", st, (long)ubad, (long)kbad,
				       (unsigned long)before);
			else
				PASS("blk read into a page read before from %s mode\n",
				     b == 3 ? "user" : "kernel");
		}
	}

	/* A read past the end must fail with IOERR, not touch the buffer's neighbours. */
	st = blk_do(q, BLK_T_IN, cap, blk_bufs[2], 512, &len);
	if (st == 1)
		PASS("blk read past the end fails\n");
	else
		FAILED("blk read past the end: status %d, expected 1 (IOERR)\n", st);

bench:;
	unsigned long mib, k4 = 2000, wait = 0;
	if (readmib) {
		cmdline_uint(cmdline, "blkread4k", &k4);
		if (cmdline_uint(cmdline, "blkwait", &wait) && wait) {
			kprintf("blkread: waiting\n");
			serial_getc();
		}
		blk_read_bench(d, q, cap, readmib, k4);
		if (cmdline_uint(cmdline, "blkhold", &wait) && wait) {
			kprintf("blkread: holding\n");
			serial_getc();
		}
	} else if (cmdline_uint(cmdline, "blkbench", &mib) && mib) {
		cmdline_uint(cmdline, "blkbench4k", &k4);
		blk_bench(d, q, cap, mib, k4);
	}
}

/* ---- net -------------------------------------------------------------------- */

#define NET_F_MAC (1ull << 5)
#define NET_F_STATUS (1ull << 16)
#define NET_HDR 12
#define NET_RXBUFS 16
#define NET_BUF 2048
#define GW_IP 0x0a000202u
#define MY_IP 0x0a00020fu
#define MY_PORT 40123

struct net {
	struct vdev *d;
	struct virtq *rx, *tx;
	uint8_t mac[6], gw[6];
	uint8_t rxbuf_of[VQ_MAX];
};

static uint8_t net_rx[NET_RXBUFS][NET_BUF] __attribute__((aligned(64)));
static uint8_t net_tx[NET_BUF] __attribute__((aligned(64)));

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static bool net_post_rx(struct net *n, unsigned i)
{
	struct vbuf b = { (uintptr_t)net_rx[i], NET_BUF, 1 };
	int head = virtq_add(n->rx, &b, 1);
	if (head < 0)
		return false;
	n->rxbuf_of[head] = (uint8_t)i;
	return true;
}

/* Sends the frame built at net_tx + NET_HDR; waits for the device to take it. */
static int net_send(struct net *n, unsigned frame_len)
{
	uint32_t len;

	memset(net_tx, 0, NET_HDR);
	if (frame_len < 60) {
		memset(net_tx + NET_HDR + frame_len, 0, 60 - frame_len);
		frame_len = 60;
	}
	struct vbuf b = { (uintptr_t)net_tx, NET_HDR + frame_len, 0 };
	return vq_roundtrip(n->tx, &b, 1, &len);
}

static unsigned arp_frame(struct net *n, uint8_t *f, uint16_t op, const uint8_t *dmac,
			  uint32_t tip)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	memcpy(f, op == 1 ? bcast : dmac, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);      /* Ethernet */
	put16(f + 16, 0x0800); /* IPv4 */
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, op);
	memcpy(f + 22, n->mac, 6);
	put32(f + 28, MY_IP);
	if (op == 1)
		memset(f + 32, 0, 6);
	else
		memcpy(f + 32, dmac, 6);
	put32(f + 38, tip);
	return 42;
}

static unsigned udp_frame(struct net *n, uint8_t *f, uint16_t dport, const char *payload,
			  unsigned plen)
{
	memcpy(f, n->gw, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14, *udp = ip + 20;
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(20 + 8 + plen));
	put16(ip + 4, 0x1234);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = 17;
	put16(ip + 10, 0);
	put32(ip + 12, MY_IP);
	put32(ip + 16, GW_IP);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += get16(ip + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	put16(ip + 10, (uint16_t)~sum);
	put16(udp, MY_PORT);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + plen));
	put16(udp + 6, 0); /* no checksum (allowed over IPv4) */
	memcpy(udp + 8, payload, plen);
	return 14 + 20 + 8 + plen;
}

enum { WANT_ARP, WANT_UDP };

/*
 * Receives until the deadline; answers ARP requests for our address. WANT_ARP:
 * an ARP reply from the gateway (stores its MAC). WANT_UDP: a datagram from
 * GW_IP:port to MY_PORT whose payload equals `payload`. Returns true if seen.
 */
static bool net_recv(struct net *n, int want, uint16_t port, const char *payload, unsigned plen,
		     uint64_t deadline, unsigned *frames)
{
	bool found = false;

	while (!found) {
		uint32_t len;
		int id = virtq_wait(n->rx, &len, deadline);
		if (id < 0)
			return false;
		unsigned bi = n->rxbuf_of[id];
		const uint8_t *f = net_rx[bi] + NET_HDR;
		unsigned fl = len > NET_HDR ? len - NET_HDR : 0;
		(*frames)++;
		if (fl >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 1 && get32(f + 38) == MY_IP) {
			uint8_t smac[6];
			memcpy(smac, f + 22, 6);
			uint32_t sip = get32(f + 28);
			net_post_rx(n, bi);
			virtq_kick(n->rx);
			kprintf("net: answering ARP request from %u.%u.%u.%u\n", sip >> 24,
				(sip >> 16) & 255, (sip >> 8) & 255, sip & 255);
			net_send(n, arp_frame(n, net_tx + NET_HDR, 2, smac, sip));
			continue;
		}
		if (want == WANT_ARP && fl >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2 &&
		    get32(f + 28) == GW_IP) {
			memcpy(n->gw, f + 22, 6);
			found = true;
		} else if (want == WANT_UDP && fl >= 42 && get16(f + 12) == 0x0800 && f[23] == 17) {
			unsigned ihl = (f[14] & 15) * 4;
			const uint8_t *u = f + 14 + ihl;
			if (get32(f + 26) == GW_IP && get32(f + 30) == MY_IP &&
			    14 + ihl + 8 <= fl && get16(u) == port && get16(u + 2) == MY_PORT) {
				unsigned ul = get16(u + 4);
				if (ul == 8 + plen && 14 + ihl + ul <= fl && !memcmp(u + 8, payload, plen))
					found = true;
				else
					kprintf("net: UDP reply of %u bytes does not match\n", ul - 8);
			}
		}
		net_post_rx(n, bi);
		virtq_kick(n->rx);
	}
	return true;
}

static void test_net(struct vdev *d, const char *cmdline)
{
	static struct net net;
	struct net *n = &net;
	const char *err;
	unsigned frames = 0;

	memset(n, 0, sizeof(*n));
	n->d = d;
	if ((err = virtio_start(d, FEATS(NET_F_MAC | NET_F_STATUS | VIRTIO_RING_F_EVENT_IDX))) ||
	    !(n->rx = virtio_queue(d, 0, vqsize, &err)) || !(n->tx = virtio_queue(d, 1, vqsize, &err)) ||
	    (err = virtio_driver_ok(d))) {
		FAILED("net: setup: %s\n", err);
		return;
	}
	if (d->features & NET_F_MAC) {
		for (int i = 0; i < 6; i++)
			n->mac[i] = virtio_cfg8(d, i);
	} else {
		static const uint8_t dflt[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
		memcpy(n->mac, dflt, 6);
	}
	kprintf("net: mac %x:%x:%x:%x:%x:%x%s, link %s, queue sizes %u/%u\n", n->mac[0], n->mac[1],
		n->mac[2], n->mac[3], n->mac[4], n->mac[5], d->features & NET_F_MAC ? "" : " (ours)",
		!(d->features & NET_F_STATUS) ? "unknown" : virtio_cfg16(d, 6) & 1 ? "up" : "down",
		n->rx->num, n->tx->num);
	for (unsigned i = 0; i < NET_RXBUFS && i < n->rx->num; i++)
		net_post_rx(n, i);
	virtq_kick(n->rx);

	bool ok = false;
	for (int tries = 0; tries < 5 && !ok; tries++) {
		int rc = net_send(n, arp_frame(n, net_tx + NET_HDR, 1, NULL, GW_IP));
		if (rc >= 0)
			virtio_note_used(d);
		if (rc < 0) {
			FAILED("net arp: transmit: %s\n", wait_err(rc));
			diag(d, n->tx);
			return;
		}
		ok = net_recv(n, WANT_ARP, 0, NULL, 0, tsc_deadline_ms(1000), &frames);
	}
	if (!ok) {
		FAILED("net arp: no reply from 10.0.2.2 (%u frames received)\n", frames);
		diag(d, n->rx);
		return;
	}
	PASS("net arp (gateway 10.0.2.2 is %x:%x:%x:%x:%x:%x)\n", n->gw[0], n->gw[1], n->gw[2],
	     n->gw[3], n->gw[4], n->gw[5]);

	unsigned long port;
	if (!cmdline_uint(cmdline, "udpecho", &port) || !port || port > 65535) {
		SKIP("net (no udpecho=)\n");
		return;
	}
	/* The payload carries the TSC so a stale reply cannot match. */
	char payload[40] = "smolvm udp echo ";
	unsigned plen = 16;
	uint64_t t = rdtsc();
	for (int i = 60; i >= 0; i -= 4)
		payload[plen++] = "0123456789abcdef"[(t >> i) & 15];
	ok = false;
	for (int tries = 0; tries < 5 && !ok; tries++) {
		int rc = net_send(n, udp_frame(n, net_tx + NET_HDR, (uint16_t)port, payload, plen));
		if (rc < 0) {
			FAILED("net udp echo: transmit: %s\n", wait_err(rc));
			return;
		}
		ok = net_recv(n, WANT_UDP, (uint16_t)port, payload, plen, tsc_deadline_ms(1000),
			      &frames);
	}
	if (ok)
		PASS("net udp echo (10.0.2.2:%lu)\n", port);
	else
		FAILED("net udp echo: no echo from 10.0.2.2:%lu in 5 tries (%u frames received)\n",
		       port, frames);
}

/* ---- rng -------------------------------------------------------------------- */

static void test_rng(struct vdev *d)
{
	static uint8_t buf[64] __attribute__((aligned(64)));
	const char *err;
	struct virtq *q;
	uint32_t len;

	if ((err = virtio_start(d, FEATS(VIRTIO_RING_F_EVENT_IDX))) || !(q = virtio_queue(d, 0, vqsize, &err)) ||
	    (err = virtio_driver_ok(d))) {
		FAILED("rng: setup: %s\n", err);
		return;
	}
	unsigned got = 0, rounds = 0;
	memset(buf, 0, sizeof(buf));
	/* The device may return fewer bytes than asked: ask again for the rest. */
	while (got < sizeof(buf) && rounds++ < 16) {
		struct vbuf b = { (uintptr_t)buf + got, (uint32_t)(sizeof(buf) - got), 1 };
		int rc = vq_roundtrip(q, &b, 1, &len);
		if (rc < 0) {
			FAILED("rng: %s\n", wait_err(rc));
			diag(d, q);
			return;
		}
		virtio_note_used(d);
		if (len > sizeof(buf) - got) {
			FAILED("rng: device wrote %u bytes into a %u-byte buffer\n", len,
			       (unsigned)(sizeof(buf) - got));
			return;
		}
		got += len;
	}
	if (got < sizeof(buf)) {
		FAILED("rng: only %u of 64 bytes in %u requests\n", got, rounds);
		return;
	}
	unsigned same = 0, zero = 0;
	for (unsigned i = 0; i < sizeof(buf); i++) {
		same += buf[i] == buf[0];
		zero += buf[i] == 0;
	}
	if (same == sizeof(buf) || zero == sizeof(buf)) {
		FAILED("rng: 64 bytes all 0x%x\n", buf[0]);
		return;
	}
	PASS("rng (64 bytes in %u request%s: %x %x %x %x ...)\n", rounds, rounds > 1 ? "s" : "",
	     buf[0], buf[1], buf[2], buf[3]);
}

/* ---- console ---------------------------------------------------------------- */

#define CONSOLE_F_SIZE 1ull

static void test_console(struct vdev *d)
{
	/* Built at run time: the serial log must not contain the line itself. */
	static char line[32];
	const char *err;
	struct virtq *q;
	uint32_t len;

	if ((err = virtio_start(d, FEATS(CONSOLE_F_SIZE | VIRTIO_RING_F_EVENT_IDX))) ||
	    !virtio_queue(d, 0, vqsize, &err) || !(q = virtio_queue(d, 1, vqsize, &err)) ||
	    (err = virtio_driver_ok(d))) {
		FAILED("console: setup: %s\n", err);
		return;
	}
	if (d->features & CONSOLE_F_SIZE)
		kprintf("console: %ux%u\n", virtio_cfg16(d, 0), virtio_cfg16(d, 2));
	static const char text[] = "hello from virtio_console\n";
	memcpy(line, text, sizeof(text));
	line[17] = '-';
	struct vbuf b = { (uintptr_t)line, sizeof(text) - 1, 0 };
	int rc = vq_roundtrip(q, &b, 1, &len);
	if (rc < 0) {
		FAILED("console tx: %s\n", wait_err(rc));
		diag(d, q);
		return;
	}
	virtio_note_used(d);
	PASS("console tx\n");
}

/* ---- 9p ---------------------------------------------------------------------- */

/* A 9P2000.L client just big enough to check the device and to time it:
 * Tversion, Tattach, then with `p9bench=M` M MiB written in 64 KiB Twrites
 * to a new file (and a Tfsync), read back in 64 KiB Treads, and with
 * `p9files=K` (default 10000) K empty files created (walk, lcreate, clunk),
 * stat'ed (walk, getattr, clunk) and removed (unlinkat), one request at a
 * time, from user mode. Prints "p9bench: ..." lines. */

#define P9_F_MOUNT_TAG 1ull
#define P9_MSIZE (128 * 1024)
#define P9_CHUNK (64 * 1024)

struct p9c {
	struct virtq *q;
	uint8_t *tx, *rx;
	uint32_t txlen;
	uint64_t timeout;
	int err;    /* 0; -1 timeout, -2 bad id; >0: Rlerror's errno, or 9999: bad reply */
	uint32_t ecode;
	/* bench parameters and results */
	uint64_t mib, files;
	uint64_t c_write, c_read, c_create, c_stat, c_remove;
	char tag[40];
};

static uint8_t p9_tx[P9_MSIZE] USER_BSS __attribute__((aligned(4096)));
static uint8_t p9_rx[P9_MSIZE] USER_BSS __attribute__((aligned(4096)));
static uint8_t p9_data[P9_CHUNK] USER_BSS __attribute__((aligned(4096)));
static struct p9c p9 USER_BSS;
/* the strings the user-mode client sends (kernel .rodata is not mapped there) */
static const char s_version[] USER_DATA = "9P2000.L", s_root[] USER_DATA = "root",
		  s_empty[] USER_DATA = "", s_dat[] USER_DATA = "p9bench.dat",
		  s_dir[] USER_DATA = "p9files";

USER_TEXT static void p9_le(struct p9c *c, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		c->tx[c->txlen++] = (uint8_t)(v >> (8 * i));
}

USER_TEXT static void p9_hdr(struct p9c *c, uint8_t type)
{
	c->txlen = 0;
	p9_le(c, 0, 4);
	p9_le(c, type, 1);
	p9_le(c, 1, 2);
}

USER_TEXT static void p9_s(struct p9c *c, const char *s)
{
	unsigned n = 0;
	while (s[n])
		n++;
	p9_le(c, n, 2);
	for (unsigned i = 0; i < n; i++)
		c->tx[c->txlen++] = (uint8_t)s[i];
}

USER_TEXT static uint32_t p9_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Sends the message in tx (plus `data` of `dlen` bytes after it), waits for
 * the reply of type `want`. 0 or sets c->err. */
USER_TEXT static int p9_rpc(struct p9c *c, const uint8_t *data, uint32_t dlen, uint8_t want)
{
	struct vbuf b[3];
	unsigned n = 0;
	uint32_t len, total = c->txlen + dlen;

	for (unsigned i = 0; i < 4; i++)
		c->tx[i] = (uint8_t)(total >> (8 * i));
	b[n].addr = (uintptr_t)c->tx;
	b[n].len = c->txlen;
	b[n++].write = 0;
	if (dlen) {
		b[n].addr = (uintptr_t)data;
		b[n].len = dlen;
		b[n++].write = 0;
	}
	b[n].addr = (uintptr_t)c->rx;
	b[n].len = P9_MSIZE;
	b[n++].write = 1;
	int head = virtq_add(c->q, b, n);
	if (head < 0)
		return c->err = -2;
	virtq_kick(c->q);
	int id = virtq_wait(c->q, &len, rdtsc() + c->timeout);
	if (id < 0)
		return c->err = id;
	if (id != head)
		return c->err = -2;
	if (c->rx[4] == 7) { /* Rlerror */
		c->ecode = p9_get32(c->rx + 7);
		return c->err = (int)c->ecode;
	}
	if (c->rx[4] != want || p9_get32(c->rx) > len)
		return c->err = 9999;
	return 0;
}

USER_TEXT static int p9_walk(struct p9c *c, uint32_t fid, uint32_t newfid, const char *name)
{
	p9_hdr(c, 110);
	p9_le(c, fid, 4);
	p9_le(c, newfid, 4);
	p9_le(c, name ? 1 : 0, 2);
	if (name)
		p9_s(c, name);
	return p9_rpc(c, 0, 0, 111);
}

USER_TEXT static int p9_clunk(struct p9c *c, uint32_t fid)
{
	p9_hdr(c, 120);
	p9_le(c, fid, 4);
	return p9_rpc(c, 0, 0, 121);
}

USER_TEXT static int p9_lcreate(struct p9c *c, uint32_t fid, const char *name, uint32_t flags)
{
	p9_hdr(c, 14);
	p9_le(c, fid, 4);
	p9_s(c, name);
	p9_le(c, flags, 4);
	p9_le(c, 0644, 4);
	p9_le(c, 0, 4);
	return p9_rpc(c, 0, 0, 15);
}

USER_TEXT static void p9_name(char *buf, uint64_t i)
{
	buf[0] = 'f';
	for (int k = 6; k >= 1; k--, i /= 10)
		buf[k] = (char)('0' + i % 10);
	buf[7] = 0;
}

/* The whole session, at CPL3. */
USER_TEXT static uint64_t p9_session(void *arg)
{
	struct p9c *c = arg;
	char name[8];
	uint64_t t;

	c->err = 0;
	p9_hdr(c, 100);
	p9_le(c, P9_MSIZE, 4);
	p9_s(c, s_version);
	if (p9_rpc(c, 0, 0, 101))
		return 1;
	p9_hdr(c, 104);
	p9_le(c, 0, 4);
	p9_le(c, 0xffffffffu, 4);
	p9_s(c, s_root);
	p9_s(c, s_empty);
	p9_le(c, 0, 4);
	if (p9_rpc(c, 0, 0, 105))
		return 2;
	if (!c->mib && !c->files)
		return 0;
	/* sequential write and read of one file */
	if (c->mib) {
		uint64_t chunks = c->mib * (1024 * 1024 / P9_CHUNK);
		if (p9_walk(c, 0, 1, 0) || p9_lcreate(c, 1, s_dat, 02 | 01000 /* O_RDWR|O_TRUNC */))
			return 3;
		t = rdtsc();
		for (uint64_t i = 0; i < chunks; i++) {
			p9_hdr(c, 118);
			p9_le(c, 1, 4);
			p9_le(c, i * P9_CHUNK, 8);
			p9_le(c, P9_CHUNK, 4);
			if (p9_rpc(c, p9_data, P9_CHUNK, 119))
				return 4;
			if (p9_get32(c->rx + 7) != P9_CHUNK)
				return c->err = 9998, 4;
		}
		p9_hdr(c, 50);
		p9_le(c, 1, 4);
		p9_le(c, 1, 4);
		if (p9_rpc(c, 0, 0, 51))
			return 5;
		c->c_write = rdtsc() - t;
		t = rdtsc();
		for (uint64_t i = 0; i < chunks; i++) {
			p9_hdr(c, 116);
			p9_le(c, 1, 4);
			p9_le(c, i * P9_CHUNK, 8);
			p9_le(c, P9_CHUNK, 4);
			if (p9_rpc(c, 0, 0, 117))
				return 6;
			if (p9_get32(c->rx + 7) != P9_CHUNK)
				return c->err = 9998, 6;
		}
		c->c_read = rdtsc() - t;
		if (p9_clunk(c, 1))
			return 7;
		p9_hdr(c, 76);
		p9_le(c, 0, 4);
		p9_s(c, s_dat);
		p9_le(c, 0, 4);
		if (p9_rpc(c, 0, 0, 77))
			return 8;
	}
	if (c->files) {
		p9_hdr(c, 72); /* mkdir p9files */
		p9_le(c, 0, 4);
		p9_s(c, s_dir);
		p9_le(c, 0755, 4);
		p9_le(c, 0, 4);
		if (p9_rpc(c, 0, 0, 73) || p9_walk(c, 0, 2, s_dir))
			return 9;
		t = rdtsc();
		for (uint64_t i = 0; i < c->files; i++) {
			p9_name(name, i);
			if (p9_walk(c, 2, 3, 0) || p9_lcreate(c, 3, name, 01 | 0100) || p9_clunk(c, 3))
				return 10;
		}
		c->c_create = rdtsc() - t;
		t = rdtsc();
		for (uint64_t i = 0; i < c->files; i++) {
			p9_name(name, i);
			if (p9_walk(c, 2, 3, name))
				return 11;
			p9_hdr(c, 24);
			p9_le(c, 3, 4);
			p9_le(c, 0x7ff, 8);
			if (p9_rpc(c, 0, 0, 25) || p9_clunk(c, 3))
				return 11;
		}
		c->c_stat = rdtsc() - t;
		t = rdtsc();
		for (uint64_t i = 0; i < c->files; i++) {
			p9_name(name, i);
			p9_hdr(c, 76);
			p9_le(c, 2, 4);
			p9_s(c, name);
			p9_le(c, 0, 4);
			if (p9_rpc(c, 0, 0, 77))
				return 12;
		}
		c->c_remove = rdtsc() - t;
		p9_hdr(c, 76);
		p9_le(c, 0, 4);
		p9_s(c, s_dir);
		p9_le(c, 0x200, 4);
		if (p9_rpc(c, 0, 0, 77) || p9_clunk(c, 2))
			return 13;
	}
	return 0;
}

static void test_9p(struct vdev *d, const char *cmdline)
{
	const char *err;
	struct virtq *q;
	unsigned long mib = 0, files = 10000;

	if ((err = virtio_start(d, FEATS(P9_F_MOUNT_TAG | VIRTIO_RING_F_EVENT_IDX))) ||
	    !(q = virtio_queue(d, 0, vqsize, &err)) || (err = virtio_driver_ok(d))) {
		FAILED("9p: setup: %s\n", err);
		return;
	}
	unsigned tl = virtio_cfg16(d, 0);
	char tag[40];
	for (unsigned i = 0; i < tl && i < sizeof(tag) - 1; i++)
		tag[i] = (char)virtio_cfg8(d, 2 + i);
	tag[tl < sizeof(tag) - 1 ? tl : sizeof(tag) - 1] = 0;
	kprintf("9p: tag \"%s\", queue size %u\n", tag, q->num);
	cmdline_uint(cmdline, "p9bench", &mib);
	if (!cmdline_uint(cmdline, "p9files", &files) && !mib)
		files = 0;
	virtio_user_map(d);
	q->no_irq = 1;
	p9 = (struct p9c){ .q = q, .tx = p9_tx, .rx = p9_rx, .timeout = tsc_hz / 1000 * TIMEOUT_MS,
			   .mib = mib, .files = files };
	uint64_t step = user_call(p9_session, &p9);
	q->no_irq = 0;
	if (step) {
		FAILED("9p: step %lu: %s %d\n", (unsigned long)step,
		       p9.err > 0 && p9.err < 9000 ? "Rlerror" : "error", p9.err);
		return;
	}
	PASS("9p version and attach%s\n", mib || files ? " and the bench" : "");
	if (mib) {
		uint64_t w = rate10((uint64_t)mib << 20, p9.c_write) / 1000000,
			 r = rate10((uint64_t)mib << 20, p9.c_read) / 1000000;
		kprintf("p9bench: write %lu.%lu MB/s read %lu.%lu MB/s (%lu MiB, 64 KiB requests)\n",
			(unsigned long)(w / 10), (unsigned long)(w % 10), (unsigned long)(r / 10),
			(unsigned long)(r % 10), mib);
	}
	if (files)
		kprintf("p9bench: create %lu/s stat %lu/s remove %lu/s (%lu files)\n",
			(unsigned long)(rate10(files, p9.c_create) / 10),
			(unsigned long)(rate10(files, p9.c_stat) / 10),
			(unsigned long)(rate10(files, p9.c_remove) / 10), files);
}

/* ---- main ------------------------------------------------------------------- */

void guest_main(const char *cmdline)
{
	static struct vdev devs[VIRTIO_MAX_DEVS];

	kprintf("virtio: start\n");
	unsigned long v;
	cmdline_uint(cmdline, "vqsize", &vqsize);
	if (cmdline_uint(cmdline, "noeventidx", &v) && v)
		no_feats |= VIRTIO_RING_F_EVENT_IDX;
	unsigned n = virtio_find(cmdline, devs, VIRTIO_MAX_DEVS);
	if (!n) {
		FAILED("virtio: no virtio_mmio.device= on the command line\n");
		kprintf("virtio: done\n");
		return;
	}
	tsc_calibrate();
	kprintf("virtio: %u device%s, TSC %lu kHz\n", n, n > 1 ? "s" : "",
		(unsigned long)(tsc_hz / 1000));
	virtio_irqs_init(devs, n);
	__asm__ volatile("sti");

	for (unsigned i = 0; i < n; i++) {
		struct vdev *d = &devs[i];
		switch (d->id) {
		case VIRTIO_ID_BLOCK: test_blk(d, cmdline); break;
		case VIRTIO_ID_NET: test_net(d, cmdline); break;
		case VIRTIO_ID_RNG: test_rng(d); break;
		case VIRTIO_ID_CONSOLE: test_console(d); break;
		case 9: test_9p(d, cmdline); break;
		case 0: continue; /* empty slot */
		default:
			SKIP("virtio device %u: id %u (no test)\n", i, d->id);
			continue;
		}
		if (virtio_status(d) & VSTATUS_NEEDS_RESET)
			FAILED("%s: device set DEVICE_NEEDS_RESET\n", virtio_id_name(d->id));
		virtio_reset(d);
		virtio_queues_release();
	}

	/* Every device completed requests after DRIVER_OK without suppressing
	 * interrupts, so each must have interrupted at least once. */
	unsigned quiet = 0, routed = 0;
	/* An interrupt may still be on its way (irqfd, another thread): wait a little. */
	uint64_t t0 = rdtsc(), deadline = tsc_deadline_ms(500);
	for (unsigned i = 0; i < n; i++) {
		struct vdev *d = &devs[i];
		if (!d->irq_routed || d->id < 1 || d->id > 4 || d->irqs)
			continue;
		while (!d->irqs && (int64_t)(rdtsc() - deadline) < 0)
			__asm__ volatile("pause");
		if (d->irqs)
			kprintf("virtio: device %u (%s): interrupt came late, %lu us after the tests\n",
				i, virtio_id_name(d->id),
				(unsigned long)((rdtsc() - t0) / (tsc_hz / 1000000)));
	}
	for (unsigned i = 0; i < n; i++) {
		struct vdev *d = &devs[i];
		if (!d->irq_routed || d->id < 1 || d->id > 4)
			continue;
		routed++;
		kprintf("virtio: device %u (%s): %u interrupts, isr bits 0x%x", i,
			virtio_id_name(d->id), d->irqs, d->isr);
		if (d->irqs && d->used_tsc) {
			uint64_t mhz = tsc_hz / 1000000 ? tsc_hz / 1000000 : 1;
			if (d->irq_tsc >= d->used_tsc)
				kprintf(", the first %lu us after the first used buffer",
					(unsigned long)((d->irq_tsc - d->used_tsc) / mhz));
			else
				kprintf(", the first %lu us before the first used buffer was seen",
					(unsigned long)((d->used_tsc - d->irq_tsc) / mhz));
		}
		kprintf("\n");
		if (!d->irqs)
			quiet++;
	}
	if (quiet)
		FAILED("virtio interrupts: %u of %u devices never interrupted (waited 500 ms)\n", quiet, routed);
	else if (routed)
		PASS("virtio interrupts (%u device%s)\n", routed, routed > 1 ? "s" : "");
	kprintf("virtio: %u passed, %u failed, %u skipped\n", npass, nfail, nskip);
	kprintf("virtio: done\n");
}
