/* Fuzz the virtio-vsock device (plugins/virtio-vsock/vsock.c) behind the
 * SDK's virtio-mmio transport, the way a hostile guest driver and hostile
 * host programs see it.
 *
 * vsock.c is compiled into this file so its static functions are
 * reachable: the device's thread is never started, and the harness runs
 * the thread's loop body (build_pollset, a poll with no wait, work) itself,
 * deterministically. Its clock is faked (clock_gettime below), so the
 * timeouts fire when the input says so. Guest memory is a 128 KiB array;
 * the host side is real Unix sockets in a temporary directory: the
 * device's listening socket "<dir>/s" and a program listening on
 * "<dir>/s_5000" for the guest's connections to host port 5000.
 *
 * The input: one byte of bring-up options (EVENT_IDX, the guest CID), then
 * a list of commands, each an opcode byte and its arguments (see run_cmd):
 * TX packets (header fields, lengths, credit, descriptor layout), bursts
 * of TX_BATCH and more, raw descriptors, receive and event buffers, runs
 * of the device loop, host programs connecting / writing / reading /
 * shutting down / closing, time passing, device and machine resets, a
 * simulated restore, pause, raw register and config accesses. Each input
 * gets a fresh device; at the end every connection, buffer and file
 * descriptor must be gone. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

/* The device's clock, under the input's control. */
static int64_t fz_ms;
static int fz_clock_gettime(clockid_t id, struct timespec *ts)
{
	(void)id;
	ts->tv_sec = fz_ms / 1000;
	ts->tv_nsec = (long)(fz_ms % 1000) * 1000000;
	return 0;
}
#define clock_gettime fz_clock_gettime
#include "../../plugins/virtio-vsock/vsock.c" /* the harness reaches its internals */
#undef clock_gettime
/* The SDK code vsock.c uses besides the transport (fuzz.mk links
 * virtio_mmio.c): its device ops and the typed state writer and reader. */
#include "../../sdk/src/state_io.c"
#include "../../sdk/src/virtio_device.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- fake host ------------------------------------------------------------ */

#define GUEST_SIZE (128 * 1024)
#define QN 256                        /* queue size the driver picks (the most) */
#define DESC_GPA(q) ((uint64_t)(q) * 0x2000)
#define AVAIL_GPA(q) (DESC_GPA(q) + 0x1000)
#define USED_GPA(q) (DESC_GPA(q) + 0x1400)
#define DATA_GPA 0x6000
#include "fake_host.h"
static char log_buf[512];

static void f_log(smolvm_ctx *c, enum smolvm_log_level l, const char *f, ...)
{
	va_list ap;

	(void)c, (void)l;
	va_start(ap, f);
	vsnprintf(log_buf, sizeof(log_buf), f, ap);
	va_end(ap);
#ifdef FUZZ_VSOCK_TRACE
	fprintf(stderr, "log: %s\n", log_buf);
#endif
}
static void f_err(smolvm_ctx *c, const char *f, ...)
{
	va_list ap;

	(void)c;
	va_start(ap, f);
	vsnprintf(log_buf, sizeof(log_buf), f, ap);
	va_end(ap);
}
static int f_unwatch(smolvm_ctx *c, int fd) { (void)c, (void)fd; return 0; }

static const struct smolvm_host_api api = {
	.struct_size = sizeof(api), .log = f_log, .set_error = f_err, .guest_ptr = f_ptr,
	.irq_set = f_irq, .io_register = f_io, .resource_alloc = f_res,
	.cmdline_append = f_cmd, .ioeventfd = f_evfd, .irqfd = f_irqfd,
	.fd_unwatch = f_unwatch,
};

/* ---- host side: sockets ----------------------------------------------------- */

#define GUEST_TARGET_PORT 5000 /* a host program listens here */
#define MAX_PROGS 80
static char dir[64];
static char sock_path[96], port_path[112];
static int listen_fd = -1, port_fd = -1; /* the device's socket; the program's */
static int progs[MAX_PROGS];
static unsigned nprogs;
static int fd_mark = -1;

static void cleanup_dir(void)
{
	unlink(sock_path);
	unlink(port_path);
	rmdir(dir);
}

static int listen_on(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		abort();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0)
		abort();
	return fd;
}

static void host_init(void)
{
	strcpy(dir, "/tmp/fuzz_vsock.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/s", dir);
	snprintf(port_path, sizeof(port_path), "%s/s_%u", dir, GUEST_TARGET_PORT);
	atexit(cleanup_dir);
	listen_fd = listen_on(sock_path, 128);
	port_fd = listen_on(port_path, 8);
	signal(SIGPIPE, SIG_IGN);
}

static void prog_add(int fd)
{
	if (nprogs == MAX_PROGS) {
		close(fd);
		return;
	}
	progs[nprogs++] = fd;
}

static void prog_del(unsigned i)
{
	close(progs[i]);
	progs[i] = progs[--nprogs];
}

/* The program on port 5000 takes the guest's connections. */
static void accept_guest_conns(void)
{
	int fd;

	while ((fd = accept4(port_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
		prog_add(fd);
}

static void drain_listener(int lfd)
{
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
		close(fd);
}

/* ---- the guest driver ------------------------------------------------------- */

static struct vsock *v;

struct gq {
	uint16_t avail_idx, next_desc, used_seen;
	uint64_t head_gpa[QN]; /* first buffer of the chain at each head */
	uint32_t head_len[QN];
};
static struct gq gq[NUM_QUEUES];
static uint32_t data_off;
static int event_idx;

/* Connections the guest knows of: (host port, guest port), and the
 * payload bytes it has taken (its fwd_cnt). */
struct pair {
	uint32_t hport, gport, fwd;
};
#define NPAIRS 8
static struct pair pairs[NPAIRS];
static unsigned npairs_next;
static struct virtio_vsock_hdr last_rx;
static int have_last_rx;

static const uint32_t host_ports[8] = { GUEST_TARGET_PORT, 1024, 1025, 1026, 1027, 5001, 2, 0 };
static const uint32_t guest_ports[8] = { 49152, 49153, 49154, 1234, 22, 0, 1024, UINT32_MAX };

static void wr(uint64_t off, uint32_t val)
{
	uint32_t le = htole32(val);

	mmio->write(mmio_opaque, off, &le, 4);
}

static struct pair *pair_get(uint32_t hport, uint32_t gport)
{
	struct pair *p;

	for (unsigned i = 0; i < NPAIRS; i++)
		if (pairs[i].hport == hport && pairs[i].gport == gport)
			return &pairs[i];
	p = &pairs[npairs_next++ % NPAIRS];
	*p = (struct pair){ .hport = hport, .gport = gport };
	return p;
}

static void bringup(void)
{
	memset(guest, 0, DATA_GPA);
	memset(gq, 0, sizeof(gq));
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, event_idx ? 1u << VIRTIO_RING_F_EVENT_IDX : 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
	for (uint32_t q = 0; q < NUM_QUEUES; q++) {
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, QN);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)DESC_GPA(q));
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)AVAIL_GPA(q));
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)USED_GPA(q));
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* Guest memory for a buffer, from a ring over the data area. */
static uint64_t galloc(uint32_t *len)
{
	if (*len > GUEST_SIZE - DATA_GPA)
		*len = GUEST_SIZE - DATA_GPA;
	if (data_off < DATA_GPA || data_off + *len > GUEST_SIZE)
		data_off = DATA_GPA;
	uint64_t gpa = data_off;
	data_off += *len;
	return gpa;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	uint16_t flags; /* VRING_DESC_F_WRITE or 0 */
};

static void set_avail_idx(uint32_t q)
{
	struct vring_avail *a = (struct vring_avail *)(guest + AVAIL_GPA(q));

	__atomic_store_n(&a->idx, htole16(gq[q].avail_idx), __ATOMIC_RELEASE);
}

/* Makes a chain of `n` buffers available on queue q, like a driver does
 * (one that does not overrun the queue). */
static void add_chain(uint32_t q, const struct seg *s, unsigned n)
{
	struct gq *g = &gq[q];
	struct vring_desc *d = (struct vring_desc *)(guest + DESC_GPA(q));
	struct vring_avail *a = (struct vring_avail *)(guest + AVAIL_GPA(q));
	uint16_t head = g->next_desc;

	if (!n || n > QN || (uint16_t)(g->avail_idx - v->vd.vq[q].last_avail) >= QN)
		return;
	for (unsigned i = 0; i < n; i++) {
		uint16_t k = g->next_desc;
		g->next_desc = (uint16_t)((g->next_desc + 1) % QN);
		d[k].addr = htole64(s[i].gpa);
		d[k].len = htole32(s[i].len);
		d[k].flags = htole16((uint16_t)(s[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0)));
		d[k].next = htole16(g->next_desc);
	}
	g->head_gpa[head] = s[0].gpa;
	g->head_len[head] = s[0].len;
	a->ring[g->avail_idx % QN] = htole16(head);
	g->avail_idx++;
	set_avail_idx(q);
}

static void kick(uint32_t q)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

/* The guest reads what the device put in its receive buffers. */
static void reap_rx(void)
{
	struct gq *g = &gq[RXQ];
	const struct vring_used *u = (const struct vring_used *)(guest + USED_GPA(RXQ));
	uint16_t idx = le16toh(__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE));

	for (; g->used_seen != idx; g->used_seen++) {
		const struct vring_used_elem *e = &u->ring[g->used_seen % QN];
		uint32_t id = le32toh(e->id), len = le32toh(e->len);
		struct virtio_vsock_hdr h;

		if (id >= QN || len < HDR_LEN || g->head_len[id] < HDR_LEN ||
		    g->head_gpa[id] + HDR_LEN > GUEST_SIZE)
			continue;
		memcpy(&h, guest + g->head_gpa[id], HDR_LEN);
		last_rx = h;
		have_last_rx = 1;
		struct pair *p = pair_get(le32toh(h.src_port), le32toh(h.dst_port));
		if (le16toh(h.op) == VIRTIO_VSOCK_OP_RW)
			p->fwd += le32toh(h.len);
	}
}

/* ---- the device's thread, one round ----------------------------------------- */

static void run_once(void)
{
	run_round(v, 0);
	accept_guest_conns();
	reap_rx();
#ifdef FUZZ_VSOCK_TRACE
	fprintf(stderr, "run: status %#x broken %u rx used %u tx used %u progs %u rst %u reset %d:",
		v->vd.status, v->vd.broken, gq[RXQ].used_seen, v->vd.vq[TXQ].used_idx, nprogs,
		v->rst_count, v->reset);
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (v->conns[i].state)
			fprintf(stderr, " [%u %u:%u p%#x st%u ring%u rx%u fwd%u tx%u]", v->conns[i].state,
				v->conns[i].local_port, v->conns[i].peer_port, v->conns[i].pending,
				v->conns[i].stage_len, v->conns[i].ring_len, v->conns[i].rx_cnt,
				v->conns[i].fwd_cnt, v->conns[i].tx_cnt);
	fprintf(stderr, "\n");
#endif
}

/* ---- input ------------------------------------------------------------------ */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}
static uint16_t u16(struct in *in) { return (uint16_t)(u8(in) | u8(in) << 8); }
static uint32_t u32(struct in *in) { return (uint32_t)u16(in) | (uint32_t)u16(in) << 16; }

static void fill_pattern(uint8_t *p, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i);
}

/* A packet from the guest on the transmit queue. */
static void cmd_tx(struct in *in)
{
	uint8_t b0 = u8(in), b1 = u8(in), b2 = u8(in), b3 = u8(in);
	uint16_t plen_in = u16(in);
	uint32_t plen = plen_in & 0x8000 ? (uint32_t)(plen_in & 0x7fff) * 4 : plen_in % 2048;
	uint32_t total = HDR_LEN + plen;
	uint64_t gpa = galloc(&total);
	struct virtio_vsock_hdr h;
	uint16_t op = b0 & 7;
	uint32_t hport, gport;
	struct pair *p = NULL;

	plen = total - HDR_LEN;
	memset(&h, 0, sizeof(h));
	switch (b1 & 3) {
	case 0:
		p = &pairs[(b1 >> 2) % NPAIRS];
		hport = p->hport;
		gport = p->gport;
		break;
	case 1:
		hport = have_last_rx ? le32toh(last_rx.src_port) : GUEST_TARGET_PORT;
		gport = have_last_rx ? le32toh(last_rx.dst_port) : guest_ports[0];
		break;
	case 2:
		hport = host_ports[(b1 >> 2) & 7];
		gport = guest_ports[(b1 >> 5) & 7];
		break;
	default:
		hport = u32(in);
		gport = u32(in);
		break;
	}
	if (!p)
		p = pair_get(hport, gport);
	h.src_cid = htole64(b0 & 8 ? (uint64_t)u32(in) : v->guest_cid);
	h.dst_cid = htole64(b0 & 16 ? (uint64_t)u8(in) : HOST_CID);
	h.src_port = htole32(gport);
	h.dst_port = htole32(hport);
	h.type = htole16(b0 & 32 ? u16(in) : VIRTIO_VSOCK_TYPE_STREAM);
	h.op = htole16(op);
	switch (b2 & 3) {
	case 0: h.len = htole32(plen); break;
	case 1: h.len = htole32(plen + 1 + u8(in)); break;
	case 2: h.len = htole32(u32(in)); break;
	default: h.len = htole32(plen > 0 ? plen - 1 - u8(in) % plen : 0); break;
	}
	switch ((b2 >> 2) & 3) {
	case 0: h.buf_alloc = htole32(256 * 1024); break;
	case 1: h.buf_alloc = htole32(u32(in)); break;
	case 2: h.buf_alloc = 0; break;
	default: h.buf_alloc = htole32(u16(in)); break;
	}
	switch ((b2 >> 4) & 3) {
	case 0: h.fwd_cnt = htole32(p->fwd); break;
	case 1: h.fwd_cnt = htole32(u32(in)); break;
	case 2: h.fwd_cnt = htole32(p->fwd + u16(in)); break;
	default: h.fwd_cnt = 0; break;
	}
	h.flags = htole32(op == VIRTIO_VSOCK_OP_SHUTDOWN ? (uint32_t)(b2 >> 6) : 0);
	if (b0 & 128) { /* the whole header as the input says */
		for (unsigned i = 0; i < HDR_LEN; i++)
			((uint8_t *)&h)[i] = u8(in);
	}
	if (le16toh(h.op) == VIRTIO_VSOCK_OP_REQUEST)
		pair_get(le32toh(h.dst_port), le32toh(h.src_port))->fwd = 0;

	memcpy(guest + gpa, &h, HDR_LEN);
	fill_pattern(guest + gpa + HDR_LEN, plen, b3);

	/* Descriptor layout: up to 4 device-readable pieces (cut anywhere,
	 * the header too), optionally an empty one first, a writable one
	 * after, or all pieces over the same bytes. */
	struct seg s[7];
	uint32_t cuts[4];
	unsigned ncut = b3 & 3, n = 0;

	for (unsigned i = 0; i < ncut; i++)
		cuts[i] = (b3 & 4) && !i ? 1 + u8(in) % (HDR_LEN - 1) : u16(in) % (total + 1);
	for (unsigned i = 1; i < ncut; i++) /* sort */
		for (unsigned j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			uint32_t t = cuts[j];
			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
	if (b3 & 16)
		s[n++] = (struct seg){ .gpa = gpa, .len = 0 };
	uint32_t start = 0;
	for (unsigned i = 0; i <= ncut; i++) {
		uint32_t end = i < ncut ? cuts[i] : total;
		if (b3 & 32) /* every piece over the start of the packet */
			s[n++] = (struct seg){ .gpa = gpa, .len = end - start };
		else
			s[n++] = (struct seg){ .gpa = gpa + start, .len = end - start };
		start = end;
	}
	if (b3 & 8) {
		uint32_t wl = 1 + u8(in);
		s[n++] = (struct seg){ .gpa = galloc(&wl), .len = wl, .flags = VRING_DESC_F_WRITE };
	}
	add_chain(TXQ, s, n);
	if (!(b0 & 64))
		kick(TXQ);
}

/* Many small packets at once (the device takes at most TX_BATCH a round). */
static void cmd_tx_burst(struct in *in)
{
	uint8_t b0 = u8(in), count = u8(in);
	struct pair *p = &pairs[b0 % NPAIRS];
	uint32_t len = HDR_LEN;
	uint64_t gpa = galloc(&len);
	struct virtio_vsock_hdr h = {
		.src_cid = htole64(v->guest_cid), .dst_cid = htole64(HOST_CID),
		.src_port = htole32(p->gport), .dst_port = htole32(p->hport),
		.type = htole16(VIRTIO_VSOCK_TYPE_STREAM),
		.op = htole16(b0 & 8 ? VIRTIO_VSOCK_OP_CREDIT_REQUEST : VIRTIO_VSOCK_OP_CREDIT_UPDATE),
		.buf_alloc = htole32(256 * 1024), .fwd_cnt = htole32(p->fwd),
	};
	struct seg s = { .gpa = gpa, .len = HDR_LEN };

	memcpy(guest + gpa, &h, HDR_LEN);
	for (unsigned i = 0; i <= count; i++)
		add_chain(TXQ, &s, 1);
	kick(TXQ);
}

/* Receive buffers. */
static void cmd_rx(struct in *in)
{
	static const uint32_t sizes[16] = { 0, 1, 43, 44, 45, 48, 64, 100, 256, 1024, 4096,
					    16384, 65536 + 44, 44 + 7, 44 + 4096, 200 };
	uint8_t b0 = u8(in);
	unsigned count = 1 + (b0 & 7);

	for (unsigned i = 0; i < count; i++) {
		uint8_t sb = u8(in);
		uint32_t len = sizes[sb & 15];
		struct seg s[3];
		unsigned n = 0;

		if (b0 & 16) {
			uint32_t rl = 8;
			s[n++] = (struct seg){ .gpa = galloc(&rl), .len = rl };
		}
		uint64_t gpa = galloc(&len);
		if ((b0 & 32) && len > 1) {
			uint32_t cut = 1 + (uint32_t)(sb >> 4) * 4 % (len - 1);
			s[n++] = (struct seg){ .gpa = gpa, .len = cut, .flags = VRING_DESC_F_WRITE };
			s[n++] = (struct seg){ .gpa = gpa + cut, .len = len - cut,
					       .flags = VRING_DESC_F_WRITE };
		} else {
			s[n++] = (struct seg){ .gpa = gpa, .len = len, .flags = VRING_DESC_F_WRITE };
		}
		add_chain(RXQ, s, n); /* (reap_rx reads headers in a first buffer only) */
	}
	if (!(b0 & 8))
		kick(RXQ);
}

/* An event buffer. */
static void cmd_evq(struct in *in)
{
	static const uint32_t sizes[4] = { 4, 8, 3, 0 };
	uint8_t b0 = u8(in);
	uint32_t len = sizes[b0 & 3];
	struct seg s = { .gpa = galloc(&len), .len = len, .flags = b0 & 8 ? 0 : VRING_DESC_F_WRITE };

	add_chain(EVQ, &s, 1);
	if (!(b0 & 4))
		kick(EVQ);
}

/* Hostile descriptors: a raw entry in a table and/or a raw head. */
static void cmd_raw_desc(struct in *in)
{
	uint8_t b0 = u8(in);
	uint32_t q = b0 % 3;
	struct vring_desc *d = (struct vring_desc *)(guest + DESC_GPA(q));
	uint16_t k = u8(in);

	d[k].addr = htole64(b0 & 4 ? u32(in) % (2 * GUEST_SIZE) : DATA_GPA + u16(in));
	d[k].len = htole32(b0 & 8 ? u32(in) : u16(in));
	d[k].flags = htole16(u16(in) & 7);
	d[k].next = htole16(b0 & 16 ? u16(in) : (uint16_t)((k + 1) % QN));
	if (b0 & 32) {
		struct vring_avail *a = (struct vring_avail *)(guest + AVAIL_GPA(q));
		a->ring[gq[q].avail_idx % QN] = htole16(b0 & 64 ? u16(in) : k);
		gq[q].head_gpa[k] = le64toh(d[k].addr);
		gq[q].head_len[k] = le32toh(d[k].len);
		gq[q].avail_idx++;
		set_avail_idx(q);
		kick(q);
	}
}

/* A host program connects and says something. */
static void cmd_host_connect(struct in *in)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t b0 = u8(in);
	char line[160];
	int len = 0, fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return;
	}
	switch (b0 & 7) {
	case 0: len = snprintf(line, sizeof(line), "CONNECT %u\n", guest_ports[(b0 >> 3) & 7]); break;
	case 1: len = snprintf(line, sizeof(line), "CONNECT %u\r\n", guest_ports[(b0 >> 3) & 7]); break;
	case 2: /* the start of the stream right after the line */
		len = snprintf(line, sizeof(line), "CONNECT %u\nhello", guest_ports[(b0 >> 3) & 7]);
		len += u8(in) % 60;
		if (len > (int)sizeof(line))
			len = sizeof(line);
		break;
	case 3: /* anything */
		len = u8(in) % 100;
		for (int i = 0; i < len; i++)
			line[i] = (char)u8(in);
		break;
	case 4: len = snprintf(line, sizeof(line), "CONNECT %u", guest_ports[(b0 >> 3) & 7]); break;
	case 5: len = snprintf(line, sizeof(line), "CONNECT %u\n", u32(in)); break;
	case 6: len = snprintf(line, sizeof(line), "CONNECT 99999999999\n"); break;
	default: len = 0; break;
	}
	if (len > 0) {
		ssize_t r = send(fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)r;
	}
	if (b0 & 128)
		close(fd); /* gone at once */
	else
		prog_add(fd);
}

static uint8_t bulk[65536];

static void cmd_prog(struct in *in)
{
	uint8_t b0 = u8(in);
	uint16_t arg = u16(in);
	ssize_t r;

	if (!nprogs)
		return;
	unsigned i = u8(in) % nprogs;
	switch (b0 & 3) {
	case 0: { /* writes: bulk, or a few bytes the input says (the rest of a line) */
		uint32_t len = arg & 0x8000 ? (uint32_t)(arg & 0x7fff) * 2 : arg % 512;
		if (b0 & 128) {
			len %= 24;
			for (uint32_t k = 0; k < len; k++)
				bulk[k] = u8(in);
		} else {
			fill_pattern(bulk, len, b0);
		}
		r = send(progs[i], bulk, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	}
	case 1: /* reads */
		r = recv(progs[i], bulk, arg & 0x8000 ? sizeof(bulk) : arg % 512 + 1, MSG_DONTWAIT);
		break;
	case 2:
		r = shutdown(progs[i], (b0 >> 2) % 3 == 0 ? SHUT_WR : (b0 >> 2) % 3 == 1 ? SHUT_RD : SHUT_RDWR);
		break;
	default:
		prog_del(i);
		r = 0;
		break;
	}
	(void)r;
}

static void cmd_time(struct in *in)
{
	static const int64_t steps[8] = { 1, 2, 5, 100, RESET_HOLD_MS + 1, CLOSE_TIMEOUT_MS + 1,
					  CONNECT_TIMEOUT_MS + 1, 0 };
	uint8_t b0 = u8(in);

	fz_ms += steps[b0 & 7] ? steps[b0 & 7] : u16(in);
}

/* What vsock_restore does to a running device once the state is in: no
 * saved state parser here (the transport's has its own tests), just the
 * transport reset the guest must then hear of. */
static void cmd_restore(void)
{
	pthread_mutex_lock(&v->vd.notify_lock);
	conn_free_all(v);
	pthread_mutex_lock(&v->vd.lock);
	int live = !!(v->vd.status & VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&v->vd.lock);
	if (live) {
		v->reset = RS_PENDING;
		v->reset_t0 = now_ms();
		v->evq_kicked = 0;
	}
	pthread_mutex_unlock(&v->vd.notify_lock);
	wake(v);
}

static void cmd_mmio(struct in *in)
{
	uint8_t b0 = u8(in);
	uint64_t off = (uint64_t)u8(in) * 4 % 0x120;
	uint8_t buf[8] = { 0 };
	uint32_t sz = 1u << (b0 & 3);

	if (b0 & 4) {
		off = VIRTIO_MMIO_CONFIG + u8(in) % 12;
		mmio->read(mmio_opaque, off, buf, sz);
	} else if (b0 & 8) {
		mmio->read(mmio_opaque, off, buf, 4);
	} else if (off != VIRTIO_MMIO_QUEUE_NOTIFY || (b0 & 16)) {
		uint32_t val = u32(in);
		if (off == VIRTIO_MMIO_QUEUE_NOTIFY)
			val %= 4;
		memcpy(buf, &val, 4);
		mmio->write(mmio_opaque, off, buf, sz);
	}
}

static void run_cmd(struct in *in)
{
	uint8_t op = u8(in);

	switch (op % 16) {
	case 0: case 1: case 2: cmd_tx(in); break;
	case 3: case 4: cmd_rx(in); break;
	case 5: cmd_evq(in); break;
	case 6: {
		unsigned rounds = 1 + (op >> 4) % 4;
		for (unsigned i = 0; i < rounds; i++)
			run_once();
		return;
	}
	case 7: cmd_host_connect(in); break;
	case 8: case 9: cmd_prog(in); break;
	case 10: cmd_time(in); break;
	case 11: cmd_raw_desc(in); break;
	case 12:
		if (op & 16)
			smolvm_virtio_dev_reset(v); /* machine reset */
		if (!(op & 32))
			bringup();
		else
			wr(VIRTIO_MMIO_STATUS, 0);
		break;
	case 13:
		if (op & 16)
			cmd_tx_burst(in);
		else
			cmd_restore();
		break;
	case 14:
		if (v->vd.paused)
			smolvm_virtio_dev_resume(v);
		else
			smolvm_virtio_dev_pause(v);
		break;
	default: cmd_mmio(in); break;
	}
	/* The device's thread runs after everything that wakes it. */
	run_once();
}

static void device_new(uint64_t cid)
{
	v = calloc(1, sizeof(*v));
	if (!v)
		abort();
	v->api = &api;
	v->listen_fd = v->wake_fd = -1;
	v->next_port = FIRST_HOST_PORT;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		v->conns[i].fd = -1;
	strcpy(v->path, sock_path);
	v->guest_cid = cid;
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->wake_fd < 0 || smolvm_virtio_init(&v->vd, NULL, &api, &vsock_virtio, v))
		abort();
	v->vd_live = 1;
	v->listen_fd = listen_fd; /* shared by the inputs; not the device's to close */
}

static void device_free(void)
{
	v->listen_fd = -1;
	vsock_free(v);
	v = NULL;
	while (nprogs)
		prog_del(nprogs - 1);
	drain_listener(listen_fd);
	drain_listener(port_fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	unsigned cmds = 0;

	if (listen_fd < 0) {
		host_init();
		fd_mark = open("/dev/null", O_RDONLY | O_CLOEXEC);
		close(fd_mark);
	}
	uint8_t opt = u8(&in);
	fz_ms = 1000000;
	memset(guest, 0, sizeof(guest));
	memset(pairs, 0, sizeof(pairs));
	npairs_next = 0;
	have_last_rx = 0;
	data_off = DATA_GPA;
	event_idx = opt & 1;
	device_new(opt & 2 ? UINT32_MAX - 1 : DEFAULT_CID);
	bringup();
	while (in.n && cmds++ < 400)
		run_cmd(&in);
	device_free();

	/* Every descriptor is closed again. (libFuzzer's symbolizer may have
	 * opened or closed pipes meanwhile: only sockets and eventfds count.) */
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd != fd_mark) {
		for (int i = fd < fd_mark ? fd : fd_mark; i < (fd > fd_mark ? fd : fd_mark); i++) {
			char l[64], t[256] = "";
			snprintf(l, sizeof(l), "/proc/self/fd/%d", i);
			if (i != fd && readlink(l, t, sizeof(t) - 1) > 0 && strncmp(t, "pipe:", 5)) {
				fprintf(stderr, "fuzz_vsock: fd %d (%s) leaked or closed twice\n", i, t);
				abort();
			}
		}
		fd_mark = fd;
	}
	close(fd);
	return 0;
}
