/* virtio-rng: the guest's /dev/hwrng, filled from the host's getrandom(). */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include <linux/virtio_ids.h>
#include <smolvm/virtio.h>

struct rng {
	struct smolvm_virtio_dev vd; /* first: SMOLVM_VIRTIO_DEVICE_OPS */
};

static void rng_notify(void *dev, uint32_t q)
{
	struct rng *r = dev;
	struct smolvm_virtq_elem e;
	unsigned char buf[4096];

	while (smolvm_virtq_pop(&r->vd, q, &e) > 0) {
		uint32_t done = 0;
		/* Fill the whole request, in page-sized helpings. */
		while (done < e.in_len) {
			size_t want = e.in_len - done < sizeof(buf) ? e.in_len - done : sizeof(buf);
			ssize_t n = getrandom(buf, want, 0);
			if (n <= 0)
				break;
			smolvm_iov_from_buf(e.in, e.nin, done, buf, (size_t)n);
			done += (uint32_t)n;
		}
		smolvm_virtq_push(&r->vd, q, &e, done);
	}
	smolvm_virtq_notify(&r->vd, q);
}

static const struct smolvm_virtio_ops rng_virtio = {
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = 64,
	.queue_notify = rng_notify,
};

static int rng_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct rng *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = smolvm_virtio_init(&r->vd, ctx, api, &rng_virtio, r);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* It takes no options. */
static const struct smolvm_option rng_options[] = {
	{ NULL, 0, 0, NULL, NULL },
};

/* The transport does the rest: its state is all there is to save. */
static const struct smolvm_device_ops rng_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct rng, rng_create, 1, 1, rng_options);

SMOLVM_DEVICE_PLUGIN("virtio-rng", "1.0.0", "virtio entropy source (host getrandom)", rng_ops);
