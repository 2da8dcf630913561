/* virtio-net: a network card whose far end is libslirp, a user-mode NAT.
 * The guest gets 10.0.2.15 by DHCP, reaches the host's loopback through
 * 10.0.2.2 and the world through the host's sockets; host ports can be
 * forwarded into the guest.
 *
 *   { type = "virtio-net", mac = "52:54:00:12:34:56", net = "10.0.2.0/24",
 *     forward = { "tcp:127.0.0.1:8080-:80", "udp:127.0.0.1:5353-:53" },
 *     mtu = 1500, egress = true, host_loopback = true }
 *
 * egress = false: slirp's restricted mode, the guest reaches nothing
 * outside (forwards into it still work); host_loopback = false: 10.0.2.2
 * no longer leads to the host's 127.0.0.1 (smolvm sets both for bundles
 * the user does not trust, unless granted: docs/security.md).
 *
 * mtu (68 to 65520) is the guest's and slirp's (no offloads, no merged
 * buffers): 65520 cuts the packets of a bulk transfer ~40x. Where the guest
 * kernel is emulated its per-byte cost dominates (20 MB out of the guest:
 * 106 s at 1500, 63 s at 65520; into the guest no gain).
 *
 * Threads. libslirp is not thread-safe, and its sockets and timers need a
 * poll loop of their own: each instance runs one thread that owns the slirp
 * stack. It polls slirp's sockets, its timers and a wake-up eventfd, then
 * moves frames both ways: guest -> slirp_input() from the transmit queue,
 * slirp -> the receive queue from send_packet(). Guest kicks, driver-ok,
 * pause and resume only wake it. While it touches the queues it holds
 * vd.notify_lock (which serialises it with queue_notify and device resets)
 * and then n->lock (slirp, timers, the backlog). Lock order: vd.notify_lock,
 * then n->lock; nothing else takes both.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_ether.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <slirp/libslirp.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

#include "options.h"

#define RXQ 0
#define TXQ 1
#define QUEUE_SIZE 256
#define HDR_LEN sizeof(struct virtio_net_hdr_v1) /* 12: VERSION_1 always has num_buffers */
#define MAX_FRAME 65536       /* largest frame either way: mtu + 14 */
#define BACKLOG 64            /* guest-bound frames kept while the guest has no buffer */
#define TX_BATCH 256          /* transmit chains per round, then let slirp run */
#define MAX_SLIRP_STATE (1u << 20)
#define GUEST_ERRORS_LOGGED 10

struct frame {
	size_t len;
	uint8_t data[];
};

struct net_timer {
	struct net_timer *next;
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms;
	int armed;
};

struct net {
	struct smolvm_virtio_dev vd;
	int vd_live;
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	struct virtio_net_config cfg; /* little-endian, as the guest reads it */
	struct net_addrs addrs;
	uint32_t mtu;
	int egress, host_loopback; /* options, see the top */
	struct net_forward fwd[NET_MAX_FORWARDS];
	size_t nfwd;

	pthread_mutex_t lock; /* everything below, except the thread-only part */
	int lock_live;
	Slirp *slirp;
	struct net_timer *timers;
	struct frame *backlog[BACKLOG]; /* a ring */
	unsigned bl_head, bl_count;
	int rx_ok; /* the thread holds vd.notify_lock: queues may be used */
	int rx_pushed, tx_pushed;
	int paused, stop;
	unsigned long rx_dropped, tx_dropped, guest_errors;

	/* The slirp thread's own. */
	pthread_t thread;
	int thread_live;
	int wake_fd;
	struct pollfd *pfd;
	size_t npfd, pfd_cap;
	uint8_t txbuf[HDR_LEN + MAX_FRAME];
};

/* Guest-visible facts a snapshot depends on: restore refuses a device
 * built with others. Integers in host order. */
struct net_state {
	uint8_t mac[ETH_ALEN];
	uint32_t network;
	uint32_t prefix;
	uint32_t mtu;
};

static const struct smolvm_state_field net_fields[] = {
	SMOLVM_FIELD(struct net_state, mac, SMOLVM_STATE_BYTES, 1),
	SMOLVM_FIELD(struct net_state, network, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct net_state, prefix, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct net_state, mtu, SMOLVM_STATE_U32, 1),
};

static void wake(struct net *n)
{
	uint64_t one = 1;
	ssize_t r = write(n->wake_fd, &one, sizeof(one));
	(void)r; /* a full counter already means "wake up" */
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the receive side: slirp -> guest ------------------------------------ */

/* Places one frame in the next receive buffer. 1: done (or dropped for
 * good), 0: no buffer, try again later. Needs rx_ok. */
static int deliver(struct net *n, const void *frame, size_t len)
{
	struct virtio_net_hdr_v1 hdr = { .num_buffers = htole16(1) };
	struct smolvm_virtq_elem e;
	int rc = smolvm_virtq_pop(&n->vd, RXQ, &e);

	if (rc < 0) {
		n->rx_dropped++; /* the device is broken until the driver resets it */
		return 1;
	}
	if (!rc)
		return 0;
	if (e.in_len < HDR_LEN + len) {
		/* The driver sees a short packet and drops it. */
		smolvm_virtq_push(&n->vd, RXQ, &e, 0);
		n->rx_dropped++;
	} else {
		smolvm_iov_from_buf(e.in, e.nin, 0, &hdr, HDR_LEN);
		smolvm_iov_from_buf(e.in, e.nin, HDR_LEN, frame, len);
		smolvm_virtq_push(&n->vd, RXQ, &e, (uint32_t)(HDR_LEN + len));
	}
	n->rx_pushed = 1;
	return 1;
}

static void backlog_drop_all(struct net *n)
{
	while (n->bl_count) {
		free(n->backlog[n->bl_head]);
		n->backlog[n->bl_head] = NULL;
		n->bl_head = (n->bl_head + 1) % BACKLOG;
		n->bl_count--;
	}
}

static void backlog_flush(struct net *n)
{
	while (n->bl_count) {
		struct frame *f = n->backlog[n->bl_head];
		if (!deliver(n, f->data, f->len))
			return;
		free(f);
		n->backlog[n->bl_head] = NULL;
		n->bl_head = (n->bl_head + 1) % BACKLOG;
		n->bl_count--;
	}
}

static void backlog_add(struct net *n, const void *buf, size_t len)
{
	struct frame *f;

	if (n->bl_count == BACKLOG || !(f = malloc(sizeof(*f) + len))) {
		n->rx_dropped++; /* TCP retransmits; slirp's own replies repeat */
		return;
	}
	f->len = len;
	memcpy(f->data, buf, len);
	n->backlog[(n->bl_head + n->bl_count++) % BACKLOG] = f;
}

/* ---- slirp callbacks (always with n->lock held) --------------------------- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net *n = opaque;

	if (len > MAX_FRAME) {
		n->rx_dropped++;
		return (ssize_t)len;
	}
	/* In order: straight to the guest only when nothing waits before. */
	if (n->rx_ok && !n->bl_count && deliver(n, buf, len))
		return (ssize_t)len;
	backlog_add(n, buf, len);
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct net *n = opaque;

	if (n->guest_errors++ < GUEST_ERRORS_LOGGED)
		n->api->log(n->ctx, SMOLVM_LOG_WARN, "guest network error: %s", msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
	(void)opaque;
	return now_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net *n = opaque;
	struct net_timer *t = calloc(1, sizeof(*t));

	if (!t) {
		n->api->log(n->ctx, SMOLVM_LOG_ERROR, "out of memory for a slirp timer");
		return NULL;
	}
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	t->next = n->timers;
	n->timers = t;
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct net *n = opaque;

	for (struct net_timer **p = &n->timers; *p; p = &(*p)->next) {
		if (*p == timer) {
			*p = (*p)->next;
			free(timer);
			return;
		}
	}
}

/* expire_ms is on cb_clock_get_ns's clock, in milliseconds. */
static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct net_timer *t = timer;

	if (!t)
		return;
	t->expire_ms = expire_ms;
	t->armed = 1;
	wake(opaque); /* the thread recomputes its poll timeout */
}

/* Sockets are collected afresh by slirp_pollfds_fill every round. */
static void cb_register_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void cb_notify(void *opaque)
{
	wake(opaque);
}

static const SlirpCb slirp_cbs = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
};

/* ---- the slirp thread ------------------------------------------------------ */

static int add_poll(int fd, int events, void *opaque)
{
	struct net *n = opaque;
	short ev = 0;

	if (n->npfd == n->pfd_cap) {
		size_t cap = n->pfd_cap ? 2 * n->pfd_cap : 64;
		struct pollfd *p = realloc(n->pfd, cap * sizeof(*p));
		if (!p)
			return -1; /* not polled this round; get_revents says 0 */
		n->pfd = p;
		n->pfd_cap = cap;
	}
	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	n->pfd[n->npfd] = (struct pollfd){ .fd = fd, .events = ev };
	return (int)n->npfd++;
}

static int get_revents(int idx, void *opaque)
{
	struct net *n = opaque;
	int ev = 0;
	short r;

	if (idx < 0 || (size_t)idx >= n->npfd)
		return 0;
	r = n->pfd[idx].revents;
	if (r & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (r & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (r & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (r & POLLERR)
		ev |= SLIRP_POLL_ERR;
	if (r & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static void timers_timeout(struct net *n, uint32_t *timeout)
{
	int64_t now = now_ns() / 1000000;

	for (struct net_timer *t = n->timers; t; t = t->next) {
		if (!t->armed)
			continue;
		int64_t d = t->expire_ms - now;
		if (d < 0)
			d = 0;
		if ((uint64_t)d < *timeout)
			*timeout = (uint32_t)d;
	}
}

static void timers_run(struct net *n)
{
	int64_t now = now_ns() / 1000000;
	int fired = 0;

	/* A callback may free, add or re-arm timers: start over after each. */
	for (struct net_timer *t = n->timers; t && fired < 16;) {
		if (t->armed && t->expire_ms <= now) {
			t->armed = 0;
			t->cb(t->cb_opaque);
			fired++;
			t = n->timers;
			continue;
		}
		t = t->next;
	}
}

/* Guest -> slirp: each chain is a virtio_net_hdr_v1 and one frame. No
 * offloads are offered, so the header carries nothing we need. */
static void transmit(struct net *n)
{
	struct smolvm_virtq_elem e;
	int count = 0;

	while (count < TX_BATCH && smolvm_virtq_pop(&n->vd, TXQ, &e) > 0) {
		count++;
		if (e.out_len >= HDR_LEN + ETH_HLEN && e.out_len <= sizeof(n->txbuf)) {
			size_t len = smolvm_iov_to_buf(e.out, e.nout, 0, n->txbuf, e.out_len);
			slirp_input(n->slirp, n->txbuf + HDR_LEN, (int)(len - HDR_LEN));
		} else {
			n->tx_dropped++;
		}
		smolvm_virtq_push(&n->vd, TXQ, &e, 0);
		n->tx_pushed = 1;
	}
	if (count == TX_BATCH)
		wake(n); /* more may wait: another round after slirp's sockets */
}

static void *net_thread(void *opaque)
{
	struct net *n = opaque;

	for (;;) {
		uint32_t timeout = UINT32_MAX;
		int rc, active;

		pthread_mutex_lock(&n->lock);
		if (n->stop) {
			pthread_mutex_unlock(&n->lock);
			break;
		}
		active = !n->paused;
		n->npfd = 0;
		add_poll(n->wake_fd, SLIRP_POLL_IN, n); /* index 0; the first add cannot fail... */
		if (active) {
			slirp_pollfds_fill(n->slirp, &timeout, add_poll, n);
			timers_timeout(n, &timeout);
		}
		pthread_mutex_unlock(&n->lock);

		if (!n->npfd) { /* ...unless the first allocation failed */
			struct timespec ts = { 0, 10000000 };
			nanosleep(&ts, NULL);
			continue;
		}
		rc = poll(n->pfd, n->npfd, timeout > INT_MAX ? -1 : (int)timeout);
		if (n->pfd[0].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(n->wake_fd, &v, sizeof(v));
			(void)r;
		}
		if (!active)
			continue;

		pthread_mutex_lock(&n->vd.notify_lock);
		pthread_mutex_lock(&n->lock);
		if (!n->paused && !n->stop) {
			n->rx_ok = 1;
			n->rx_pushed = n->tx_pushed = 0;
			slirp_pollfds_poll(n->slirp, rc < 0, get_revents, n);
			timers_run(n);
			transmit(n);
			backlog_flush(n);
			n->rx_ok = 0;
			if (n->tx_pushed)
				smolvm_virtq_notify(&n->vd, TXQ);
			if (n->rx_pushed)
				smolvm_virtq_notify(&n->vd, RXQ);
		}
		pthread_mutex_unlock(&n->lock);
		pthread_mutex_unlock(&n->vd.notify_lock);
	}
	return NULL;
}

/* ---- virtio ---------------------------------------------------------------- */

/* With vd.notify_lock held: the thread does the work. */
static void net_queue_notify(void *dev, uint32_t q)
{
	(void)q;
	wake(dev);
}

static void net_driver_ok(void *dev)
{
	wake(dev);
}

/* The driver or the machine reset the device (vd.notify_lock held). */
static void net_vreset(void *dev)
{
	struct net *n = dev;

	pthread_mutex_lock(&n->lock);
	backlog_drop_all(n);
	pthread_mutex_unlock(&n->lock);
}

static void net_config_read(void *dev, uint32_t off, void *data, uint32_t size)
{
	struct net *n = dev;

	/* The transport checked off + size against config_size. */
	memcpy(data, (const uint8_t *)&n->cfg + off, size);
}

/* The device's hooks (pause, snapshots, destroy), further down. */
static void net_pause(void *dev);
static void net_resume(void *dev);
static int net_save(void *dev, struct smolvm_state_out *o);
static int net_restore(void *dev, struct smolvm_state_in *in, uint32_t version);
static void net_destroy(void *dev);

static const struct smolvm_virtio_ops net_virtio = {
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max_size = QUEUE_SIZE,
	.features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
		    (1ull << VIRTIO_NET_F_MTU),
	/* mac, status, max_virtqueue_pairs (unused: no MQ) and mtu */
	.config_size = offsetof(struct virtio_net_config, speed),
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.reset = net_vreset,
	.driver_ok = net_driver_ok,
	.pause = net_pause,
	.resume = net_resume,
	.save = net_save,
	.restore = net_restore,
	.destroy = net_destroy,
};

/* ---- create / destroy -------------------------------------------------------- */

/* A true/false option, true when absent. */
static int parse_flag(struct net *n, const char *key, int *out)
{
	const char *s = n->api->config_get(n->ctx, key);

	*out = 1;
	if (!s || !strcmp(s, "true") || !strcmp(s, "1"))
		return 0;
	if (!strcmp(s, "false") || !strcmp(s, "0")) {
		*out = 0;
		return 0;
	}
	n->api->set_error(n->ctx, "%s: expected true or false, got \"%s\"", key, s);
	return -EINVAL;
}

static int configure(struct net *n, uint8_t mac[ETH_ALEN], int *has_mac)
{
	const struct smolvm_host_api *api = n->api;
	const char *s;
	char key[32];
	int rc;

	*has_mac = 0;
	if ((s = api->config_get(n->ctx, "mac"))) {
		if ((rc = net_parse_mac(api, n->ctx, "mac", s, mac)))
			return rc;
		*has_mac = 1;
	}
	if ((rc = parse_flag(n, "egress", &n->egress)) ||
	    (rc = parse_flag(n, "host_loopback", &n->host_loopback)))
		return rc;
	n->mtu = 1500;
	if ((s = api->config_get(n->ctx, "mtu"))) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (!isdigit((unsigned char)*s) || *end || v < 68 || v > 65520) {
			api->set_error(n->ctx, "mtu \"%s\": expected 68 to 65520", s);
			return -EINVAL;
		}
		n->mtu = (uint32_t)v;
	}
	s = api->config_get(n->ctx, "net");
	if ((rc = net_parse_network(api, n->ctx, "net", s ? s : "10.0.2.0/24", &n->addrs)))
		return rc;
	/* forward = "..." or forward = { "...", ... } */
	if ((s = api->config_get(n->ctx, "forward"))) {
		if ((rc = net_parse_forward(api, n->ctx, "forward[1]", s, &n->addrs, &n->fwd[0])))
			return rc;
		n->nfwd = 1;
		return 0;
	}
	for (size_t i = 1;; i++) {
		snprintf(key, sizeof(key), "forward[%zu]", i);
		if (!(s = api->config_get(n->ctx, key)))
			break;
		if (n->nfwd == NET_MAX_FORWARDS) {
			api->set_error(n->ctx, "forward: at most %d forwards", NET_MAX_FORWARDS);
			return -EINVAL;
		}
		if ((rc = net_parse_forward(api, n->ctx, key, s, &n->addrs, &n->fwd[n->nfwd])))
			return rc;
		n->nfwd++;
	}
	return 0;
}

/* The default MAC: QEMU's 52:54:00:12:34:56 for the first slot on the
 * virtio-mmio bus, counting up from there (the host API does not tell a
 * plugin its instance index; the slot is as good and stable). */
static void default_mac(struct net *n, uint8_t mac[ETH_ALEN])
{
	uint32_t slot = (uint32_t)(n->vd.base / SMOLVM_VIRTIO_MMIO_SIZE);
	uint32_t low = (0x3456 + slot) & 0xffff;

	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = 0x12;
	mac[4] = (uint8_t)(low >> 8);
	mac[5] = (uint8_t)low;
}

static int start_slirp(struct net *n)
{
	const struct net_addrs *a = &n->addrs;
	SlirpConfig cfg = {
		.version = 4,
		.restricted = !n->egress,
		.in_enabled = true,
		.vnetwork = a->net,
		.vnetmask = a->mask,
		.vhost = a->host,
		.in6_enabled = false,
		.vdhcp_start = a->dhcp,
		.vnameserver = a->dns,
		.if_mtu = n->mtu,
		.if_mru = n->mtu,
		.disable_host_loopback = !n->host_loopback,
	};
	char host[INET_ADDRSTRLEN];

	n->slirp = slirp_new(&cfg, &slirp_cbs, n);
	if (!n->slirp) {
		n->api->set_error(n->ctx, "libslirp %s refused its configuration",
				  slirp_version_string());
		return -EINVAL;
	}
	for (size_t i = 0; i < n->nfwd; i++) {
		const struct net_forward *f = &n->fwd[i];
		errno = 0;
		if (slirp_add_hostfwd(n->slirp, f->udp, f->host_addr, f->host_port,
				      f->guest_addr, f->guest_port) < 0) {
			int err = errno ? errno : EADDRINUSE;
			inet_ntop(AF_INET, &f->host_addr, host, sizeof(host));
			n->api->set_error(n->ctx, "forward[%zu]: cannot listen on %s %s:%u: %s",
					  i + 1, f->udp ? "udp" : "tcp", host, f->host_port,
					  strerror(err));
			return -err;
		}
	}
	return 0;
}

static int start_thread(struct net *n)
{
	sigset_t all, old;
	int rc;

	/* Signals are the main thread's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&n->thread, NULL, net_thread, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		n->api->set_error(n->ctx, "cannot start the network thread: %s", strerror(rc));
		return -rc;
	}
	n->thread_live = 1;
	return 0;
}

/* Stops the thread and lets go of everything but the transport and the
 * instance (the destroy hook). */
static void net_destroy(void *dev)
{
	struct net *n = dev;

	if (n->thread_live) {
		pthread_mutex_lock(&n->lock);
		n->stop = 1;
		pthread_mutex_unlock(&n->lock);
		wake(n);
		pthread_join(n->thread, NULL);
		n->thread_live = 0;
	}
	if (n->slirp)
		slirp_cleanup(n->slirp); /* frees its timers through cb_timer_free */
	n->slirp = NULL;
	while (n->timers) {
		struct net_timer *t = n->timers;
		n->timers = t->next;
		free(t);
	}
	backlog_drop_all(n);
	free(n->pfd);
	n->pfd = NULL;
	if (n->wake_fd >= 0)
		close(n->wake_fd);
	n->wake_fd = -1;
	if (n->lock_live)
		pthread_mutex_destroy(&n->lock);
	n->lock_live = 0;
}

/* A device create() could not finish. */
static void net_free(struct net *n)
{
	net_destroy(n);
	if (n->vd_live)
		smolvm_virtio_cleanup(&n->vd);
	free(n);
}

static int net_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct net *n = calloc(1, sizeof(*n));
	uint8_t mac[ETH_ALEN];
	char net[INET_ADDRSTRLEN];
	int has_mac, rc;

	if (!n)
		return -ENOMEM;
	n->ctx = ctx;
	n->api = api;
	n->wake_fd = -1;
	rc = configure(n, mac, &has_mac);
	if (rc)
		goto fail;
	pthread_mutex_init(&n->lock, NULL);
	n->lock_live = 1;
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0) {
		rc = -errno;
		api->set_error(ctx, "eventfd: %s", strerror(errno));
		goto fail;
	}
	rc = smolvm_virtio_init(&n->vd, ctx, api, &net_virtio, n);
	if (rc)
		goto fail;
	n->vd_live = 1;
	if (!has_mac)
		default_mac(n, mac);
	memcpy(n->cfg.mac, mac, ETH_ALEN);
	n->cfg.status = htole16(VIRTIO_NET_S_LINK_UP);
	n->cfg.mtu = htole16((uint16_t)n->mtu);
	rc = start_slirp(n);
	if (rc)
		goto fail;
	rc = start_thread(n);
	if (rc)
		goto fail;
	inet_ntop(AF_INET, &n->addrs.net, net, sizeof(net));
	api->log(ctx, SMOLVM_LOG_INFO,
		 "mac %02x:%02x:%02x:%02x:%02x:%02x, net %s/%u, mtu %u (libslirp %s), "
		 "%zu forward(s)", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], net,
		 n->addrs.prefix, n->mtu, slirp_version_string(), n->nfwd);
	*out = n;
	return 0;
fail:
	net_free(n);
	return rc;
}

/* Called with vd.notify_lock held. */
static void set_paused(struct net *n, int paused)
{
	pthread_mutex_lock(&n->lock);
	n->paused = paused;
	pthread_mutex_unlock(&n->lock);
	wake(n); /* stop polling slirp's sockets, or look at the queues again */
}

static void net_pause(void *dev) { set_paused(dev, 1); }
static void net_resume(void *dev) { set_paused(dev, 0); }

/* ---- state --------------------------------------------------------------------- */

struct blob {
	uint8_t *buf;
	size_t len, cap, off;
	int failed;
};

static ssize_t blob_write(const void *buf, size_t len, void *opaque)
{
	struct blob *b = opaque;

	if (b->failed)
		return -1;
	if (len > MAX_SLIRP_STATE - b->len) {
		b->failed = -EFBIG;
		return -1;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *p = realloc(b->buf, cap);
		if (!p) {
			b->failed = -ENOMEM;
			return -1;
		}
		b->buf = p;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, buf, len);
	b->len += len;
	return (ssize_t)len;
}

static ssize_t blob_read(void *buf, size_t len, void *opaque)
{
	struct blob *b = opaque;
	size_t left = b->len - b->off;

	if (len > left) {
		b->failed = -EBADMSG; /* slirp wanted more than was saved */
		len = left;
	}
	memcpy(buf, b->buf + b->off, len);
	b->off += len;
	return (ssize_t)len;
}

static void fill_state(const struct net *n, struct net_state *s)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->mac, n->cfg.mac, ETH_ALEN);
	s->network = ntohl(n->addrs.net.s_addr);
	s->prefix = n->addrs.prefix;
	s->mtu = n->mtu;
}

/* slirp's own state (DHCP leases, IP ids) as an optional section "slirp":
 * its format version and length, then the bytes. */
struct slirp_hdr {
	uint32_t version;
	uint32_t len;
};

static const struct smolvm_state_field slirp_fields[] = {
	SMOLVM_FIELD(struct slirp_hdr, version, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct slirp_hdr, len, SMOLVM_STATE_U32, 1),
};

static int save_slirp(struct net *n, struct smolvm_state_out *o)
{
	struct blob b = { 0 };
	struct slirp_hdr h = { .version = (uint32_t)slirp_state_version() };

	pthread_mutex_lock(&n->lock);
	slirp_state_save(n->slirp, blob_write, &b);
	pthread_mutex_unlock(&n->lock);
	if (b.failed || !b.len) {
		free(b.buf);
		return smolvm_state_out_fail(o, b.failed ? b.failed : -EIO,
					     "saving the slirp state: %s",
					     b.failed ? strerror(-b.failed) : "slirp wrote nothing");
	}
	h.len = (uint32_t)b.len;
	smolvm_state_begin_opt(o, "slirp");
	smolvm_state_put_fields(o, slirp_fields, SMOLVM_ARRAY_LEN(slirp_fields), &h);
	smolvm_state_put_bytes(o, "data", b.buf, h.len);
	smolvm_state_end(o);
	free(b.buf);
	return 0;
}

static int restore_slirp(struct net *n, struct smolvm_state_in *in)
{
	struct blob b = { 0 };
	struct slirp_hdr h;
	int missing, rc;

	rc = smolvm_state_enter_opt(in, "slirp", &missing);
	if (rc || missing)
		return rc; /* optional: a fresh stack, the guest asks DHCP again */
	rc = smolvm_state_get_fields(in, slirp_fields, SMOLVM_ARRAY_LEN(slirp_fields), &h, 1);
	if (!rc && (h.version < 1 || h.version > (uint32_t)slirp_state_version() || !h.len ||
		    h.len > MAX_SLIRP_STATE))
		rc = smolvm_state_in_fail(in, -EINVAL, "slirp state version %u, %u bytes: this "
					  "libslirp reads versions 1 to %d, at most %u bytes",
					  h.version, h.len, slirp_state_version(), MAX_SLIRP_STATE);
	if (!rc && !(b.buf = malloc(h.len)))
		rc = smolvm_state_in_fail(in, -ENOMEM, "out of memory");
	if (!rc) {
		b.len = h.len;
		rc = smolvm_state_get(in, "data", SMOLVM_STATE_BYTES, b.buf, h.len);
	}
	smolvm_state_leave(in);
	/* The state starts with the guest-forward sockets, ended by a zero
	 * byte; this device makes none, so anything else is not ours. */
	if (!rc && b.buf[0] != 0)
		rc = smolvm_state_in_fail(in, -EINVAL, "slirp state lists guest-forward sockets "
					  "this device does not have");
	if (!rc) {
		pthread_mutex_lock(&n->lock);
		int lrc = slirp_state_load(n->slirp, (int)h.version, blob_read, &b);
		pthread_mutex_unlock(&n->lock);
		if (lrc < 0 || b.failed || b.off != b.len)
			rc = smolvm_state_in_fail(in, -EINVAL, "slirp state of %u bytes is damaged (%s)",
						  h.len, lrc < 0 ? "refused by libslirp"
						  : b.failed ? "truncated" : "trailing bytes");
	}
	free(b.buf);
	return rc;
}

/* Our facts, the transport's section, then slirp's. */
static int net_save(void *dev, struct smolvm_state_out *o)
{
	struct net *n = dev;
	struct net_state s;

	fill_state(n, &s);
	smolvm_state_put_fields(o, net_fields, SMOLVM_ARRAY_LEN(net_fields), &s);
	smolvm_virtio_put_state(&n->vd, o);
	return save_slirp(n, o);
}

static int net_restore(void *dev, struct smolvm_state_in *in, uint32_t version)
{
	struct net *n = dev;
	struct net_state s, want;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = smolvm_state_get_fields(in, net_fields, SMOLVM_ARRAY_LEN(net_fields), &s, version);
	if (rc)
		return rc;
	fill_state(n, &want);
	if (memcmp(s.mac, want.mac, ETH_ALEN))
		return smolvm_state_in_fail(in, -EINVAL,
					    "snapshot has mac %02x:%02x:%02x:%02x:%02x:%02x, "
					    "this device %02x:%02x:%02x:%02x:%02x:%02x",
					    s.mac[0], s.mac[1], s.mac[2], s.mac[3], s.mac[4], s.mac[5],
					    want.mac[0], want.mac[1], want.mac[2], want.mac[3],
					    want.mac[4], want.mac[5]);
	if (s.network != want.network || s.prefix != want.prefix)
		return smolvm_state_in_fail(in, -EINVAL,
					    "snapshot has net %u.%u.%u.%u/%u, this device "
					    "%u.%u.%u.%u/%u",
					    s.network >> 24, (s.network >> 16) & 255,
					    (s.network >> 8) & 255, s.network & 255, s.prefix,
					    want.network >> 24, (want.network >> 16) & 255,
					    (want.network >> 8) & 255, want.network & 255, want.prefix);
	if (s.mtu != want.mtu)
		return smolvm_state_in_fail(in, -EINVAL, "snapshot has mtu %u, this device %u",
					    s.mtu, want.mtu);
	rc = smolvm_virtio_get_state(&n->vd, in);
	if (rc)
		return rc;
	/* Frames queued for the guest before belong to another timeline. */
	pthread_mutex_lock(&n->lock);
	backlog_drop_all(n);
	pthread_mutex_unlock(&n->lock);
	rc = restore_slirp(n, in);
	wake(n);
	return rc;
}

static const struct smolvm_option net_options[] = {
	{ "mac", SMOLVM_OPT_STRING, 0, "52:54:00:12:34:56 plus the bus slot",
	  "the card's MAC address" },
	{ "net", SMOLVM_OPT_STRING, 0, "10.0.2.0/24",
	  "the guest's network: it gets .15 by DHCP, the host is .2, DNS .3" },
	{ "forward", SMOLVM_OPT_LIST, SMOLVM_OPT_ONE_OR_LIST, NULL,
	  "host ports open to the guest: \"tcp:127.0.0.1:8080-:80\", "
	  "\"udp:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT\"" },
	{ "mtu", SMOLVM_OPT_INT, 0, "1500", "68 to 65520" },
	{ "egress", SMOLVM_OPT_BOOL, 0, "true", "false: nothing outside is reachable" },
	{ "host_loopback", SMOLVM_OPT_BOOL, 0, "true",
	  "the host address (.2) leads to the host's 127.0.0.1" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops net_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct net, net_create, 1, 1, net_options);

SMOLVM_DEVICE_PLUGIN("virtio-net", "1.0.0",
		     "virtio network card with user-mode NAT (libslirp): DHCP, DNS, port forwards",
		     net_ops);
