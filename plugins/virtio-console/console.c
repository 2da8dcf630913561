/* virtio-console: the guest's /dev/hvc0 (virtio 1.2, section 5.3), one
 * console port. Queue 0 (receiveq) carries console input to the guest,
 * queue 1 (transmitq) the guest's output to the VM console.
 *
 * Options:
 *   input = true | false   whether this device takes the console's input.
 *                          Absent ("auto"): take it when no earlier device
 *                          has; otherwise /dev/hvc0 is output only and a
 *                          warning says so. true: failing that is an error.
 *                          false: output only, silently.
 *
 * Input is only sent while the guest listens, like the UART's. Linux
 * throws away whatever reaches port 0 before its console is set up (it
 * posts receive buffers first), and without MULTIPORT nothing tells the
 * device when that is done. So MULTIPORT is offered with one port, for its
 * control queues (2: device->driver, 3: driver->device): the driver says
 * DEVICE_READY, we add port 0, it says PORT_READY, we make it the console
 * and give its size, it says PORT_OPEN once its hvc console exists; input
 * flows from then on. A driver without MULTIPORT gets input from DRIVER_OK
 * (what the specification allows) and the size from the configuration
 * space, announced with a configuration-change interrupt (Linux reads it
 * only then). The size is 80x25.
 *
 * The device holds no input of its own: the core keeps what the device has
 * not taken and offers it again after console_kick(), which this device
 * calls when the driver posts receive buffers or starts listening.
 *
 * Locking: queue_notify runs with the transport's notify_lock held (vCPU
 * thread or event loop). Console input arrives on the event loop at any
 * time, so rx(), pause() and resume() take the same notify_lock: all queue
 * work is serialised, also against a device reset, which rebuilds the
 * queues under that lock, and nothing touches a queue once pause() has
 * returned. c->lock guards this device's own fields. Lock order:
 * notify_lock, c->lock, the transport's vd.lock. The transport calls
 * config_read under vd.lock, so it takes no lock of ours: cols and rows
 * change (at restore) only under both c->lock and vd.lock.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

enum { RXQ = 0, TXQ = 1, CTL_RXQ = 2, CTL_TXQ = 3, NUM_QUEUES = 4 };

#define QUEUE_SIZE 64
#define DEFAULT_COLS 80
#define DEFAULT_ROWS 25

/* Control messages to the driver wait here for a buffer: a header
 * (struct virtio_console_control) and, for RESIZE, cols and rows. */
#define CTL_HDR 8
#define CTL_SLOT 12
#define CTL_MAX 8

enum input_mode { INPUT_AUTO, INPUT_ON, INPUT_OFF };

/* Guest-visible state of our own, saved as named fields; the transport
 * saves its registers and queues itself. */
struct vcon_state {
	uint16_t cols, rows; /* console size */
	uint8_t listening;   /* the driver takes input on port 0 */
	uint8_t ctl_len;     /* control messages waiting in ctl */
	uint8_t ctl[CTL_MAX * CTL_SLOT];
};

static const struct smolvm_state_field vcon_fields[] = {
	SMOLVM_FIELD(struct vcon_state, cols, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct vcon_state, rows, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct vcon_state, listening, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct vcon_state, ctl_len, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct vcon_state, ctl, SMOLVM_STATE_BYTES, 1),
};

struct vcon {
	struct smolvm_virtio_dev vd; /* first: SMOLVM_VIRTIO_DEVICE_OPS */
	struct vcon_state st;
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	pthread_mutex_t lock;
	int attached;    /* console input comes to us */
	int paused;
	int tx_deferred; /* transmit work arrived while paused */
	int ctl_dropped; /* said so once */
};

static int multiport(struct vcon *c)
{
	pthread_mutex_lock(&c->vd.lock);
	uint64_t f = c->vd.driver_features;
	pthread_mutex_unlock(&c->vd.lock);
	return !!(f & (1ull << VIRTIO_CONSOLE_F_MULTIPORT));
}

/* ---- guest output ------------------------------------------------------- */

/* Called with notify_lock held. */
static void drain_tx(struct vcon *c)
{
	struct smolvm_virtq_elem e;

	while (smolvm_virtq_pop(&c->vd, TXQ, &e) > 0) {
		for (unsigned i = 0; i < e.nout; i++)
			if (e.out[i].iov_len)
				c->api->console_write(c->ctx, e.out[i].iov_base,
						      e.out[i].iov_len);
		smolvm_virtq_push(&c->vd, TXQ, &e, 0);
	}
	smolvm_virtq_notify(&c->vd, TXQ);
}

/* ---- console input ------------------------------------------------------ */

static int input_open(struct vcon *c)
{
	pthread_mutex_lock(&c->lock);
	int ok = c->attached && !c->paused && c->st.listening;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/* Fills receive buffers from `buf`; returns the bytes taken. Called with
 * notify_lock held. */
static size_t fill_rx(struct vcon *c, const uint8_t *buf, size_t len)
{
	struct smolvm_virtq_elem e;
	size_t done = 0;

	if (!input_open(c))
		return 0;
	while (done < len && smolvm_virtq_pop(&c->vd, RXQ, &e) > 0) {
		size_t n = smolvm_iov_from_buf(e.in, e.nin, 0, buf + done, len - done);
		smolvm_virtq_push(&c->vd, RXQ, &e, (uint32_t)n);
		done += n;
	}
	if (done)
		smolvm_virtq_notify(&c->vd, RXQ);
	return done;
}

/* Console input, on the event-loop thread. */
static size_t vcon_rx(void *opaque, const uint8_t *buf, size_t len)
{
	struct vcon *c = opaque;
	size_t n;

	pthread_mutex_lock(&c->vd.notify_lock);
	n = fill_rx(c, buf, len);
	pthread_mutex_unlock(&c->vd.notify_lock);
	return n;
}

/* Ask the core to offer held-back input again (it does so on the loop). */
static void want_input(struct vcon *c)
{
	if (input_open(c))
		c->api->console_kick(c->ctx);
}

/* ---- control queues (MULTIPORT) ----------------------------------------- */

static uint32_t ctl_size(const uint8_t *slot)
{
	uint16_t event = (uint16_t)(slot[4] | slot[5] << 8);

	return event == VIRTIO_CONSOLE_RESIZE ? CTL_SLOT : CTL_HDR;
}

/* Sends queued control messages while the driver has buffers for them.
 * Called with notify_lock held. */
static void flush_ctl(struct vcon *c)
{
	struct smolvm_virtq_elem e;
	int sent = 0;

	pthread_mutex_lock(&c->lock);
	while (c->st.ctl_len && !c->paused && smolvm_virtq_pop(&c->vd, CTL_RXQ, &e) > 0) {
		uint32_t n = ctl_size(c->st.ctl);
		if (e.in_len >= n)
			smolvm_iov_from_buf(e.in, e.nin, 0, c->st.ctl, n);
		else
			n = 0; /* a buffer too small for it: the driver's loss */
		smolvm_virtq_push(&c->vd, CTL_RXQ, &e, n);
		c->st.ctl_len--;
		memmove(c->st.ctl, c->st.ctl + CTL_SLOT, (size_t)c->st.ctl_len * CTL_SLOT);
		sent = 1;
	}
	pthread_mutex_unlock(&c->lock);
	if (sent)
		smolvm_virtq_notify(&c->vd, CTL_RXQ);
}

static void queue_ctl(struct vcon *c, uint16_t event, uint16_t value)
{
	uint8_t *m;

	pthread_mutex_lock(&c->lock);
	if (c->st.ctl_len == CTL_MAX) {
		int first = !c->ctl_dropped;
		c->ctl_dropped = 1;
		pthread_mutex_unlock(&c->lock);
		if (first)
			c->api->log(c->ctx, SMOLVM_LOG_WARN,
				    "the driver takes no control messages; dropping them");
		return;
	}
	m = c->st.ctl + (size_t)c->st.ctl_len++ * CTL_SLOT;
	memset(m, 0, CTL_SLOT); /* port id 0 */
	m[4] = (uint8_t)event;
	m[5] = (uint8_t)(event >> 8);
	m[6] = (uint8_t)value;
	m[7] = (uint8_t)(value >> 8);
	if (event == VIRTIO_CONSOLE_RESIZE) {
		m[8] = (uint8_t)c->st.cols;
		m[9] = (uint8_t)(c->st.cols >> 8);
		m[10] = (uint8_t)c->st.rows;
		m[11] = (uint8_t)(c->st.rows >> 8);
	}
	pthread_mutex_unlock(&c->lock);
}

static void set_listening(struct vcon *c, int on)
{
	pthread_mutex_lock(&c->lock);
	c->st.listening = (uint8_t)on;
	pthread_mutex_unlock(&c->lock);
	if (on)
		want_input(c);
}

/* One message from the driver. */
static void handle_ctl(struct vcon *c, const struct virtio_console_control *m)
{
	uint32_t id = le32toh(m->id);
	uint16_t event = le16toh(m->event), value = le16toh(m->value);

	switch (event) {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if (value)
			queue_ctl(c, VIRTIO_CONSOLE_PORT_ADD, 0);
		else
			c->api->log(c->ctx, SMOLVM_LOG_WARN, "the driver failed to set up");
		break;
	case VIRTIO_CONSOLE_PORT_READY:
		if (id != 0)
			break;
		if (!value) {
			c->api->log(c->ctx, SMOLVM_LOG_WARN, "the driver failed to add port 0");
			break;
		}
		queue_ctl(c, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
		queue_ctl(c, VIRTIO_CONSOLE_RESIZE, 0);
		queue_ctl(c, VIRTIO_CONSOLE_PORT_OPEN, 1); /* the host end is open */
		break;
	case VIRTIO_CONSOLE_PORT_OPEN:
		if (id == 0)
			set_listening(c, !!value);
		break;
	default:
		break; /* nothing else goes from driver to device */
	}
}

/* Called with notify_lock held. */
static void drain_ctl(struct vcon *c)
{
	struct smolvm_virtq_elem e;
	struct virtio_console_control m;

	while (smolvm_virtq_pop(&c->vd, CTL_TXQ, &e) > 0) {
		if (smolvm_iov_to_buf(e.out, e.nout, 0, &m, sizeof(m)) == sizeof(m))
			handle_ctl(c, &m);
		smolvm_virtq_push(&c->vd, CTL_TXQ, &e, 0);
	}
	smolvm_virtq_notify(&c->vd, CTL_TXQ);
	flush_ctl(c);
}

/* ---- transport hooks ---------------------------------------------------- */

/* All transmit-side work: guest output and driver control messages. */
static void tx_work(struct vcon *c)
{
	pthread_mutex_lock(&c->lock);
	int paused = c->paused;
	c->tx_deferred = paused;
	pthread_mutex_unlock(&c->lock);
	if (paused)
		return;
	drain_tx(c);
	if (multiport(c))
		drain_ctl(c);
}

static void vcon_notify(void *dev, uint32_t q)
{
	struct vcon *c = dev;

	switch (q) {
	case RXQ:
		want_input(c); /* new receive buffers: room for more input */
		break;
	case TXQ:
	case CTL_TXQ:
		tx_work(c);
		break;
	case CTL_RXQ:
		flush_ctl(c);
		break;
	}
}

static void vcon_driver_ok(void *dev)
{
	struct vcon *c = dev;

	if (multiport(c))
		return; /* the control queues take it from here */
	/* Linux reads cols/rows only when told the configuration changed. */
	smolvm_virtio_config_changed(&c->vd);
	set_listening(c, 1);
}

static void vcon_virtio_reset(void *dev)
{
	struct vcon *c = dev;

	pthread_mutex_lock(&c->lock);
	c->tx_deferred = 0;
	c->st.listening = 0;
	c->st.ctl_len = 0;
	pthread_mutex_unlock(&c->lock);
}

static void vcon_config_read(void *dev, uint32_t off, void *data, uint32_t size)
{
	struct vcon *c = dev;
	uint8_t cfg[sizeof(struct virtio_console_config)] = { 0 };

	/* Little-endian: cols, rows, max_nr_ports (1), emerg_wr (reads 0).
	 * Called under vd.lock, which guards cols and rows here. */
	cfg[0] = (uint8_t)c->st.cols;
	cfg[1] = (uint8_t)(c->st.cols >> 8);
	cfg[2] = (uint8_t)c->st.rows;
	cfg[3] = (uint8_t)(c->st.rows >> 8);
	cfg[4] = 1;
	if (off < sizeof(cfg) && size <= sizeof(cfg) - off)
		memcpy(data, cfg + off, size);
}

/* The machine pauses: nothing more reaches the queues until resume (the
 * transport holds the driver's kicks back meanwhile). */
static void vcon_pause(void *dev)
{
	struct vcon *c = dev;

	pthread_mutex_lock(&c->lock);
	c->paused = 1;
	pthread_mutex_unlock(&c->lock);
}

static void vcon_resume(void *dev)
{
	struct vcon *c = dev;

	pthread_mutex_lock(&c->lock);
	c->paused = 0;
	int tx = c->tx_deferred;
	pthread_mutex_unlock(&c->lock);
	if (tx)
		tx_work(c);
	flush_ctl(c);
	want_input(c);
}

/* The transport's section, then ours. */
static int vcon_save(void *dev, struct smolvm_state_out *o)
{
	struct vcon *c = dev;

	smolvm_virtio_put_state(&c->vd, o);
	pthread_mutex_lock(&c->lock);
	smolvm_state_put_fields(o, vcon_fields, SMOLVM_ARRAY_LEN(vcon_fields), &c->st);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* A saved control message must be one this device could have queued. */
static int ctl_valid(const uint8_t *m)
{
	uint16_t event = (uint16_t)(m[4] | m[5] << 8);

	if (m[0] || m[1] || m[2] || m[3])
		return 0; /* port 0 only */
	return event == VIRTIO_CONSOLE_PORT_ADD || event == VIRTIO_CONSOLE_CONSOLE_PORT ||
	       event == VIRTIO_CONSOLE_RESIZE || event == VIRTIO_CONSOLE_PORT_OPEN;
}

static int vcon_restore(void *dev, struct smolvm_state_in *in, uint32_t version)
{
	struct vcon *c = dev;
	struct vcon_state tmp;
	int rc;

	rc = smolvm_virtio_get_state(&c->vd, in);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	tmp = c->st;
	rc = smolvm_state_get_fields(in, vcon_fields, SMOLVM_ARRAY_LEN(vcon_fields), &tmp,
				     version);
	if (!rc && (!tmp.cols || !tmp.rows))
		rc = smolvm_state_in_fail(in, -EINVAL, "console size %ux%u: out of range",
					  tmp.cols, tmp.rows);
	if (!rc && (tmp.listening > 1 || tmp.ctl_len > CTL_MAX))
		rc = smolvm_state_in_fail(in, -EINVAL,
					  "listening %u, %u control messages: out of range",
					  tmp.listening, tmp.ctl_len);
	for (unsigned i = 0; !rc && i < tmp.ctl_len; i++)
		if (!ctl_valid(tmp.ctl + i * CTL_SLOT))
			rc = smolvm_state_in_fail(in, -EINVAL,
						  "control message %u: not one this device sends", i);
	if (!rc) {
		pthread_mutex_lock(&c->vd.lock);
		c->st = tmp;
		pthread_mutex_unlock(&c->vd.lock);
		/* What the guest queued before the snapshot is taken up at
		 * resume(). */
		c->tx_deferred = 1;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void vcon_destroy(void *dev)
{
	struct vcon *c = dev;

	pthread_mutex_destroy(&c->lock);
}

static const struct smolvm_virtio_ops vcon_virtio = {
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = NUM_QUEUES,
	.queue_max_size = QUEUE_SIZE,
	.features = (1ull << VIRTIO_CONSOLE_F_SIZE) | (1ull << VIRTIO_CONSOLE_F_MULTIPORT),
	.config_size = sizeof(struct virtio_console_config),
	.config_read = vcon_config_read,
	.queue_notify = vcon_notify,
	.reset = vcon_virtio_reset,
	.driver_ok = vcon_driver_ok,
	.pause = vcon_pause,
	.resume = vcon_resume,
	.save = vcon_save,
	.restore = vcon_restore,
	.destroy = vcon_destroy,
};

/* ---- device ops --------------------------------------------------------- */

static int parse_input(const struct smolvm_host_api *api, smolvm_ctx *ctx,
		       enum input_mode *mode)
{
	const char *s = api->config_get(ctx, "input");

	*mode = INPUT_AUTO;
	if (!s)
		return 0;
	if (!strcmp(s, "true") || !strcmp(s, "1")) {
		*mode = INPUT_ON;
	} else if (!strcmp(s, "false") || !strcmp(s, "0")) {
		*mode = INPUT_OFF;
	} else {
		api->set_error(ctx, "input: expected true or false, got \"%s\"", s);
		return -EINVAL;
	}
	return 0;
}

static int attach_input(struct vcon *c, enum input_mode mode)
{
	int rc;

	if (mode == INPUT_OFF)
		return 0;
	rc = c->api->console_attach(c->ctx, vcon_rx, c);
	if (rc == 0) {
		c->attached = 1;
		return 0;
	}
	if (rc != -EBUSY || mode == INPUT_ON)
		return rc; /* console_attach has set the error */
	c->api->log(c->ctx, SMOLVM_LOG_WARN,
		    "console input goes to an earlier device; /dev/hvc0 is output only "
		    "(input = false silences this)");
	return 0;
}

static int vcon_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct vcon *c;
	enum input_mode mode;
	int rc;

	rc = parse_input(api, ctx, &mode);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ctx = ctx;
	c->api = api;
	c->st.cols = DEFAULT_COLS;
	c->st.rows = DEFAULT_ROWS;
	pthread_mutex_init(&c->lock, NULL);
	rc = smolvm_virtio_init(&c->vd, ctx, api, &vcon_virtio, c);
	if (rc)
		goto fail;
	rc = attach_input(c, mode);
	if (rc) {
		smolvm_virtio_cleanup(&c->vd);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	pthread_mutex_destroy(&c->lock);
	free(c);
	return rc;
}

static const struct smolvm_option vcon_options[] = {
	{ "input", SMOLVM_OPT_BOOL, 0, "auto",
	  "take the console's input (auto: unless an earlier device has it)" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops vcon_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct vcon, vcon_create, 1, 1, vcon_options);

SMOLVM_DEVICE_PLUGIN("virtio-console", "1.0.0", "virtio console (/dev/hvc0)", vcon_ops);
