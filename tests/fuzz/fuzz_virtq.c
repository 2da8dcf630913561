/* Fuzz virtqueue handling: a hostile driver controls guest memory (the
 * descriptor table, the rings, the buffers) and the queue setup. Every
 * buffer the transport hands the device must lie inside guest memory, and
 * popping must end. Guest memory here is a 64 KiB array. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <smolvm/virtio.h>

/* The typed state writer and reader the transport's state uses (fuzz.mk
 * links virtio_mmio.c alone). */
#include "../../sdk/src/state_io.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_SIZE 65536
#include "fake_host.h"

static void f_log(smolvm_ctx *c, enum smolvm_log_level l, const char *f, ...) { (void)c, (void)l, (void)f; }
static void f_err(smolvm_ctx *c, const char *f, ...) { (void)c, (void)f; }

static const struct smolvm_host_api api = {
	.struct_size = sizeof(api), .log = f_log, .set_error = f_err, .guest_ptr = f_ptr,
	.irq_set = f_irq, .io_register = f_io, .resource_alloc = f_res,
	.cmdline_append = f_cmd, .ioeventfd = f_evfd, .irqfd = f_irqfd,
};

static struct smolvm_virtio_dev vd;

static void check_iov(const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		if (iov[i].iov_len && (p < guest || p + iov[i].iov_len > guest + GUEST_SIZE))
			abort(); /* a buffer outside guest memory reached the device */
	}
}

static void notify(void *dev, uint32_t q)
{
	struct smolvm_virtq_elem e;
	unsigned rounds = 0;

	(void)dev;
	while (smolvm_virtq_pop(&vd, q, &e) > 0) {
		check_iov(e.out, e.nout);
		check_iov(e.in, e.nin);
		/* Touch every byte as a device would. */
		for (unsigned i = 0; i < e.nin; i++)
			memset(e.in[i].iov_base, 0xab, e.in[i].iov_len);
		smolvm_virtq_push(&vd, q, &e, (uint32_t)e.in_len);
		if (++rounds > 70000)
			abort(); /* popping must end */
	}
	smolvm_virtq_notify(&vd, q);
}

static const struct smolvm_virtio_ops ops = {
	.device_id = 4, .num_queues = 2, .queue_max_size = 256, .queue_notify = notify,
};

static void wr(uint64_t off, uint32_t v)
{
	mmio->write(mmio_opaque, off, &v, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	uint16_t num;
	uint32_t desc, avail, used;

	if (!inited) {
		if (smolvm_virtio_init(&vd, NULL, &api, &ops, NULL))
			abort();
		inited = 1;
	}
	if (size < 12)
		return 0;
	/* The first bytes pick the queue size and ring addresses (possibly
	 * bad ones), the rest is guest memory. */
	memcpy(&num, data, 2);
	memcpy(&desc, data + 2, 4);
	memcpy(&avail, data + 6, 4);
	memcpy(&used, data + 10, 2);
	used = (used & 0xffff) * 4;
	memset(guest, 0, sizeof(guest));
	memcpy(guest, data + 12, size - 12 < GUEST_SIZE ? size - 12 : GUEST_SIZE);

	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (num & 0x8000) ? (1u << VIRTIO_RING_F_EVENT_IDX) : 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, num & 0x7fff);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, desc % (GUEST_SIZE * 2));
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail % (GUEST_SIZE * 2));
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, used);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 7); /* no such queue */
	return 0;
}
