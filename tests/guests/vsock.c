/*
 * vsock: a driver for the virtio-vsock device (DeviceID 19, virtio 1.2
 * section 5.10) and a stream echo server, for plugins/virtio-vsock.
 *
 *  1. Finds the device, negotiates VERSION_1 (+ EVENT_IDX), prints the CID
 *     from the configuration space: "vsock: cid N".
 *  2. Hostile packets: wrong source CID and a buffer shorter than a header
 *     (dropped: no answer), data / a credit request for connections that do
 *     not exist, an unknown op, a SEQPACKET request and a length beyond the
 *     buffer (each answered with RST, in order): "PASS: vsock hostile packets".
 *  3. With `hostport=P`: connects to the host (CID 2) port P, sends a line
 *     and expects "pong: " + the line back (the program at "<socket>_P"),
 *     then a clean close: "PASS: vsock guest connect"; and a connection to
 *     port P+1, where nothing listens, must be refused (RST):
 *     "PASS: vsock guest connect refused".
 *     With `fuzz=N`: N packets with random header fields and chain lengths
 *     (ports 6000+), answers drained; the device must not need a reset:
 *     "PASS: vsock random packets".
 *  4. "vsock: listening on port 1234", then serves forever (in user mode,
 *     at native speed): accepts connections to port 1234 and echoes every
 *     byte back, honouring the host's credit and announcing its own
 *     (buf_alloc 64 KiB per connection); a host that sends more than that
 *     is a FAIL. Prints "vsock: accepted connection from host port H",
 *     progress per MiB, "vsock: connection from host port H closed, N bytes
 *     echoed", and on a TRANSPORT_RESET event (after a restore) "vsock:
 *     transport reset: dropped N connection(s)". Requests for other ports
 *     are refused (RST); port 1235 answers the first data with "bye\n"
 *     and closes at once (SHUTDOWN(RCV|SEND)). When the host shuts down its sending side, the
 *     guest finishes echoing and answers SHUTDOWN(RCV|SEND), as Linux does
 *     on close().
 *
 * Completions are polled; the device's interrupts are not used.
 */
#include "virtio.h"

#define USER_BSS __attribute__((section(".user.bss")))

#define VIRTIO_ID_VSOCK 19
#define HOST_CID 2
#define SERVE_PORT 1234
#define CLOSER_PORT 1235 /* answers "bye\n" to the first data and closes */
#define HDR 44
#define RXBUFS 32
#define RXPAY (16 * 1024)
#define TXSLOTS 32
#define TXPAY (16 * 1024)
#define EVBUFS 4
#define MAXC 4
#define GBUF (64 * 1024) /* our buf_alloc per connection */
#define EVQ_LEN 16
#define RSTQ 8
#define REPORT_STEP (1024 * 1024)
#define TIMEOUT_MS 3000

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };
#define TYPE_STREAM 1
#define SHUT_RCV 1
#define SHUT_SEND 2

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

_Static_assert(sizeof(struct hdr) == HDR, "vsock header is 44 bytes");

/* Pending packets of a connection. */
#define GP_RESPONSE 1u
#define GP_CREDIT 2u

struct gconn {
	uint32_t used;
	uint32_t lport, pport;                       /* ours, the host's */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt; /* the host's credit */
	uint32_t rx_cnt, fwd_cnt;                    /* ours */
	uint32_t pending, peer_shut, shut_sent, closer;
	uint32_t head, len;                          /* ring */
	uint64_t echoed, next_report;
	uint8_t ring[GBUF];
};

enum ev_kind { EV_ACCEPT = 1, EV_CLOSED, EV_PROGRESS, EV_REFUSED, EV_RESET, EV_FAIL };
enum fail_code { F_SHORT = 1, F_LEN, F_ADDR, F_CREDIT, F_OP, F_DUP, F_TXBAD, F_EVBAD };

struct event {
	uint32_t kind, port, code;
	uint64_t n;
};

struct srv {
	struct virtq *rx, *tx, *ev;
	uint64_t cid;
	uint8_t rxbuf_of[VQ_MAX];
	uint8_t txslot_of[VQ_MAX];
	uint8_t evbuf_of[VQ_MAX];
	uint8_t txfree[TXSLOTS];
	uint32_t ntxfree;
	uint32_t tx_added, rx_added, ev_added;
	struct hdr rstq[RSTQ];
	uint32_t nrst;
	struct event evq[EVQ_LEN];
	uint32_t nev;
	struct gconn conns[MAXC];
};

static struct srv srv USER_BSS;
static uint8_t rxbufs[RXBUFS][HDR + RXPAY] USER_BSS __attribute__((aligned(64)));
static uint8_t txbufs[TXSLOTS][HDR + TXPAY] USER_BSS __attribute__((aligned(64)));
static uint8_t evbufs[EVBUFS][8] USER_BSS __attribute__((aligned(8)));

ALWAYS_INLINE void ucopy(void *d, const void *s, uint64_t n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

ALWAYS_INLINE void uzero(void *d, uint64_t n)
{
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(0) : "memory");
}

/* ---- data path: user text, callable at CPL0 too ----------------------------- */

USER_TEXT static void post_event(struct srv *s, uint32_t kind, uint32_t port, uint32_t code, uint64_t n)
{
	if (s->nev == EVQ_LEN)
		return;
	struct event *e = &s->evq[s->nev++];
	e->kind = kind;
	e->port = port;
	e->code = code;
	e->n = n;
}

USER_TEXT static void rx_post(struct srv *s, unsigned i)
{
	struct vbuf b;
	b.addr = (uintptr_t)rxbufs[i];
	b.len = HDR + RXPAY;
	b.write = 1;
	int head = virtq_add(s->rx, &b, 1);
	if (head >= 0) {
		s->rxbuf_of[head] = (uint8_t)i;
		s->rx_added = 1;
	}
}

USER_TEXT static void ev_post(struct srv *s, unsigned i)
{
	struct vbuf b;
	b.addr = (uintptr_t)evbufs[i];
	b.len = 8;
	b.write = 1;
	int head = virtq_add(s->ev, &b, 1);
	if (head >= 0) {
		s->evbuf_of[head] = (uint8_t)i;
		s->ev_added = 1;
	}
}

USER_TEXT static void tx_reclaim(struct srv *s)
{
	uint32_t len;
	int id;

	while ((id = virtq_get(s->tx, &len)) >= 0)
		s->txfree[s->ntxfree++] = s->txslot_of[id];
	if (id == -2)
		post_event(s, EV_FAIL, 0, F_TXBAD, 0);
}

/* Queues one packet of `chain` bytes (header + payload); -1 when no slot. */
USER_TEXT static int tx_raw(struct srv *s, const struct hdr *h, const void *payload, uint32_t plen,
			    uint32_t chain)
{
	if (!s->ntxfree)
		tx_reclaim(s);
	if (!s->ntxfree)
		return -1;
	unsigned slot = s->txfree[--s->ntxfree];
	ucopy(txbufs[slot], h, HDR);
	if (plen)
		ucopy(txbufs[slot] + HDR, payload, plen);
	struct vbuf b;
	b.addr = (uintptr_t)txbufs[slot];
	b.len = chain;
	b.write = 0;
	int head = virtq_add(s->tx, &b, 1);
	if (head < 0) {
		s->txfree[s->ntxfree++] = (uint8_t)slot;
		return -1;
	}
	s->txslot_of[head] = (uint8_t)slot;
	s->tx_added = 1;
	return 0;
}

USER_TEXT static void mkhdr(struct srv *s, struct hdr *h, uint32_t sport, uint32_t dport, uint16_t op)
{
	uzero(h, HDR);
	h->src_cid = s->cid;
	h->dst_cid = HOST_CID;
	h->src_port = sport;
	h->dst_port = dport;
	h->type = TYPE_STREAM;
	h->op = op;
	h->buf_alloc = GBUF;
}

/* A packet of connection `c`. */
USER_TEXT static int conn_send(struct srv *s, struct gconn *c, uint16_t op, uint32_t flags,
			       const void *payload, uint32_t plen)
{
	struct hdr h;
	mkhdr(s, &h, c->lport, c->pport, op);
	h.flags = flags;
	h.len = plen;
	h.fwd_cnt = c->fwd_cnt;
	return tx_raw(s, &h, payload, plen, HDR + plen);
}

USER_TEXT static void queue_rst(struct srv *s, const struct hdr *in)
{
	if (in->op == OP_RST || s->nrst == RSTQ)
		return;
	struct hdr *h = &s->rstq[s->nrst++];
	mkhdr(s, h, in->dst_port, in->src_port, OP_RST);
}

USER_TEXT static struct gconn *find_conn(struct srv *s, uint32_t lport, uint32_t pport)
{
	for (unsigned i = 0; i < MAXC; i++)
		if (s->conns[i].used && s->conns[i].lport == lport && s->conns[i].pport == pport)
			return &s->conns[i];
	return 0;
}

USER_TEXT static struct gconn *new_conn(struct srv *s, uint32_t lport, uint32_t pport)
{
	for (unsigned i = 0; i < MAXC; i++) {
		struct gconn *c = &s->conns[i];
		if (c->used)
			continue;
		uzero(c, __builtin_offsetof(struct gconn, ring));
		c->used = 1;
		c->lport = lport;
		c->pport = pport;
		c->next_report = REPORT_STEP;
		return c;
	}
	return 0;
}

USER_TEXT static uint32_t host_credit(const struct gconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* One packet from the device (a serving connection's, or a stray one). */
USER_TEXT static void handle_rx(struct srv *s, const uint8_t *buf, uint32_t len)
{
	const struct hdr *h = (const struct hdr *)buf;

	if (len < HDR) {
		post_event(s, EV_FAIL, 0, F_SHORT, len);
		return;
	}
	if (h->len > len - HDR) {
		post_event(s, EV_FAIL, h->src_port, F_LEN, h->len);
		return;
	}
	if (h->dst_cid != s->cid || h->src_cid != HOST_CID || h->type != TYPE_STREAM) {
		post_event(s, EV_FAIL, h->src_port, F_ADDR, h->dst_cid);
		return;
	}
	struct gconn *c = find_conn(s, h->dst_port, h->src_port);
	if (c) {
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
	}
	switch (h->op) {
	case OP_REQUEST:
		if (c) {
			post_event(s, EV_FAIL, h->src_port, F_DUP, 0);
			return;
		}
		if ((h->dst_port != SERVE_PORT && h->dst_port != CLOSER_PORT) ||
		    !(c = new_conn(s, h->dst_port, h->src_port))) {
			queue_rst(s, h);
			post_event(s, EV_REFUSED, h->dst_port, 0, 0);
			return;
		}
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
		c->pending |= GP_RESPONSE;
		c->closer = h->dst_port == CLOSER_PORT;
		post_event(s, EV_ACCEPT, c->pport, 0, 0);
		return;
	case OP_RW:
		if (!c) {
			queue_rst(s, h);
			return;
		}
		if (c->closer && c->shut_sent)
			return; /* already closed for reading: in flight before it knew */
		if (h->len > GBUF - (c->rx_cnt - c->fwd_cnt)) {
			post_event(s, EV_FAIL, c->pport, F_CREDIT, h->len);
			return;
		}
		for (uint32_t done = 0; done < h->len;) {
			uint32_t tail = (c->head + c->len) % GBUF;
			uint32_t n = GBUF - tail < h->len - done ? GBUF - tail : h->len - done;
			ucopy(c->ring + tail, buf + HDR + done, n);
			c->len += n;
			done += n;
		}
		c->rx_cnt += h->len;
		return;
	case OP_SHUTDOWN:
		if (c)
			c->peer_shut |= h->flags & (SHUT_RCV | SHUT_SEND);
		else
			queue_rst(s, h);
		return;
	case OP_RST:
		if (c) {
			post_event(s, EV_CLOSED, c->pport, 0, c->echoed);
			c->used = 0;
		}
		return;
	case OP_CREDIT_UPDATE:
		if (!c)
			queue_rst(s, h);
		return;
	case OP_CREDIT_REQUEST:
		if (c)
			c->pending |= GP_CREDIT;
		else
			queue_rst(s, h);
		return;
	default:
		post_event(s, EV_FAIL, h->src_port, F_OP, h->op);
		return;
	}
}

/* Echo, answers and closes: whatever the tx slots and the host's credit allow. */
USER_TEXT static void produce(struct srv *s)
{
	while (s->nrst && tx_raw(s, &s->rstq[s->nrst - 1], 0, 0, HDR) == 0)
		s->nrst--;
	for (unsigned i = 0; i < MAXC; i++) {
		struct gconn *c = &s->conns[i];
		if (!c->used)
			continue;
		if ((c->pending & GP_RESPONSE) && conn_send(s, c, OP_RESPONSE, 0, 0, 0) == 0)
			c->pending &= ~GP_RESPONSE;
		if (c->pending & GP_RESPONSE)
			continue;
		if (c->closer && c->rx_cnt && !c->shut_sent) {
			static const char bye[4] USER_DATA = { 'b', 'y', 'e', '\n' };
			if (conn_send(s, c, OP_RW, 0, bye, 4) == 0 &&
			    conn_send(s, c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND, 0, 0) == 0) {
				c->shut_sent = 1;
				c->len = 0;
			}
			continue;
		}
		while (c->len && !c->shut_sent) {
			uint32_t n = GBUF - c->head < c->len ? GBUF - c->head : c->len;
			uint32_t credit = host_credit(c);
			if (n > credit)
				n = credit;
			if (n > TXPAY)
				n = TXPAY;
			if (!n)
				break;
			/* fwd_cnt in the header counts these bytes: they leave the ring. */
			c->fwd_cnt += n;
			if (conn_send(s, c, OP_RW, 0, c->ring + c->head, n)) {
				c->fwd_cnt -= n;
				break;
			}
			c->head = (c->head + n) % GBUF;
			c->len -= n;
			c->tx_cnt += n;
			c->echoed += n;
			c->pending &= ~GP_CREDIT;
			if (c->echoed >= c->next_report) {
				post_event(s, EV_PROGRESS, c->pport, 0, c->echoed);
				c->next_report += REPORT_STEP;
			}
		}
		if ((c->pending & GP_CREDIT) && conn_send(s, c, OP_CREDIT_UPDATE, 0, 0, 0) == 0)
			c->pending &= ~GP_CREDIT;
		if ((c->peer_shut & SHUT_SEND) && !c->len && !c->shut_sent &&
		    conn_send(s, c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND, 0, 0) == 0)
			c->shut_sent = 1;
	}
}

/* TRANSPORT_RESET: every connection is gone; listening goes on. */
USER_TEXT static void poll_events(struct srv *s)
{
	uint32_t len;
	int id;

	while ((id = virtq_get(s->ev, &len)) >= 0) {
		unsigned i = s->evbuf_of[id];
		uint32_t ev_id = *(volatile uint32_t *)evbufs[i];
		if (len < 4 || ev_id != 0) {
			post_event(s, EV_FAIL, 0, F_EVBAD, ((uint64_t)len << 32) | ev_id);
		} else {
			uint32_t dropped = 0;
			for (unsigned k = 0; k < MAXC; k++) {
				dropped += s->conns[k].used;
				s->conns[k].used = 0;
			}
			s->nrst = 0;
			post_event(s, EV_RESET, 0, 0, dropped);
		}
		ev_post(s, i);
	}
	if (id == -2)
		post_event(s, EV_FAIL, 0, F_EVBAD, 0);
	if (s->ev_added) {
		virtq_kick(s->ev);
		s->ev_added = 0;
	}
}

/* One round of everything; returns with events for the kernel to print. */
USER_TEXT static void pump(struct srv *s)
{
	uint32_t len;
	int id, n = 0;

	tx_reclaim(s);
	poll_events(s);
	while (n < RXBUFS && (id = virtq_get(s->rx, &len)) >= 0) {
		unsigned i = s->rxbuf_of[id];
		handle_rx(s, rxbufs[i], len);
		rx_post(s, i);
		n++;
	}
	if (s->rx_added) {
		virtq_kick(s->rx);
		s->rx_added = 0;
	}
	produce(s);
	if (s->tx_added) {
		virtq_kick(s->tx);
		s->tx_added = 0;
	}
}

/* `fuzz=N`: N packets of random header fields and lengths (mostly with our
 * source CID, so they get past the first check), answers drained until
 * 200 ms of quiet. Ports from 6000 up: no program listens there. */
struct fuzz_args {
	struct srv *s;
	uint64_t count, rng, quiet, answers;
};
static struct fuzz_args fz USER_BSS;

USER_TEXT static uint64_t fuzz_next(struct fuzz_args *a)
{
	a->rng ^= a->rng << 13;
	a->rng ^= a->rng >> 7;
	a->rng ^= a->rng << 17;
	return a->rng;
}

USER_TEXT static void fuzz_drain(struct fuzz_args *a)
{
	uint32_t len;
	int id;

	while ((id = virtq_get(a->s->rx, &len)) >= 0) {
		a->answers++;
		rx_post(a->s, a->s->rxbuf_of[id]);
	}
	if (a->s->rx_added) {
		virtq_kick(a->s->rx);
		a->s->rx_added = 0;
	}
	tx_reclaim(a->s);
}

USER_TEXT static uint64_t fuzz(void *arg)
{
	struct fuzz_args *a = arg;
	struct srv *s = a->s;
	struct hdr h;

	for (uint64_t i = 0; i < a->count; i++) {
		uint64_t r = fuzz_next(a), r2 = fuzz_next(a);
		mkhdr(s, &h, 6000 + (uint32_t)(r & 63), 6000 + (uint32_t)((r >> 6) & 63), (uint16_t)((r >> 12) % 10));
		if (((r >> 16) & 15) == 0)
			h.src_cid = r2;
		if (((r >> 20) & 7) == 0)
			h.dst_cid = r2 >> 8;
		h.type = (uint16_t)(((r >> 23) & 7) ? 1 : (r >> 26) & 3);
		h.len = (uint32_t)(((r >> 28) & 3) ? (r2 >> 32) % 80 : (uint32_t)(r2 >> 16));
		h.flags = (uint32_t)(r2 & 7);
		h.buf_alloc = (uint32_t)(r2 >> 20);
		h.fwd_cnt = (uint32_t)(r >> 32);
		uint32_t chain = (uint32_t)((r >> 40) % (HDR + 64));
		if (!chain)
			chain = 1;
		while (tx_raw(s, &h, 0, 0, chain)) {
			virtq_kick(s->tx);
			s->tx_added = 0;
			fuzz_drain(a);
		}
		if ((i & 15) == 15) {
			virtq_kick(s->tx);
			s->tx_added = 0;
			fuzz_drain(a);
		}
	}
	virtq_kick(s->tx);
	s->tx_added = 0;
	uint64_t last = rdtsc(), seen = a->answers;
	while (rdtsc() - last < a->quiet) {
		fuzz_drain(a);
		if (a->answers != seen) {
			seen = a->answers;
			last = rdtsc();
		}
	}
	return 0;
}

USER_TEXT static uint64_t serve(void *arg)
{
	struct srv *s = arg;

	while (!s->nev) {
		pump(s);
		__asm__ volatile("pause");
	}
	return 0;
}

/* ---- kernel side --------------------------------------------------------------- */

static unsigned npass, nfail;

#define PASS(...) (npass++, kprintf("PASS: " __VA_ARGS__))
#define FAILED(...) (nfail++, kprintf("FAIL: " __VA_ARGS__))

static const char *fail_text(uint32_t code)
{
	switch (code) {
	case F_SHORT: return "a packet shorter than its header";
	case F_LEN: return "header length beyond the buffer";
	case F_ADDR: return "wrong CIDs or type";
	case F_CREDIT: return "the host sent more than our credit allows";
	case F_OP: return "unknown op";
	case F_DUP: return "REQUEST for an open connection";
	case F_TXBAD: return "bad used id on the transmit queue";
	case F_EVBAD: return "bad event";
	}
	return "?";
}

/* Prints (and forgets) what the data path reported. */
static void print_events(struct srv *s)
{
	for (uint32_t i = 0; i < s->nev; i++) {
		struct event *e = &s->evq[i];
		switch (e->kind) {
		case EV_ACCEPT:
			kprintf("vsock: accepted connection from host port %u\n", e->port);
			break;
		case EV_CLOSED:
			kprintf("vsock: connection from host port %u closed, %lu bytes echoed\n", e->port,
				(unsigned long)e->n);
			break;
		case EV_PROGRESS:
			kprintf("vsock: host port %u: %lu KiB echoed\n", e->port, (unsigned long)(e->n >> 10));
			break;
		case EV_REFUSED:
			kprintf("vsock: refused a connection to port %u (RST)\n", e->port);
			break;
		case EV_RESET:
			kprintf("vsock: transport reset: dropped %lu connection(s)\n", (unsigned long)e->n);
			break;
		case EV_FAIL:
			FAILED("vsock: %s (port %u, value 0x%lx)\n", fail_text(e->code), e->port,
			       (unsigned long)e->n);
			break;
		}
	}
	s->nev = 0;
}

/* Next packet from the device within `ms`, copied to *h and payload
 * (at most `max` bytes); the buffer goes back at once. -1: none. */
static int recv_pkt(struct srv *s, struct hdr *h, uint8_t *payload, uint32_t max, unsigned ms)
{
	uint32_t len;
	int id = virtq_wait(s->rx, &len, tsc_deadline_ms(ms));

	if (id < 0)
		return -1;
	unsigned i = s->rxbuf_of[id];
	if (len < HDR) {
		FAILED("vsock: a %u-byte packet\n", len);
		len = HDR;
		uzero(rxbufs[i], HDR);
	}
	ucopy(h, rxbufs[i], HDR);
	uint32_t n = len - HDR < max ? len - HDR : max;
	if (n > h->len)
		n = h->len;
	if (payload && n)
		ucopy(payload, rxbufs[i] + HDR, n);
	rx_post(s, i);
	virtq_kick(s->rx);
	s->rx_added = 0;
	return (int)n;
}

static void send_now(struct srv *s, const struct hdr *h, const void *p, uint32_t plen, uint32_t chain)
{
	if (tx_raw(s, h, p, plen, chain))
		FAILED("vsock: no transmit slot\n");
	virtq_kick(s->tx);
	s->tx_added = 0;
}

/* One stray packet; expects an RST from dport to sport, or (want_rst 0)
 * nothing within 300 ms. */
static bool hostile_one(struct srv *s, const char *what, struct hdr *h, uint32_t chain, bool want_rst)
{
	struct hdr r;

	send_now(s, h, 0, 0, chain);
	if (!want_rst)
		return true; /* checked by the next one: its answer must come first */
	if (recv_pkt(s, &r, 0, 0, TIMEOUT_MS) < 0) {
		FAILED("vsock hostile packets: %s: no answer\n", what);
		return false;
	}
	if (r.op != OP_RST || r.src_port != h->dst_port || r.dst_port != h->src_port) {
		FAILED("vsock hostile packets: %s: answer op %u ports %u->%u, expected RST %u->%u\n",
		       what, r.op, r.src_port, r.dst_port, h->dst_port, h->src_port);
		return false;
	}
	return true;
}

static void test_hostile(struct srv *s, struct vdev *d)
{
	struct hdr h;
	bool ok = true;

	/* Dropped without a word: the next answer must be for the next one. */
	mkhdr(s, &h, 7001, 9001, OP_RW);
	h.src_cid = s->cid + 1;
	h.len = 4;
	ok = ok && hostile_one(s, "wrong source CID", &h, HDR + 4, false);
	mkhdr(s, &h, 7002, 9002, OP_RW);
	h.len = 4;
	ok = ok && hostile_one(s, "data for no connection", &h, HDR + 4, true);
	mkhdr(s, &h, 7003, 9003, 42);
	ok = ok && hostile_one(s, "unknown op", &h, HDR, true);
	mkhdr(s, &h, 7004, 9004, OP_REQUEST);
	h.type = 2;
	ok = ok && hostile_one(s, "SEQPACKET request", &h, HDR, true);
	mkhdr(s, &h, 7005, 9005, OP_RW);
	h.len = 1000;
	ok = ok && hostile_one(s, "length beyond the buffer", &h, HDR, true);
	mkhdr(s, &h, 7006, 9006, OP_RW);
	ok = ok && hostile_one(s, "shorter than a header", &h, 20, false);
	mkhdr(s, &h, 7007, 9007, OP_RST);
	ok = ok && hostile_one(s, "RST for no connection", &h, HDR, false);
	mkhdr(s, &h, 7008, 9008, OP_CREDIT_REQUEST);
	ok = ok && hostile_one(s, "credit request for no connection", &h, HDR, true);
	tx_reclaim(s);
	if (virtio_status(d) & VSTATUS_NEEDS_RESET) {
		FAILED("vsock hostile packets: the device wants a reset\n");
		return;
	}
	if (ok)
		PASS("vsock hostile packets (dropped or RST, device fine)\n");
}

/* Waits for a packet on (lport, pport); skips others. */
static int recv_on(struct srv *s, uint32_t lport, uint32_t pport, struct hdr *h, uint8_t *buf,
		   uint32_t max)
{
	for (;;) {
		int n = recv_pkt(s, h, buf, max, TIMEOUT_MS);
		if (n < 0)
			return -1;
		if (h->dst_port == lport && h->src_port == pport)
			return n;
		kprintf("vsock: ignoring op %u for %u->%u\n", h->op, h->src_port, h->dst_port);
	}
}

static void test_connect(struct srv *s, unsigned long port)
{
	static uint8_t buf[256];
	static char line[64];
	static const char ping[] = "ping from the guest ";
	struct hdr h;
	const uint32_t me = 40001;
	uint32_t got = 0, plen, fwd = 0;
	int n;

	mkhdr(s, &h, me, (uint32_t)port, OP_REQUEST);
	send_now(s, &h, 0, 0, HDR);
	if (recv_on(s, me, (uint32_t)port, &h, 0, 0) < 0 || h.op != OP_RESPONSE) {
		FAILED("vsock guest connect: port %lu: %s\n", port,
		       h.op == OP_RST ? "refused (RST)" : "no RESPONSE");
		return;
	}
	memcpy(line, ping, sizeof(ping) - 1);
	plen = sizeof(ping) - 1;
	uint64_t t = rdtsc();
	for (int i = 60; i >= 0; i -= 4)
		line[plen++] = "0123456789abcdef"[(t >> i) & 15];
	line[plen++] = '\n';
	mkhdr(s, &h, me, (uint32_t)port, OP_RW);
	h.len = plen;
	send_now(s, &h, line, plen, HDR + plen);
	/* "pong: " + the line, then the program's close: SHUTDOWN. */
	for (;;) {
		n = recv_on(s, me, (uint32_t)port, &h, buf + got, sizeof(buf) - 1 - got);
		if (n < 0) {
			FAILED("vsock guest connect: no answer (%u bytes so far)\n", got);
			return;
		}
		if (h.op == OP_RW) {
			got += (uint32_t)n;
			fwd += h.len;
		} else if (h.op == OP_SHUTDOWN && (h.flags & SHUT_SEND)) {
			break;
		} else if (h.op != OP_CREDIT_UPDATE && h.op != OP_SHUTDOWN) {
			FAILED("vsock guest connect: op %u in the middle\n", h.op);
			return;
		}
	}
	buf[got] = 0;
	if (got != plen + 6 || memcmp(buf, "pong: ", 6) || memcmp(buf + 6, line, plen)) {
		line[plen - 1] = 0;
		FAILED("vsock guest connect: got %u bytes \"%s\", wanted \"pong: %s\"\n", got,
		       (char *)buf, line);
		return;
	}
	/* Our close: SHUTDOWN(RCV|SEND), then the device's RST. */
	mkhdr(s, &h, me, (uint32_t)port, OP_SHUTDOWN);
	h.flags = SHUT_RCV | SHUT_SEND;
	h.fwd_cnt = fwd;
	send_now(s, &h, 0, 0, HDR);
	while ((n = recv_on(s, me, (uint32_t)port, &h, 0, 0)) >= 0 && h.op != OP_RST)
		;
	if (n < 0) {
		FAILED("vsock guest connect: no RST after our SHUTDOWN\n");
		return;
	}
	PASS("vsock guest connect (host port %lu, %u bytes back)\n", port, got);

	/* Nobody at <socket>_<port+1>. */
	mkhdr(s, &h, me + 1, (uint32_t)port + 1, OP_REQUEST);
	send_now(s, &h, 0, 0, HDR);
	if (recv_on(s, me + 1, (uint32_t)port + 1, &h, 0, 0) < 0 || h.op != OP_RST) {
		FAILED("vsock guest connect refused: port %lu: %s\n", port + 1,
		       h.op == OP_RESPONSE ? "accepted" : "no RST");
		return;
	}
	PASS("vsock guest connect refused (port %lu)\n", port + 1);
}

static void setup(struct srv *s, struct vdev *d)
{
	const char *err;

	if ((err = virtio_start(d, VIRTIO_RING_F_EVENT_IDX)) ||
	    !(s->rx = virtio_queue(d, 0, 0, &err)) || !(s->tx = virtio_queue(d, 1, 0, &err)) ||
	    !(s->ev = virtio_queue(d, 2, 0, &err)) || (err = virtio_driver_ok(d)))
		fail("vsock: setup: %s\n", err);
	s->cid = virtio_cfg64(d, 0);
	kprintf("vsock: cid %lu, queue sizes %u/%u/%u%s\n", (unsigned long)s->cid, s->rx->num,
		s->tx->num, s->ev->num, d->features & VIRTIO_RING_F_EVENT_IDX ? ", event idx" : "");
	s->rx->no_irq = s->tx->no_irq = s->ev->no_irq = 1;
	virtio_user_map(d);
	for (unsigned i = 0; i < TXSLOTS; i++)
		s->txfree[s->ntxfree++] = (uint8_t)i;
	for (unsigned i = 0; i < RXBUFS && i < s->rx->num; i++)
		rx_post(s, i);
	for (unsigned i = 0; i < EVBUFS && i < s->ev->num; i++)
		ev_post(s, i);
	virtq_kick(s->rx);
	virtq_kick(s->ev);
	s->rx_added = s->ev_added = 0;
}

void guest_main(const char *cmdline)
{
	static struct vdev devs[VIRTIO_MAX_DEVS];
	struct vdev *d = 0;
	unsigned long port;

	kprintf("vsock: start\n");
	unsigned n = virtio_find(cmdline, devs, VIRTIO_MAX_DEVS);
	for (unsigned i = 0; i < n && !d; i++)
		if (devs[i].id == VIRTIO_ID_VSOCK)
			d = &devs[i];
	if (!d)
		fail("vsock: no virtio-vsock device (id %u) on the command line\n", VIRTIO_ID_VSOCK);
	tsc_calibrate();
	pic_mask_all();
	lapic_enable();
	setup(&srv, d);
	test_hostile(&srv, d);
	if (cmdline_uint(cmdline, "hostport", &port) && port && port < 0xfffffffe)
		test_connect(&srv, port);
	unsigned long count;
	if (cmdline_uint(cmdline, "fuzz", &count) && count) {
		fz = (struct fuzz_args){ .s = &srv, .count = count, .rng = 0x9e3779b97f4a7c15ull ^ rdtsc(),
					 .quiet = tsc_hz / 5 };
		run_user(fuzz, &fz, user_stack_top(0));
		if (virtio_status(d) & VSTATUS_NEEDS_RESET)
			FAILED("vsock random packets: the device wants a reset\n");
		else
			PASS("vsock random packets (%lu sent, %lu answers, device fine)\n", count,
			     (unsigned long)fz.answers);
	}
	kprintf("vsock: %u passed, %u failed\n", npass, nfail);
	kprintf("vsock: listening on port %u\n", SERVE_PORT);
	for (;;) {
		run_user(serve, &srv, user_stack_top(0));
		print_events(&srv);
		if (virtio_status(d) & VSTATUS_NEEDS_RESET)
			fail("vsock: the device wants a reset\n");
	}
}
