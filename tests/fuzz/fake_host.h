/* The host API a fuzz target gives the device code it drives: guest memory
 * is the includer's `guest` array of GUEST_SIZE bytes (guest_ptr refuses
 * anything outside it), the device's MMIO registration is captured in
 * `mmio`/`mmio_opaque`, and the rest accepts or declines quietly. The
 * includer defines f_log and f_err and builds its smolvm_host_api from
 * these. */
#ifndef SMOLVM_FUZZ_FAKE_HOST_H
#define SMOLVM_FUZZ_FAKE_HOST_H

#include <errno.h>
#include <stdint.h>
#include <smolvm/plugin.h>

static uint8_t guest[GUEST_SIZE];
static const struct smolvm_io_ops *mmio;
static void *mmio_opaque;

static void *f_ptr(smolvm_ctx *c, uint64_t gpa, uint64_t len)
{
	(void)c;
	return gpa > GUEST_SIZE || len > GUEST_SIZE - gpa ? NULL : guest + gpa;
}
static int f_irq(smolvm_ctx *c, uint32_t g, int l) { (void)c, (void)g, (void)l; return 0; }
static int f_io(smolvm_ctx *c, enum smolvm_space s, uint64_t b, uint64_t l,
		const struct smolvm_io_ops *ops, void *opaque)
{
	(void)c, (void)s, (void)b, (void)l;
	mmio = ops;
	mmio_opaque = opaque;
	return 0;
}
static int f_res(smolvm_ctx *c, uint64_t sz, uint64_t *base, uint32_t *gsi)
{
	(void)c, (void)sz;
	*base = 0xd0000000;
	*gsi = 5;
	return 0;
}
static int f_cmd(smolvm_ctx *c, const char *t) { (void)c, (void)t; return 0; }
static int f_evfd(smolvm_ctx *c, uint64_t g, uint32_t l, uint64_t d, int fd, int a)
{
	(void)c, (void)g, (void)l, (void)d, (void)fd, (void)a;
	return -ENOTSUP;
}
static int f_irqfd(smolvm_ctx *c, uint32_t g, int fd, int a) { (void)c, (void)g, (void)fd, (void)a; return -ENOTSUP; }

#endif
