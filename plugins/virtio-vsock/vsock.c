/* virtio-vsock: socket connections between the guest (AF_VSOCK, its CID)
 * and programs on the host (virtio 1.2, section 5.10), with the host side on
 * a Unix socket as Firecracker does it; no vhost module.
 *
 *   { type = "virtio-vsock", socket = "vm.sock", cid = 3 }
 *
 * Options:
 *   socket  path of the Unix socket the device listens on (required; a
 *           relative path starts at the machine script's directory). A
 *           stale socket file there is replaced; anything else that is not
 *           a socket, or a socket another process listens on, is refused.
 *           Removed again when the machine ends.
 *   cid     the guest's CID, 3 to 4294967294 (default 3).
 *
 * Host -> guest. A program connects to `socket` and writes one line,
 *
 *   CONNECT <port>\n                         (at most 64 bytes, port decimal)
 *
 * The device asks the guest for a connection to <port> from a host port of
 * its own (counting from 1024). When the guest accepts, the program reads
 *
 *   OK <hostport>\n
 *
 * and from then on the Unix connection carries the stream both ways. If
 * nothing listens on <port> in the guest (it answers RST), or the line is
 * malformed, the device closes the connection without a word: the program
 * reads end of file.
 *
 * Guest -> host. A guest connecting to CID 2 (the host), port P, reaches a
 * program listening on the Unix socket "<socket>_P"; if there is none, the
 * guest's connect() fails (RST).
 *
 * Closing. A program's shutdown(SHUT_WR) reaches the guest as SHUTDOWN(SEND)
 * once everything before it was delivered; a guest's SHUTDOWN(SEND) becomes
 * shutdown(SHUT_WR) on the Unix connection after everything the guest sent
 * was written to it. When both directions are finished (or the guest asks
 * for a full close) the device sends RST and closes the Unix connection; a
 * program that closes its socket completely makes the device send
 * SHUTDOWN(RCV|SEND), and the guest's RST (or, 10 s later, ours) ends it.
 *
 * Flow control (5.10.6.3). Every packet we send carries buf_alloc = 256 KiB
 * and fwd_cnt, the bytes of the guest's stream already written to the Unix
 * connection: at most 256 KiB per connection ever waits in the device, and
 * a guest that sends more than that is reset. We read from a Unix
 * connection only as much as the guest has credit for, and not at all while
 * it has none. Credit updates go out when 64 KiB have been forwarded since
 * the last one, or when the guest's view of our space falls under 64 KiB.
 *
 * Bounds: 64 connections (a 65th program is closed at once), 64 KiB staged
 * per connection towards the guest, 256 KiB from it, unknown-connection RST
 * answers queue up to 64 deep. Any malformed packet from the guest is
 * dropped (short, wrong source CID) or answered with RST (length beyond the
 * chain, not STREAM, unknown op, unknown connection, protocol violation);
 * a guest error never stops the device.
 *
 * Snapshots. Connections are not saved. A restored device starts with none,
 * listens again on the (re-resolved) socket path, and sends a
 * TRANSPORT_RESET event as soon as the guest has an event buffer, so the
 * guest drops the connections it had (its listening sockets stay). Until
 * the guest has taken that event (it posts the event buffer again) nothing
 * else goes to the guest, so a new connection cannot be mistaken for an old
 * one; the interrupt is repeated while the guest has not read it (a pulse
 * sent before the vCPUs' interrupt controllers are restored is lost).
 *
 * Threads and locks. One thread per instance owns the sockets: it polls the
 * listening socket, the connections and a wake-up eventfd, and does all
 * queue work. Guest kicks (queue_notify), driver-ok, pause and resume only
 * wake it. Everything in struct vsock below `notify_lock` is guarded by the
 * transport's vd.notify_lock, which the thread holds while it works; that
 * also serialises it with queue_notify, device resets, pause and restore.
 * Lock order: vd.notify_lock, then vd.lock (taken inside the transport).
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
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
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

enum { RXQ = 0, TXQ = 1, EVQ = 2, NUM_QUEUES = 3 };

#define QUEUE_SIZE 256
#define HDR_LEN 44 /* sizeof(struct virtio_vsock_hdr) */
#define HOST_CID 2
#define DEFAULT_CID 3
#define MAX_CONNS 64
#define BUF_ALLOC (256 * 1024)     /* advertised: guest -> host bytes we hold */
#define STAGE_SIZE (64 * 1024)     /* host -> guest bytes read ahead */
#define MAX_PKT (64 * 1024)        /* payload of one packet to the guest */
#define CREDIT_STEP (64 * 1024)    /* forwarded bytes worth a credit update */
#define CREDIT_LOW (64 * 1024)     /* ...or the guest's view of our space under this */
#define LINE_MAX_LEN 64            /* "CONNECT <port>\n" */
#define FIRST_HOST_PORT 1024
#define CONNECT_TIMEOUT_MS 30000   /* CONNECT line, then the guest's answer */
#define CLOSE_TIMEOUT_MS 10000     /* the guest's RST after our full SHUTDOWN */
#define RESET_HOLD_MS 2000         /* at most this long waiting for the guest to take the reset */
#define RESET_RETRY_MS 2          /* then doubling: a lost interrupt repeated */
#define RESET_POLL_MS 1           /* looking for the guest's new event buffer */
#define RSTQ_LEN 64
#define TX_BATCH 256
#define GUEST_ERRORS_LOGGED 10

#define SHUT_RCV_F VIRTIO_VSOCK_SHUTDOWN_RCV
#define SHUT_SEND_F VIRTIO_VSOCK_SHUTDOWN_SEND
#define SHUT_BOTH (SHUT_RCV_F | SHUT_SEND_F)

enum conn_state {
	C_FREE = 0,
	C_LINE,    /* host program connected, reading its CONNECT line */
	C_REQUEST, /* REQUEST for the guest, waiting for its answer */
	C_OPEN,    /* established (possibly half-closed) */
	C_RST,     /* the Unix side is gone; an RST is owed to the guest */
};

/* What a connection still has to tell the guest. */
#define P_REQUEST 1u
#define P_RESPONSE 2u
#define P_SHUTDOWN 4u
#define P_CREDIT_UPDATE 8u
#define P_CREDIT_REQUEST 16u

struct conn {
	enum conn_state state;
	int fd;                 /* the Unix connection, or -1 */
	uint32_t gen;           /* bumped whenever the slot is freed */
	uint32_t local_port;    /* our end (host side) */
	uint32_t peer_port;     /* the guest's end */
	uint32_t pending;       /* P_* */
	uint8_t shut_to_send;   /* SHUTDOWN flags not yet sent */
	uint8_t host_shut;      /* SHUTDOWN flags sent to the guest */
	uint8_t guest_shut;     /* SHUTDOWN flags the guest sent */
	uint8_t host_eof;       /* the program shut its writing side */
	uint8_t host_hup;       /* the program closed its socket */
	uint8_t wr_shut;        /* we shut the program's reading side */
	uint8_t readable;       /* poll said readable; cleared on EAGAIN */
	uint8_t req_sent;       /* the guest has seen our REQUEST */
	uint8_t credit_asked;   /* CREDIT_REQUEST sent since credit ran out */
	/* Credit (5.10.6.3), modulo 2^32. */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt;        /* payload bytes sent to the guest */
	uint32_t rx_cnt;        /* payload bytes received from the guest */
	uint32_t fwd_cnt;       /* ...of which written to the program */
	uint32_t last_fwd_sent; /* fwd_cnt the guest last heard of */
	/* Host -> guest: read ahead, within the guest's credit. */
	uint8_t *stage;
	uint32_t stage_off, stage_len;
	/* Guest -> host: what the program has not taken yet (a ring). */
	uint8_t *ring;
	uint32_t ring_head, ring_len;
	/* The CONNECT line, then the "OK <port>\n" answer. */
	char line[LINE_MAX_LEN];
	uint32_t line_len, line_off;
	int64_t deadline_ms;    /* 0: none */
};

enum reset_state { RS_NONE, RS_PENDING, RS_SENT };

/* Guest-visible state of our own; the transport saves itself. */
struct vsock_state {
	uint64_t guest_cid;
	uint32_t next_port;
};

/* next_port (v2): host ports go on counting after a restore. A guest saved
 * just after a connection closed still holds that socket, closing, and a
 * new connection from the same host port would collide with it (the guest
 * then never answers the REQUEST). */
static const struct smolvm_state_field vsock_fields[] = {
	SMOLVM_FIELD(struct vsock_state, guest_cid, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct vsock_state, next_port, SMOLVM_STATE_U32, 2),
};

struct vsock {
	struct smolvm_virtio_dev vd;
	int vd_live;
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	uint64_t guest_cid;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	dev_t sock_dev;
	ino_t sock_ino;
	int wake_fd;
	pthread_t thread;
	int thread_live;

	/* notify_lock: everything from here on. */
	int paused, stop;
	struct conn conns[MAX_CONNS];
	unsigned nconns;
	uint32_t next_port;
	unsigned rr; /* round-robin start for the receive queue */
	struct virtio_vsock_hdr rstq[RSTQ_LEN]; /* RST answers, ready to send */
	unsigned rst_head, rst_count;
	enum reset_state reset;
	int evq_kicked;
	uint16_t reset_avail; /* event queue avail index when we sent it */
	int64_t reset_t0, reset_retry_at, reset_delay;
	int rx_pushed, tx_pushed;
	unsigned long guest_errors, full_refused;

	/* The thread's own. */
	struct pollfd pfd[2 + MAX_CONNS];
	int pslot[2 + MAX_CONNS];
	uint32_t pgen[2 + MAX_CONNS];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(struct vsock *v)
{
	uint64_t one = 1;
	ssize_t r = write(v->wake_fd, &one, sizeof(one));
	(void)r; /* a full counter already means "wake up" */
}

static void guest_error(struct vsock *v, const char *what, const struct virtio_vsock_hdr *h)
{
	if (v->guest_errors++ >= GUEST_ERRORS_LOGGED)
		return;
	if (h)
		v->api->log(v->ctx, SMOLVM_LOG_WARN,
			    "guest packet dropped or reset: %s (op %u type %u, %llu:%u -> %llu:%u, len %u)%s",
			    what, le16toh(h->op), le16toh(h->type),
			    (unsigned long long)le64toh(h->src_cid), le32toh(h->src_port),
			    (unsigned long long)le64toh(h->dst_cid), le32toh(h->dst_port),
			    le32toh(h->len),
			    v->guest_errors == GUEST_ERRORS_LOGGED ? "; not saying more" : "");
	else
		v->api->log(v->ctx, SMOLVM_LOG_WARN, "guest packet dropped: %s%s", what,
			    v->guest_errors == GUEST_ERRORS_LOGGED ? "; not saying more" : "");
}

/* ---- connections ----------------------------------------------------------- */

static struct conn *conn_alloc(struct vsock *v)
{
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &v->conns[i];
		if (c->state != C_FREE)
			continue;
		uint32_t gen = c->gen;
		memset(c, 0, sizeof(*c));
		c->gen = gen;
		c->fd = -1;
		v->nconns++;
		return c;
	}
	return NULL;
}

/* Closes the program's end. Unread bytes would turn its end of file into
 * ECONNRESET, so what has arrived (a bounded amount) is read first. */
static void conn_close_fd(struct conn *c)
{
	char sink[4096];

	if (c->fd < 0)
		return;
	for (int i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	close(c->fd);
	c->fd = -1;
}

static void conn_free(struct vsock *v, struct conn *c)
{
	if (c->state == C_FREE)
		return;
	conn_close_fd(c);
	free(c->stage);
	free(c->ring);
	uint32_t gen = c->gen + 1;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->fd = -1;
	c->state = C_FREE;
	v->nconns--;
}

/* Ends a connection: the program's end is closed now; the guest hears an
 * RST if it knows the connection. */
static void conn_reset(struct vsock *v, struct conn *c)
{
	if (c->state == C_OPEN || (c->state == C_REQUEST && c->req_sent)) {
		conn_close_fd(c);
		c->state = C_RST;
		c->pending = 0;
		c->deadline_ms = 0;
		c->stage_len = 0;
		c->ring_len = 0;
	} else if (c->state != C_RST) {
		conn_free(v, c);
	}
}

static void conn_free_all(struct vsock *v)
{
	for (unsigned i = 0; i < MAX_CONNS; i++)
		conn_free(v, &v->conns[i]);
	v->rst_count = 0;
}

/* A connection the guest knows, by (our port, its port). */
static struct conn *conn_find(struct vsock *v, uint32_t local, uint32_t peer)
{
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &v->conns[i];
		if (c->local_port == local && c->peer_port == peer &&
		    (c->state == C_OPEN || c->state == C_RST ||
		     (c->state == C_REQUEST && c->req_sent)))
			return c;
	}
	return NULL;
}

static int port_in_use(struct vsock *v, uint32_t port)
{
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (v->conns[i].state >= C_REQUEST && v->conns[i].local_port == port)
			return 1;
	return 0;
}

/* A host-side port for a program's connection: counting up from 1024,
 * skipping ports in use (at most MAX_CONNS are). */
static uint32_t port_alloc(struct vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		if (v->next_port >= UINT32_MAX || v->next_port < FIRST_HOST_PORT)
			v->next_port = FIRST_HOST_PORT;
		if (!port_in_use(v, p))
			return p;
	}
}

/* What the guest may still receive on `c`. */
static uint32_t peer_credit(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	/* A guest claiming to have consumed more than we sent gets nothing. */
	if (in_flight > c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

static int wants_read(const struct conn *c)
{
	return c->state == C_OPEN && !c->host_eof && !(c->guest_shut & SHUT_RCV_F) &&
	       !c->stage_len && peer_credit(c) > 0;
}

static int wants_write(const struct conn *c)
{
	return c->state == C_OPEN && (c->line_off < c->line_len || c->ring_len);
}

static void maybe_credit_update(struct conn *c)
{
	uint32_t told = c->fwd_cnt - c->last_fwd_sent;
	uint32_t believed_used = c->rx_cnt - c->last_fwd_sent;

	if (!told)
		return;
	if (told >= CREDIT_STEP || believed_used > BUF_ALLOC - CREDIT_LOW)
		c->pending |= P_CREDIT_UPDATE;
}

/* Both directions finished: RST (5.10.6.6), and the program's end closes. */
static void check_done(struct vsock *v, struct conn *c)
{
	int guest_done = (c->guest_shut & SHUT_SEND_F) && !c->ring_len && c->line_off == c->line_len;
	int host_done = (c->host_shut & SHUT_SEND_F) || (c->guest_shut & SHUT_RCV_F);

	if (c->state == C_OPEN && guest_done && host_done)
		conn_reset(v, c);
}

static void queue_shutdown(struct conn *c, uint8_t flags)
{
	flags &= (uint8_t)~(c->host_shut | c->shut_to_send);
	if (!flags)
		return;
	c->shut_to_send |= flags;
	c->pending |= P_SHUTDOWN;
	if (flags & SHUT_RCV_F)
		c->deadline_ms = now_ms() + CLOSE_TIMEOUT_MS;
}

/* The program closed its socket (POLLHUP). */
static void host_hung_up(struct conn *c)
{
	c->host_hup = 1;
	if (c->host_eof)
		queue_shutdown(c, SHUT_BOTH);
	else
		c->readable = 1; /* read what is left, then end of file */
}

/* Writes what the program has not taken; 0, or -1 when the connection
 * was reset. */
static int flush_to_host(struct vsock *v, struct conn *c)
{
	while (c->line_off < c->line_len) {
		ssize_t n = send(c->fd, c->line + c->line_off, c->line_len - c->line_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0) {
			conn_reset(v, c);
			return -1;
		}
		c->line_off += (uint32_t)n;
	}
	while (c->ring_len) {
		struct iovec iov[2];
		int niov = 1;
		uint32_t first = BUF_ALLOC - c->ring_head;

		iov[0].iov_base = c->ring + c->ring_head;
		iov[0].iov_len = first < c->ring_len ? first : c->ring_len;
		if (first < c->ring_len) {
			iov[1].iov_base = c->ring;
			iov[1].iov_len = c->ring_len - first;
			niov = 2;
		}
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)niov };
		ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			conn_reset(v, c);
			return -1;
		}
		c->ring_head = (uint32_t)((c->ring_head + (uint32_t)n) % BUF_ALLOC);
		c->ring_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (!c->ring_len)
		c->ring_head = 0;
	if (!c->ring_len && (c->guest_shut & SHUT_SEND_F) && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = 1;
	}
	maybe_credit_update(c);
	check_done(v, c);
	return 0;
}

/* Reads from the program into the stage, within the guest's credit. */
static void fill_stage(struct vsock *v, struct conn *c)
{
	uint32_t want = peer_credit(c);
	ssize_t n;

	if (!c->readable || !wants_read(c))
		return;
	if (!c->stage && !(c->stage = malloc(STAGE_SIZE))) {
		conn_reset(v, c);
		return;
	}
	if (want > STAGE_SIZE)
		want = STAGE_SIZE;
	n = recv(c->fd, c->stage, want, MSG_DONTWAIT);
	if (n > 0) {
		c->stage_off = 0;
		c->stage_len = (uint32_t)n;
	} else if (n == 0) {
		c->host_eof = 1;
		queue_shutdown(c, c->host_hup ? SHUT_BOTH : SHUT_SEND_F);
	} else if (errno == EAGAIN || errno == EINTR) {
		c->readable = 0;
	} else {
		conn_reset(v, c);
	}
}

/* "CONNECT <port>" (an optional \r before the \n). */
static int parse_connect(const char *s, size_t len, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	uint64_t p = 0;
	size_t i = sizeof(verb) - 1;

	if (len && s[len - 1] == '\r')
		len--;
	if (len <= i || memcmp(s, verb, i))
		return -1;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		p = p * 10 + (uint64_t)(s[i] - '0');
		if (p > UINT32_MAX)
			return -1;
	}
	*port = (uint32_t)p;
	return 0;
}

static void read_line(struct vsock *v, struct conn *c)
{
	ssize_t n = recv(c->fd, c->line + c->line_len, LINE_MAX_LEN - c->line_len, MSG_DONTWAIT);
	char *nl;
	uint32_t port;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(v, c); /* gone before saying where to */
		return;
	}
	c->line_len += (uint32_t)n;
	nl = memchr(c->line, '\n', c->line_len);
	if (!nl) {
		if (c->line_len == LINE_MAX_LEN)
			conn_free(v, c);
		return;
	}
	if (parse_connect(c->line, (size_t)(nl - c->line), &port)) {
		conn_free(v, c);
		return;
	}
	/* Bytes after the line are the start of the stream. */
	uint32_t extra = c->line_len - (uint32_t)(nl + 1 - c->line);
	if (extra) {
		if (!(c->stage = malloc(STAGE_SIZE))) {
			conn_free(v, c);
			return;
		}
		memcpy(c->stage, nl + 1, extra);
		c->stage_len = extra;
	}
	c->line_len = c->line_off = 0;
	c->peer_port = port;
	c->local_port = port_alloc(v);
	c->state = C_REQUEST;
	c->pending = P_REQUEST;
	c->deadline_ms = now_ms() + CONNECT_TIMEOUT_MS;
}

static void accept_new(struct vsock *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				v->api->log(v->ctx, SMOLVM_LOG_WARN, "accept on %s: %s", v->path,
					    strerror(errno));
			return;
		}
		if (!(c = conn_alloc(v))) {
			if (!v->full_refused++)
				v->api->log(v->ctx, SMOLVM_LOG_WARN,
					    "%d connections open: closing new ones", MAX_CONNS);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = C_LINE;
		c->deadline_ms = now_ms() + CONNECT_TIMEOUT_MS;
	}
}

/* ---- guest -> host ------------------------------------------------------------ */

static void answer_rst(struct vsock *v, const struct virtio_vsock_hdr *in)
{
	struct virtio_vsock_hdr *h;

	if (le16toh(in->op) == VIRTIO_VSOCK_OP_RST || v->rst_count == RSTQ_LEN)
		return; /* never answer an RST; a full queue drops */
	h = &v->rstq[(v->rst_head + v->rst_count++) % RSTQ_LEN];
	memset(h, 0, sizeof(*h));
	h->src_cid = in->dst_cid;
	h->dst_cid = in->src_cid;
	h->src_port = in->dst_port;
	h->dst_port = in->src_port;
	h->type = htole16(VIRTIO_VSOCK_TYPE_STREAM);
	h->op = htole16(VIRTIO_VSOCK_OP_RST);
}

/* The guest connects to the host: to the program at "<socket>_<port>". */
static void guest_connect(struct vsock *v, const struct virtio_vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint32_t port = le32toh(h->dst_port);
	struct conn *c;
	int fd, n;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->path, port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || v->nconns == MAX_CONNS) {
		answer_rst(v, h);
		return;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		answer_rst(v, h);
		return;
	}
	/* A Unix connect completes at once, or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		answer_rst(v, h);
		return;
	}
	c = conn_alloc(v);
	c->fd = fd;
	c->state = C_OPEN;
	c->local_port = port;
	c->peer_port = le32toh(h->src_port);
	c->peer_buf_alloc = le32toh(h->buf_alloc);
	c->peer_fwd_cnt = le32toh(h->fwd_cnt);
	c->pending = P_RESPONSE;
}

/* The guest's RW payload: straight to the program when nothing waits,
 * the rest into the connection's ring. */
static void guest_data(struct vsock *v, struct conn *c, const struct smolvm_virtq_elem *e,
		       uint32_t len)
{
	struct iovec iov[SMOLVM_VIRTIO_MAX_SEGS];
	uint64_t off = HDR_LEN;
	uint32_t done = 0, left = len;
	int niov = 0;

	if (!len)
		return;
	if (len > BUF_ALLOC - (c->rx_cnt - c->fwd_cnt)) {
		guest_error(v, "more data than the credit we gave", NULL);
		conn_reset(v, c);
		return;
	}
	if (!c->ring_len && c->line_off == c->line_len) {
		for (unsigned i = 0; i < e->nout && left; i++) {
			if (off >= e->out[i].iov_len) {
				off -= e->out[i].iov_len;
				continue;
			}
			size_t chunk = e->out[i].iov_len - off;
			if (chunk > left)
				chunk = left;
			iov[niov].iov_base = (char *)e->out[i].iov_base + off;
			iov[niov++].iov_len = chunk;
			left -= (uint32_t)chunk;
			off = 0;
		}
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)niov };
		ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_reset(v, c);
			return;
		}
		done = n > 0 ? (uint32_t)n : 0;
	}
	if (done < len) {
		if (!c->ring && !(c->ring = malloc(BUF_ALLOC))) {
			conn_reset(v, c);
			return;
		}
		uint32_t rest = len - done, tail = (c->ring_head + c->ring_len) % BUF_ALLOC;
		uint32_t first = BUF_ALLOC - tail < rest ? BUF_ALLOC - tail : rest;
		smolvm_iov_to_buf(e->out, e->nout, HDR_LEN + done, c->ring + tail, first);
		if (first < rest)
			smolvm_iov_to_buf(e->out, e->nout, HDR_LEN + done + first, c->ring, rest - first);
		c->ring_len += rest;
	}
	c->rx_cnt += len;
	c->fwd_cnt += done;
	maybe_credit_update(c);
}

static void guest_shutdown(struct vsock *v, struct conn *c, uint32_t flags)
{
	c->guest_shut |= (uint8_t)(flags & SHUT_BOTH);
	if (c->guest_shut & SHUT_RCV_F) {
		c->stage_len = 0; /* the guest reads no more: nothing more to send */
		c->pending &= ~P_CREDIT_REQUEST;
	}
	if ((c->guest_shut & SHUT_SEND_F) && !c->ring_len && c->line_off == c->line_len &&
	    !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = 1;
	}
	check_done(v, c);
}

static void guest_packet(struct vsock *v, const struct smolvm_virtq_elem *e)
{
	struct virtio_vsock_hdr h;
	struct conn *c;
	uint16_t op, type;
	uint32_t len;

	if (e->out_len < HDR_LEN) {
		guest_error(v, "shorter than a header", NULL);
		return;
	}
	smolvm_iov_to_buf(e->out, e->nout, 0, &h, HDR_LEN);
	op = le16toh(h.op);
	type = le16toh(h.type);
	len = le32toh(h.len);
	if (le64toh(h.src_cid) != v->guest_cid) {
		guest_error(v, "source CID is not the guest's", &h);
		return;
	}
	c = conn_find(v, le32toh(h.dst_port), le32toh(h.src_port));
	if (op == VIRTIO_VSOCK_OP_RST) {
		if (c && le64toh(h.dst_cid) == HOST_CID)
			conn_free(v, c); /* closes the program's end: it reads EOF */
		return;
	}
	if (len > e->out_len - HDR_LEN || le64toh(h.dst_cid) != HOST_CID ||
	    type != VIRTIO_VSOCK_TYPE_STREAM || op == VIRTIO_VSOCK_OP_INVALID ||
	    op > VIRTIO_VSOCK_OP_CREDIT_REQUEST) {
		guest_error(v, len > e->out_len - HDR_LEN ? "length beyond the buffers"
			       : le64toh(h.dst_cid) != HOST_CID ? "not for the host"
			       : type != VIRTIO_VSOCK_TYPE_STREAM ? "not a stream" : "unknown op", &h);
		if (c && le64toh(h.dst_cid) == HOST_CID)
			conn_reset(v, c);
		else
			answer_rst(v, &h);
		return;
	}
	if (op == VIRTIO_VSOCK_OP_REQUEST) {
		if (c) { /* a second REQUEST on a live connection */
			guest_error(v, "REQUEST for a connection that exists", &h);
			conn_reset(v, c);
		} else {
			guest_connect(v, &h);
		}
		return;
	}
	if (!c) {
		answer_rst(v, &h);
		return;
	}
	if (c->state == C_RST)
		return; /* our RST is on its way */
	c->peer_buf_alloc = le32toh(h.buf_alloc);
	c->peer_fwd_cnt = le32toh(h.fwd_cnt);
	if (peer_credit(c))
		c->credit_asked = 0;
	if (c->state == C_REQUEST) {
		if (op == VIRTIO_VSOCK_OP_RESPONSE) {
			c->state = C_OPEN;
			c->deadline_ms = 0;
			c->readable = 1;
			c->line_off = 0;
			c->line_len = (uint32_t)snprintf(c->line, sizeof(c->line), "OK %u\n",
							 c->local_port);
			flush_to_host(v, c);
		} else if (op != VIRTIO_VSOCK_OP_CREDIT_UPDATE) {
			guest_error(v, "connection not accepted yet", &h);
			conn_reset(v, c);
		}
		return;
	}
	switch (op) {
	case VIRTIO_VSOCK_OP_RW:
		if (c->guest_shut & SHUT_SEND_F) {
			guest_error(v, "data after SHUTDOWN(SEND)", &h);
			conn_reset(v, c);
			return;
		}
		guest_data(v, c, e, len);
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		guest_shutdown(v, c, le32toh(h.flags));
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break; /* the header said it all */
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->pending |= P_CREDIT_UPDATE;
		break;
	default: /* RESPONSE on an open connection */
		guest_error(v, "unexpected op on an open connection", &h);
		conn_reset(v, c);
		break;
	}
}

static void process_tx(struct vsock *v)
{
	struct smolvm_virtq_elem e;
	int count = 0;

	while (count < TX_BATCH && smolvm_virtq_pop(&v->vd, TXQ, &e) > 0) {
		count++;
		guest_packet(v, &e);
		smolvm_virtq_push(&v->vd, TXQ, &e, 0);
		v->tx_pushed = 1;
	}
	if (count == TX_BATCH)
		wake(v); /* more may wait: another round after the sockets */
}

/* ---- host -> guest ------------------------------------------------------------- */

/* The next packet `c` has for the guest: an op, or 0. */
static uint16_t next_op(struct vsock *v, struct conn *c)
{
	switch (c->state) {
	case C_RST:
		return VIRTIO_VSOCK_OP_RST;
	case C_REQUEST:
		return (c->pending & P_REQUEST) ? VIRTIO_VSOCK_OP_REQUEST : 0;
	case C_OPEN:
		break;
	default:
		return 0;
	}
	if (c->pending & P_RESPONSE)
		return VIRTIO_VSOCK_OP_RESPONSE;
	fill_stage(v, c);
	if (c->state != C_OPEN)
		return c->state == C_RST ? VIRTIO_VSOCK_OP_RST : 0;
	if (c->stage_len) {
		if (peer_credit(c))
			return VIRTIO_VSOCK_OP_RW;
		if (!c->credit_asked)
			c->pending |= P_CREDIT_REQUEST;
	} else if (c->pending & P_SHUTDOWN) {
		return VIRTIO_VSOCK_OP_SHUTDOWN;
	}
	if (c->pending & P_CREDIT_UPDATE)
		return VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	if (c->pending & P_CREDIT_REQUEST)
		return VIRTIO_VSOCK_OP_CREDIT_REQUEST;
	return 0;
}

/* Pops a receive buffer that can hold a header: 1, or 0 when there is none. */
static int pop_rx(struct vsock *v, struct smolvm_virtq_elem *e)
{
	while (smolvm_virtq_pop(&v->vd, RXQ, e) > 0) {
		if (e->in_len >= HDR_LEN)
			return 1;
		smolvm_virtq_push(&v->vd, RXQ, e, 0); /* useless: back it goes */
		v->rx_pushed = 1;
	}
	return 0;
}

/* Sends `op` for `c` in `e`. */
static void send_packet(struct vsock *v, struct conn *c, uint16_t op, struct smolvm_virtq_elem *e)
{
	struct virtio_vsock_hdr h = {
		.src_cid = htole64(HOST_CID),
		.dst_cid = htole64(v->guest_cid),
		.src_port = htole32(c->local_port),
		.dst_port = htole32(c->peer_port),
		.type = htole16(VIRTIO_VSOCK_TYPE_STREAM),
		.op = htole16(op),
		.buf_alloc = htole32(BUF_ALLOC),
		.fwd_cnt = htole32(c->fwd_cnt),
	};
	uint32_t n = 0;

	switch (op) {
	case VIRTIO_VSOCK_OP_REQUEST:
		c->pending &= ~P_REQUEST;
		c->req_sent = 1;
		break;
	case VIRTIO_VSOCK_OP_RESPONSE:
		c->pending &= ~P_RESPONSE;
		c->readable = 1;
		break;
	case VIRTIO_VSOCK_OP_RW: {
		uint64_t room = e->in_len - HDR_LEN;
		n = c->stage_len;
		if (n > peer_credit(c))
			n = peer_credit(c);
		if (n > MAX_PKT)
			n = MAX_PKT;
		if (n > room)
			n = (uint32_t)room;
		if (!n) { /* a buffer with room for a header only */
			smolvm_virtq_push(&v->vd, RXQ, e, 0);
			v->rx_pushed = 1;
			return;
		}
		smolvm_iov_from_buf(e->in, e->nin, HDR_LEN, c->stage + c->stage_off, n);
		c->stage_off += n;
		c->stage_len -= n;
		c->tx_cnt += n;
		h.len = htole32(n);
		break;
	}
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		h.flags = htole32(c->shut_to_send);
		c->host_shut |= c->shut_to_send;
		c->shut_to_send = 0;
		c->pending &= ~P_SHUTDOWN;
		break;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->pending &= ~P_CREDIT_REQUEST;
		c->credit_asked = 1;
		break;
	default:
		break;
	}
	smolvm_iov_from_buf(e->in, e->nin, 0, &h, HDR_LEN);
	smolvm_virtq_push(&v->vd, RXQ, e, HDR_LEN + n);
	v->rx_pushed = 1;
	/* Every header carries our credit. */
	c->last_fwd_sent = c->fwd_cnt;
	c->pending &= ~P_CREDIT_UPDATE;
	if (op == VIRTIO_VSOCK_OP_RST)
		conn_free(v, c);
	else if (op == VIRTIO_VSOCK_OP_SHUTDOWN)
		check_done(v, c);
}

/* Fills receive buffers: queued RST answers first, then the connections in
 * turn, one packet each per round, while there are buffers. */
static void fill_rx(struct vsock *v)
{
	struct smolvm_virtq_elem e;

	while (v->rst_count) {
		if (!pop_rx(v, &e))
			return;
		smolvm_iov_from_buf(e.in, e.nin, 0, &v->rstq[v->rst_head], HDR_LEN);
		smolvm_virtq_push(&v->vd, RXQ, &e, HDR_LEN);
		v->rx_pushed = 1;
		v->rst_head = (v->rst_head + 1) % RSTQ_LEN;
		v->rst_count--;
	}
	for (;;) {
		int sent = 0;

		for (unsigned i = 0; i < MAX_CONNS; i++) {
			unsigned k = (v->rr + i) % MAX_CONNS;
			struct conn *c = &v->conns[k];
			uint16_t op = next_op(v, c);

			if (!op)
				continue;
			if (!pop_rx(v, &e)) {
				v->rr = k; /* first in line when the guest adds buffers (it kicks) */
				return;
			}
			send_packet(v, c, op, &e);
			sent = 1;
		}
		v->rr = (v->rr + 1) % MAX_CONNS;
		if (!sent)
			return;
	}
}

/* ---- the transport reset after a restore ------------------------------------------ */

/* The driver's available index of the event queue: it moves when the
 * driver posts an event buffer (with EVENT_IDX it need not kick for that,
 * having posted others before). -1 while the queue is not live. */
static int evq_avail_idx(struct vsock *v)
{
	const struct smolvm_virtq *q = &v->vd.vq[EVQ];

	if (!q->ready || !q->avail)
		return -1;
	return le16toh(__atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE));
}

static void process_reset(struct vsock *v, int64_t now)
{
	struct smolvm_virtq_elem e;

	if (v->reset == RS_PENDING) {
		while (smolvm_virtq_pop(&v->vd, EVQ, &e) > 0) {
			struct virtio_vsock_event ev = { .id = htole32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) };
			if (e.in_len < sizeof(ev)) {
				smolvm_virtq_push(&v->vd, EVQ, &e, 0);
				continue;
			}
			smolvm_iov_from_buf(e.in, e.nin, 0, &ev, sizeof(ev));
			v->evq_kicked = 0;
			v->reset_avail = (uint16_t)evq_avail_idx(v);
			smolvm_virtq_push(&v->vd, EVQ, &e, sizeof(ev));
			smolvm_virtq_notify(&v->vd, EVQ);
			v->reset = RS_SENT;
			v->reset_delay = RESET_RETRY_MS;
			v->reset_retry_at = now + v->reset_delay;
			break;
		}
	} else if (v->reset == RS_SENT) {
		int idx = evq_avail_idx(v);
		if (v->evq_kicked || (idx >= 0 && (uint16_t)idx != v->reset_avail)) {
			/* The guest posted its event buffer again (Linux does so
			 * after handling the event): it took it. */
			v->reset = RS_NONE;
			v->api->log(v->ctx, SMOLVM_LOG_DEBUG,
				    "the guest took the transport reset %lld ms after the restore",
				    (long long)(now - v->reset_t0));
		} else if (now >= v->reset_retry_at) {
			/* Not a word from the guest: if it has not read the
			 * interrupt status either, the pulse was lost. */
			pthread_mutex_lock(&v->vd.lock);
			int unread = !!(v->vd.isr & 1);
			pthread_mutex_unlock(&v->vd.lock);
			if (unread)
				smolvm_virtio_config_changed(&v->vd);
			v->reset_delay *= 2;
			v->reset_retry_at = now + v->reset_delay;
		}
	}
	if (v->reset != RS_NONE && now - v->reset_t0 >= RESET_HOLD_MS) {
		v->api->log(v->ctx, SMOLVM_LOG_WARN,
			    "the guest has not taken the transport reset after %d ms; going on",
			    RESET_HOLD_MS);
		v->reset = RS_NONE;
	}
}

/* ---- the thread -------------------------------------------------------------------- */

static void timeouts(struct vsock *v, int64_t now)
{
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &v->conns[i];
		if (c->state == C_FREE || !c->deadline_ms || now < c->deadline_ms)
			continue;
		if (c->state == C_REQUEST && c->req_sent)
			v->api->log(v->ctx, SMOLVM_LOG_WARN,
				    "the guest did not answer a connection to port %u in %d s",
				    c->peer_port, CONNECT_TIMEOUT_MS / 1000);
		conn_reset(v, c);
	}
}

/* The poll set for the next round, and its timeout in ms (-1: none). */
static nfds_t build_pollset(struct vsock *v, int *timeout)
{
	int64_t next = INT64_MAX, now = now_ms();
	nfds_t n = 0;

	v->pfd[n] = (struct pollfd){ .fd = v->wake_fd, .events = POLLIN };
	v->pslot[n++] = -1;
	*timeout = -1;
	if (v->paused)
		return n;
	v->pfd[n] = (struct pollfd){ .fd = v->listen_fd, .events = POLLIN };
	v->pslot[n++] = -1;
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &v->conns[i];
		short ev = 0;
		int watch = 0;

		if (c->state == C_FREE)
			continue;
		if (c->deadline_ms && c->deadline_ms < next)
			next = c->deadline_ms;
		if (c->fd < 0)
			continue;
		if (c->state == C_LINE) {
			ev = POLLIN;
			watch = 1;
		} else if (c->state == C_REQUEST) {
			watch = !c->host_hup; /* POLLHUP: the program gave up */
		} else if (c->state == C_OPEN) {
			if (wants_read(c) && !c->readable)
				ev |= POLLIN;
			if (wants_write(c))
				ev |= POLLOUT;
			watch = ev || !c->host_hup;
		}
		if (!watch)
			continue;
		v->pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
		v->pslot[n] = (int)i;
		v->pgen[n++] = c->gen;
	}
	/* Waiting for the guest to take the reset: look again shortly (it
	 * need not kick for a new event buffer). At most RESET_HOLD_MS. */
	if (v->reset != RS_NONE && now + RESET_POLL_MS < next)
		next = now + RESET_POLL_MS;
	if (next != INT64_MAX)
		*timeout = next <= now ? 0 : next - now > INT_MAX ? INT_MAX : (int)(next - now);
	return n;
}

static void poll_results(struct vsock *v, nfds_t n)
{
	for (nfds_t i = 1; i < n; i++) {
		short re = v->pfd[i].revents;
		struct conn *c;

		if (!re)
			continue;
		if (v->pslot[i] < 0) {
			accept_new(v);
			continue;
		}
		c = &v->conns[v->pslot[i]];
		if (c->gen != v->pgen[i] || c->fd != v->pfd[i].fd)
			continue; /* closed and reused since */
		switch (c->state) {
		case C_LINE:
			read_line(v, c);
			break;
		case C_REQUEST:
			if (re & (POLLHUP | POLLERR))
				conn_reset(v, c);
			break;
		case C_OPEN:
			if (re & POLLERR) {
				conn_reset(v, c);
				break;
			}
			if (re & POLLIN)
				c->readable = 1;
			if (re & POLLOUT && flush_to_host(v, c))
				break;
			if ((re & POLLHUP) && c->state == C_OPEN && !c->host_hup)
				host_hung_up(c);
			break;
		default:
			break;
		}
	}
}

static void work(struct vsock *v, nfds_t n)
{
	int64_t now = now_ms();

	v->rx_pushed = v->tx_pushed = 0;
	poll_results(v, n);
	process_tx(v);
	timeouts(v, now);
	process_reset(v, now);
	if (v->reset == RS_NONE)
		fill_rx(v);
	if (v->tx_pushed)
		smolvm_virtq_notify(&v->vd, TXQ);
	if (v->rx_pushed)
		smolvm_virtq_notify(&v->vd, RXQ);
}

/* One round of the device thread: wait (at most `max_wait` ms, -1: as the
 * pollset says) for the sockets and the wake fd, then do what is due.
 * Returns 0, or 1 once the device is stopping. The fuzz target calls it
 * with max_wait 0 instead of running the thread. */
static int run_round(struct vsock *v, int max_wait)
{
	int timeout;
	nfds_t n;

	pthread_mutex_lock(&v->vd.notify_lock);
	if (v->stop) {
		pthread_mutex_unlock(&v->vd.notify_lock);
		return 1;
	}
	n = build_pollset(v, &timeout);
	pthread_mutex_unlock(&v->vd.notify_lock);
	if (max_wait >= 0 && (timeout < 0 || timeout > max_wait))
		timeout = max_wait;
	if (poll(v->pfd, n, timeout) < 0) {
		for (nfds_t i = 0; i < n; i++)
			v->pfd[i].revents = 0;
	}
	if (v->pfd[0].revents & POLLIN) {
		uint64_t cnt;
		ssize_t r = read(v->wake_fd, &cnt, sizeof(cnt));
		(void)r;
	}
	pthread_mutex_lock(&v->vd.notify_lock);
	if (!v->paused && !v->stop)
		work(v, n);
	pthread_mutex_unlock(&v->vd.notify_lock);
	return 0;
}

static void *vsock_thread(void *opaque)
{
	struct vsock *v = opaque;

	while (!run_round(v, -1))
		;
	return NULL;
}

/* ---- virtio ------------------------------------------------------------------------- */

/* With vd.notify_lock held: the thread does the work. */
static void vsock_queue_notify(void *dev, uint32_t q)
{
	struct vsock *v = dev;

	if (q == EVQ)
		v->evq_kicked = 1;
	wake(v);
}

static void vsock_driver_ok(void *dev)
{
	wake(dev);
}

/* The driver or the machine reset the device (vd.notify_lock held): every
 * connection goes; the programs read end of file. */
static void vsock_vreset(void *dev)
{
	struct vsock *v = dev;

	conn_free_all(v);
	v->reset = RS_NONE;
	wake(v);
}

static void vsock_config_read(void *dev, uint32_t off, void *data, uint32_t size)
{
	struct vsock *v = dev;
	uint64_t cid = htole64(v->guest_cid);

	/* The transport checked off + size against config_size. */
	memcpy(data, (const uint8_t *)&cid + off, size);
}

/* ---- pause and snapshots (the transport holds vd.notify_lock) ---------------------- */

static void vsock_pause(void *dev)
{
	struct vsock *v = dev;

	v->paused = 1; /* work in progress has finished: we hold notify_lock */
	wake(v);
}

static void vsock_resume(void *dev)
{
	struct vsock *v = dev;

	v->paused = 0;
	wake(v);
}

/* The transport's section, then ours. */
static int vsock_save(void *dev, struct smolvm_state_out *o)
{
	struct vsock *v = dev;
	struct vsock_state s = { .guest_cid = v->guest_cid, .next_port = v->next_port };

	smolvm_virtio_put_state(&v->vd, o);
	smolvm_state_put_fields(o, vsock_fields, SMOLVM_ARRAY_LEN(vsock_fields), &s);
	return 0;
}

static int vsock_restore(void *dev, struct smolvm_state_in *in, uint32_t version)
{
	struct vsock *v = dev;
	struct vsock_state s = { .guest_cid = v->guest_cid, .next_port = v->next_port };
	int rc;

	if ((rc = smolvm_virtio_get_state(&v->vd, in)) ||
	    (rc = smolvm_state_get_fields(in, vsock_fields, SMOLVM_ARRAY_LEN(vsock_fields), &s,
					  version)))
		return rc;
	if (s.guest_cid < 3 || s.guest_cid >= UINT32_MAX)
		return smolvm_state_in_fail(in, -EINVAL, "saved guest cid %llu out of range",
					    (unsigned long long)s.guest_cid);
	if (s.next_port >= FIRST_HOST_PORT && s.next_port < UINT32_MAX)
		v->next_port = s.next_port;
	if (s.guest_cid != v->guest_cid)
		v->api->log(v->ctx, SMOLVM_LOG_INFO,
			    "guest cid %llu, saved with %llu: the transport reset tells the guest",
			    (unsigned long long)v->guest_cid, (unsigned long long)s.guest_cid);
	/* No connection survives; a driver that was running hears so. */
	pthread_mutex_lock(&v->vd.lock);
	int live = !!(v->vd.status & VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&v->vd.lock);
	if (live) {
		v->reset = RS_PENDING;
		v->reset_t0 = now_ms();
		v->evq_kicked = 0;
	}
	wake(v);
	return 0;
}

static void vsock_destroy(void *dev);

static const struct smolvm_virtio_ops vsock_virtio = {
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = NUM_QUEUES,
	.queue_max_size = QUEUE_SIZE,
	.features = 0, /* VERSION_1 (added by the transport); stream only */
	.config_size = sizeof(struct virtio_vsock_config),
	.config_read = vsock_config_read,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_vreset,
	.driver_ok = vsock_driver_ok,
	.pause = vsock_pause,
	.resume = vsock_resume,
	.save = vsock_save,
	.restore = vsock_restore,
	.destroy = vsock_destroy,
};

/* ---- create / destroy ------------------------------------------------------------------ */

static int configure(struct vsock *v)
{
	const struct smolvm_host_api *api = v->api;
	const char *s;

	s = api->config_path(v->ctx, "socket");
	if (!s || !*s) {
		api->set_error(v->ctx, "socket: required (the path of the host-side Unix socket, "
			       "e.g. socket = \"vm.sock\")");
		return -EINVAL;
	}
	/* "<socket>_<port>" must fit too; check the plain path here. */
	if (strlen(s) >= sizeof(v->path)) {
		api->set_error(v->ctx, "socket: \"%s\" is too long for a Unix socket (%zu bytes, "
			       "at most %zu)", s, strlen(s), sizeof(v->path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(v->path, s);
	v->guest_cid = DEFAULT_CID;
	if ((s = api->config_get(v->ctx, "cid"))) {
		char *end;
		errno = 0;
		unsigned long long cid = strtoull(s, &end, 0);
		if (errno || end == s || *end || *s == '-' || cid < 3 || cid >= UINT32_MAX) {
			api->set_error(v->ctx, "cid: expected a guest CID from 3 to %u, got \"%s\"",
				       UINT32_MAX - 1, s);
			return -EINVAL;
		}
		v->guest_cid = cid;
	}
	return 0;
}

/* Listens on v->path; a stale socket file there is replaced. */
static int bind_socket(struct vsock *v)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, err;

	strcpy(sa.sun_path, v->path);
	if (lstat(v->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			v->api->set_error(v->ctx, "socket: %s exists and is not a socket; "
					  "not removing it", v->path);
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto fail;
		int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
		close(fd);
		if (live) {
			v->api->set_error(v->ctx, "socket: %s is in use (another program listens "
					  "on it)", v->path);
			return -EADDRINUSE;
		}
		if (unlink(v->path) < 0 && errno != ENOENT)
			goto fail;
	} else if (errno != ENOENT) {
		goto fail;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
	    stat(v->path, &st) < 0) {
		err = errno;
		close(fd);
		errno = err;
		goto fail;
	}
	v->listen_fd = fd;
	v->sock_dev = st.st_dev;
	v->sock_ino = st.st_ino;
	return 0;
fail:
	err = errno;
	v->api->set_error(v->ctx, "socket: %s: %s", v->path, strerror(err));
	return -err;
}

static void unbind_socket(struct vsock *v)
{
	struct stat st;

	if (v->listen_fd < 0)
		return;
	close(v->listen_fd);
	v->listen_fd = -1;
	/* Only the file we made: a later instance may have taken the name. */
	if (lstat(v->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == v->sock_dev &&
	    st.st_ino == v->sock_ino)
		unlink(v->path);
}

static int start_thread(struct vsock *v)
{
	sigset_t all, old;
	int rc;

	/* Signals are the main thread's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&v->thread, NULL, vsock_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		v->api->set_error(v->ctx, "cannot start the vsock thread: %s", strerror(rc));
		return -rc;
	}
	pthread_setname_np(v->thread, "vsock");
	v->thread_live = 1;
	return 0;
}

/* Stops the thread and lets go of what the device holds but the transport
 * and the instance (the destroy hook). */
static void vsock_destroy(void *dev)
{
	struct vsock *v = dev;

	if (v->thread_live) {
		pthread_mutex_lock(&v->vd.notify_lock);
		v->stop = 1;
		pthread_mutex_unlock(&v->vd.notify_lock);
		wake(v);
		pthread_join(v->thread, NULL);
		v->thread_live = 0;
	}
	conn_free_all(v);
	unbind_socket(v);
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	v->wake_fd = -1;
}

/* A device create() could not finish. */
static void vsock_free(struct vsock *v)
{
	vsock_destroy(v);
	if (v->vd_live)
		smolvm_virtio_cleanup(&v->vd);
	free(v);
}

static int vsock_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct vsock *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	v->ctx = ctx;
	v->api = api;
	v->listen_fd = v->wake_fd = -1;
	v->next_port = FIRST_HOST_PORT;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		v->conns[i].fd = -1;
	if ((rc = configure(v)))
		goto fail;
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->wake_fd < 0) {
		rc = -errno;
		api->set_error(ctx, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((rc = smolvm_virtio_init(&v->vd, ctx, api, &vsock_virtio, v)))
		goto fail;
	v->vd_live = 1;
	if ((rc = bind_socket(v)) || (rc = start_thread(v)))
		goto fail;
	api->log(ctx, SMOLVM_LOG_INFO, "guest cid %llu, host side on %s",
		 (unsigned long long)v->guest_cid, v->path);
	*out = v;
	return 0;
fail:
	vsock_free(v);
	return rc;
}

static const struct smolvm_option vsock_options[] = {
	{ "socket", SMOLVM_OPT_PATH, 0, "a private one smolvm makes",
	  "the host-side Unix socket (guest connections to port P: SOCKET_P)" },
	{ "cid", SMOLVM_OPT_INT, 0, "3", "the guest's CID, 3 to 4294967294" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops vsock_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct vsock, vsock_create, 2, 1, vsock_options);

SMOLVM_DEVICE_PLUGIN("virtio-vsock", "1.0.0",
		     "virtio socket device: guest AF_VSOCK streams to host Unix sockets",
		     vsock_ops);
