/* seqrng: an example out-of-tree smolvm virtio device plugin.
 *
 * It presents itself as a virtio entropy device (VIRTIO_ID_RNG, the
 * guest's /dev/hwrng) but hands out a predictable stream instead of
 * randomness: byte k of the stream is (start + k) mod 256. That makes it
 * useless as entropy and good as a demonstration: a test can tell exactly
 * which bytes the guest should see, and that the stream goes on where it
 * stopped after a snapshot is restored (the stream position is the
 * device's state, saved next to the virtio transport's).
 *
 * The virtio-mmio transport (registers, feature negotiation, virtqueues
 * with every descriptor checked) is the SDK's libsmolvm-sdk.a: this file
 * is only the device logic.
 *
 * State versions (build with -DEXAMPLE_STATE_VERSION=1 or 2, the default):
 * version 1 saves the position; version 2 adds the number of requests
 * served. A version-2 build restores version-1 state (the count starts
 * from 0); a version-1 build refuses version-2 state.
 *
 * Build (only the installed SDK is needed):
 *   cc -std=c11 -D_GNU_SOURCE -shared -fPIC -fvisibility=hidden \
 *      $(pkg-config --cflags smolvm-plugin) seqrng.c -o seqrng.so \
 *      $(pkg-config --libs smolvm-plugin)
 * Use: devices = { { type = "uart" }, { type = "seqrng", start = 0x40 } }
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ids.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

#ifndef EXAMPLE_STATE_VERSION
#define EXAMPLE_STATE_VERSION 2
#endif
#if EXAMPLE_STATE_VERSION != 1 && EXAMPLE_STATE_VERSION != 2
#error "EXAMPLE_STATE_VERSION must be 1 or 2"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
#define SEQRNG_VERSION STR(EXAMPLE_STATE_VERSION) ".0.0"

/* Saved state: the stream. */
struct seq_state {
	uint64_t pos;    /* bytes handed out so far */
	uint64_t served; /* requests that got bytes (state version 2) */
};

struct seqrng {
	struct smolvm_virtio_dev vd; /* the transport's part of the instance */
	struct seq_state st;         /* touched only in queue_notify, save and restore */
	uint8_t start;               /* configuration, not state */
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
};

static const struct smolvm_state_field seq_fields[] = {
	SMOLVM_FIELD(struct seq_state, pos, SMOLVM_STATE_U64, 1),
#if EXAMPLE_STATE_VERSION >= 2
	SMOLVM_FIELD(struct seq_state, served, SMOLVM_STATE_U64, 2),
#endif
};

/* The guest queued buffers. The transport calls this on a vCPU thread or
 * the event loop, never twice at once for one device. */
static void seq_notify(void *dev, uint32_t q)
{
	struct seqrng *s = dev;
	struct smolvm_virtq_elem e;
	uint8_t buf[256];

	while (smolvm_virtq_pop(&s->vd, q, &e) > 0) {
		uint64_t done = 0;

		while (done < e.in_len) {
			size_t n = e.in_len - done < sizeof(buf) ? (size_t)(e.in_len - done) : sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)(s->start + s->st.pos + done + i);
			smolvm_iov_from_buf(e.in, e.nin, done, buf, n);
			done += n;
		}
		s->st.pos += done;
		if (done)
			s->st.served++;
		smolvm_virtq_push(&s->vd, q, &e, (uint32_t)done);
	}
	smolvm_virtq_notify(&s->vd, q);
}

static const struct smolvm_virtio_ops seq_virtio = {
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = 64,
	.queue_notify = seq_notify,
};

static int seq_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	const char *v = api->config_get(ctx, "start");
	unsigned long start = 0;
	struct seqrng *s;
	char *end;
	int rc;

	if (v) {
		errno = 0;
		start = strtoul(v, &end, 0);
		if (errno || *end || end == v || start > 255) {
			api->set_error(ctx, "start: expected a byte value (0..255), got \"%s\"", v);
			return -EINVAL;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->api = api;
	s->start = (uint8_t)start;
	/* Claims an MMIO window and an IRQ, tells the guest kernel about it. */
	rc = smolvm_virtio_init(&s->vd, ctx, api, &seq_virtio, s);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void seq_destroy(void *dev)
{
	struct seqrng *s = dev;

	s->api->log(s->ctx, SMOLVM_LOG_DEBUG, "%llu bytes in %llu requests",
		    (unsigned long long)s->st.pos, (unsigned long long)s->st.served);
	smolvm_virtio_cleanup(&s->vd);
	free(s);
}

/* Machine reset: the transport goes back to its state after init, the
 * stream to its beginning. */
static void seq_reset(void *dev)
{
	struct seqrng *s = dev;

	smolvm_virtio_reset(&s->vd);
	memset(&s->st, 0, sizeof(s->st));
}

/* Called with the machine paused: no queue_notify runs meanwhile. */
static int seq_save(void *dev, struct smolvm_state_writer *w)
{
	struct seqrng *s = dev;
	int rc;

	rc = smolvm_state_save_fields(s->api, w, seq_fields, SMOLVM_ARRAY_LEN(seq_fields), &s->st);
	if (!rc)
		rc = smolvm_virtio_save(&s->vd, w); /* section "virtio" */
	return rc;
}

static int seq_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	struct seqrng *s = dev;
	struct seq_state tmp = { 0 }; /* served stays 0 for version-1 state */
	int rc;

	rc = smolvm_state_load_fields(s->api, r, seq_fields, SMOLVM_ARRAY_LEN(seq_fields),
				      &tmp, version);
	if (rc) {
		s->api->set_error(s->ctx, "state version %u: %s", version,
				  rc == -ENOENT ? "a field is missing" : "unreadable");
		return rc;
	}
	if (tmp.served > tmp.pos) {
		/* Each request counted got at least one byte: hostile input. */
		s->api->set_error(s->ctx, "%llu requests served but only %llu bytes",
				  (unsigned long long)tmp.served, (unsigned long long)tmp.pos);
		return -EINVAL;
	}
	rc = smolvm_virtio_restore(&s->vd, r); /* validates the rings itself */
	if (rc)
		return rc;
	s->st = tmp;
	s->api->log(s->ctx, SMOLVM_LOG_INFO,
		    "seqrng %s restored state version %u: position %llu, %llu requests",
		    SEQRNG_VERSION, version, (unsigned long long)tmp.pos,
		    (unsigned long long)tmp.served);
	return 0;
}

static const struct smolvm_option seq_options[] = {
	{ "start", SMOLVM_OPT_INT, 0, "0", "the stream's first byte (0..255)" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops seq_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = EXAMPLE_STATE_VERSION,
	.min_state_version = 1,
	.create = seq_create,
	.destroy = seq_destroy,
	.reset = seq_reset,
	.save = seq_save,
	.restore = seq_restore,
	.options = seq_options,
};

SMOLVM_DEVICE_PLUGIN("seqrng", SEQRNG_VERSION,
		     "example: virtio entropy device with a predictable byte stream", seq_ops);
