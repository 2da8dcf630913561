/* plugins/uart/uart.c (compiled in): register behaviour seen through a
 * fake host, and save/restore through core/state.c into a fresh
 * instance, with hostile states refused; and the SDK's typed state writer
 * and reader that uart.c uses (sdk/src/state_io.c), over the same buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "machine/state.h"
#include "unit.h"

#include <smolvm/state.h>

/* uart.c saves and restores through the SDK's typed writer and reader (in
 * libsmolvm-sdk.a for the plugin): compiled in here for the runner. */
#include "../../sdk/src/state_io.c"

/* The uart plugin's descriptor, linked in from plugins/uart/uart.c. */
extern const struct smolvm_plugin smolvm_plugin_v1;

enum { RBR = 0, THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

/* One fake host per instance; the smolvm_ctx handed to the plugin. */
struct fake {
	const char *cfg[4][2];
	/* what the device registered */
	int nregions;
	enum smolvm_space space;
	uint64_t base, len;
	const struct smolvm_io_ops *io;
	void *io_opaque;
	smolvm_console_rx rx;
	void *rx_opaque;
	int attach_calls;
	/* what the device did */
	int irq_calls, irq_level;
	uint32_t irq_gsi;
	int kicks;
	char out[256];
	size_t out_len;
	char error[512];
	void *dev;
};

#define FAKE(ctx) ((struct fake *)(void *)(ctx))

static void f_log(smolvm_ctx *ctx, enum smolvm_log_level level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	(void)fmt;
}

static void f_set_error(smolvm_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(FAKE(ctx)->error, sizeof(FAKE(ctx)->error), fmt, ap);
	va_end(ap);
}

static const char *f_config_get(smolvm_ctx *ctx, const char *key)
{
	for (int i = 0; i < 4 && FAKE(ctx)->cfg[i][0]; i++)
		if (!strcmp(FAKE(ctx)->cfg[i][0], key))
			return FAKE(ctx)->cfg[i][1];
	return NULL;
}

static int f_irq_set(smolvm_ctx *ctx, uint32_t gsi, int level)
{
	FAKE(ctx)->irq_calls++;
	FAKE(ctx)->irq_gsi = gsi;
	FAKE(ctx)->irq_level = level;
	return 0;
}

static int f_io_register(smolvm_ctx *ctx, enum smolvm_space space, uint64_t base,
			 uint64_t len, const struct smolvm_io_ops *ops, void *opaque)
{
	struct fake *f = FAKE(ctx);

	f->nregions++;
	f->space = space;
	f->base = base;
	f->len = len;
	f->io = ops;
	f->io_opaque = opaque;
	return 0;
}

static int f_console_write(smolvm_ctx *ctx, const void *buf, size_t len)
{
	struct fake *f = FAKE(ctx);

	if (f->out_len + len <= sizeof(f->out)) {
		memcpy(f->out + f->out_len, buf, len);
		f->out_len += len;
	}
	return 0;
}

static int f_console_attach(smolvm_ctx *ctx, smolvm_console_rx rx, void *opaque)
{
	FAKE(ctx)->attach_calls++;
	FAKE(ctx)->rx = rx;
	FAKE(ctx)->rx_opaque = opaque;
	return 0;
}

static void f_console_kick(smolvm_ctx *ctx)
{
	FAKE(ctx)->kicks++;
}

static const struct smolvm_host_api api = {
	.struct_size = sizeof(struct smolvm_host_api),
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR,
	.log = f_log,
	.set_error = f_set_error,
	.config_get = f_config_get,
	.irq_set = f_irq_set,
	.io_register = f_io_register,
	.console_write = f_console_write,
	.console_attach = f_console_attach,
	.console_kick = f_console_kick,
	.state_put = state_put,
	.state_get = state_get,
	.state_begin = state_begin,
	.state_end = state_end,
	.state_enter = state_enter,
	.state_leave = state_leave,
};

static const struct smolvm_device_ops *ops;
static struct fake a, b;
static struct smolvm_state_writer w;
static struct smolvm_state_reader r;

static void create(struct fake *f)
{
	int rc = ops->create((smolvm_ctx *)(void *)f, &api, &f->dev);
	ck_assert_msg(rc == 0, "create: %d %s", rc, f->error);
	ck_assert_ptr_nonnull(f->io);
	ck_assert_ptr_nonnull(f->rx);
}

static void setup(void)
{
	ck_assert_str_eq(smolvm_plugin_v1.name, "uart");
	ops = smolvm_plugin_v1.ops;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	state_writer_init(&w);
	memset(&r, 0, sizeof(r));
}

static void teardown(void)
{
	if (a.dev)
		ops->destroy(a.dev);
	if (b.dev)
		ops->destroy(b.dev);
	a.dev = b.dev = NULL;
	state_writer_free(&w);
	state_reader_free(&r);
}

static uint8_t rd(struct fake *f, uint64_t off)
{
	uint8_t v = 0x55;
	f->io->read(f->io_opaque, off, &v, 1);
	return v;
}

static void wr(struct fake *f, uint64_t off, uint8_t v)
{
	f->io->write(f->io_opaque, off, &v, 1);
}

static size_t type(struct fake *f, const char *s)
{
	return f->rx(f->rx_opaque, (const uint8_t *)s, strlen(s));
}

/* What Linux's 8250 driver leaves behind once the console is open. */
static void guest_listens(struct fake *f)
{
	wr(f, LCR, 0x80);     /* DLAB */
	wr(f, RBR, 0x01);     /* 115200 */
	wr(f, IER, 0x00);
	wr(f, LCR, 0x03);     /* 8n1 */
	wr(f, FCR, 0x07);     /* FIFO on, cleared */
	wr(f, MCR, 0x0b);     /* DTR RTS OUT2 */
	wr(f, IER, 0x05);     /* RDI + RLSI */
	wr(f, SCR, 0x5a);
}

/* ---- registers ----------------------------------------------------------- */

START_TEST(test_create_defaults)
{
	create(&a);
	ck_assert_int_eq(a.space, SMOLVM_SPACE_PIO);
	ck_assert_uint_eq(a.base, 0x3f8);
	ck_assert_uint_eq(a.len, 8);
	ck_assert_int_eq(a.attach_calls, 1);
	ck_assert_uint_eq(rd(&a, LCR), 0x03);
	ck_assert_uint_eq(rd(&a, IER), 0x00);
	ck_assert_uint_eq(rd(&a, LSR), 0x60); /* THRE | TEMT, no data */
	ck_assert_uint_eq(rd(&a, IIR) & 0x0f, 0x01); /* no interrupt */
}
END_TEST

START_TEST(test_config)
{
	a.cfg[0][0] = "port";
	a.cfg[0][1] = "0x2f8";
	a.cfg[1][0] = "irq";
	a.cfg[1][1] = "3";
	create(&a);
	ck_assert_uint_eq(a.base, 0x2f8);
	guest_listens(&a);
	ck_assert_uint_eq(type(&a, "x"), 1);
	ck_assert_uint_eq(a.irq_gsi, 3);
	ck_assert_int_eq(a.irq_level, 1);

	b.cfg[0][0] = "irq";
	b.cfg[0][1] = "24";
	ck_assert_int_eq(ops->create((smolvm_ctx *)(void *)&b, &api, &b.dev), -EINVAL);
	ck_assert_str_contains(b.error, "irq");
	ck_assert_ptr_null(b.dev);
	b.cfg[0][0] = "port";
	b.cfg[0][1] = "com1";
	ck_assert_int_eq(ops->create((smolvm_ctx *)(void *)&b, &api, &b.dev), -EINVAL);
	ck_assert_str_contains(b.error, "port");
}
END_TEST

START_TEST(test_rx_only_when_listening)
{
	create(&a);
	/* Nothing is taken before the driver enables RDI with OUT2. */
	ck_assert_uint_eq(type(&a, "early"), 0);
	wr(&a, IER, 0x01);
	ck_assert_uint_eq(type(&a, "early"), 0);
	ck_assert_int_eq(a.kicks, 0);
	wr(&a, MCR, 0x08);
	ck_assert_int_eq(a.kicks, 1); /* the core is asked to deliver again */
	ck_assert_uint_eq(type(&a, "hi"), 2);
	ck_assert_int_eq(a.irq_level, 1);
	ck_assert_uint_eq(rd(&a, IIR) & 0x0f, 0x04);
	ck_assert_uint_eq(rd(&a, LSR) & 1, 1);
	ck_assert_uint_eq(rd(&a, RBR), 'h');
	ck_assert_uint_eq(rd(&a, RBR), 'i');
	ck_assert_uint_eq(rd(&a, LSR) & 1, 0);
	ck_assert_int_eq(a.irq_level, 0);
	ck_assert_int_eq(a.kicks, 2); /* FIFO drained: room again */
	/* 16 bytes fit, the rest waits in the core. */
	ck_assert_uint_eq(type(&a, "0123456789abcdefXYZ"), 16);
}
END_TEST

START_TEST(test_tx)
{
	create(&a);
	wr(&a, THR, 'o');
	wr(&a, THR, 'k');
	ck_assert_uint_eq(a.out_len, 2);
	ck_assert_mem_eq(a.out, "ok", 2);
	/* Loopback: THR comes back on RBR instead of the console. */
	wr(&a, MCR, 0x10);
	wr(&a, THR, 'L');
	ck_assert_uint_eq(a.out_len, 2);
	ck_assert_uint_eq(rd(&a, RBR), 'L');
}
END_TEST

/* ---- save / restore ------------------------------------------------------ */

static void snapshot(struct fake *f)
{
	ck_assert_int_eq(state_begin(&w, "uart0", 0), 0);
	ck_assert_int_eq(ops->save(f->dev, &w), 0);
	ck_assert_int_eq(state_end(&w), 0);
	ck_assert_int_eq(w.failed, 0);
}

static int restore(struct fake *f, uint32_t version)
{
	struct err e;
	int rc = state_reader_init(&r, w.buf, w.len, &e);

	ck_assert_msg(rc == 0, "%s", e.msg);
	ck_assert_int_eq(state_enter(&r, "uart0"), 0);
	return ops->restore(f->dev, &r, version);
}

START_TEST(test_round_trip)
{
	int rc;

	create(&a);
	guest_listens(&a);
	wr(&a, LCR, 0x80);
	wr(&a, IER, 0x02); /* DLM */
	wr(&a, LCR, 0x1b); /* 8e1 */
	ck_assert_uint_eq(type(&a, "hello"), 5);
	ck_assert_uint_eq(rd(&a, RBR), 'h'); /* head moves off 0 */
	ck_assert_int_eq(a.irq_level, 1);

	snapshot(&a);
	create(&b);
	ck_assert_uint_eq(rd(&b, LSR) & 1, 0);
	b.irq_calls = 0;
	rc = restore(&b, 1);
	ck_assert_msg(rc == 0, "restore: %d %s", rc, b.error);
	/* The restored line is asserted at once. */
	ck_assert_int_ge(b.irq_calls, 1);
	ck_assert_int_eq(b.irq_level, 1);

	ck_assert_uint_eq(rd(&b, IER), rd(&a, IER));
	ck_assert_uint_eq(rd(&b, IER), 0x05);
	ck_assert_uint_eq(rd(&b, LCR), 0x1b);
	ck_assert_uint_eq(rd(&b, MCR), rd(&a, MCR));
	ck_assert_uint_eq(rd(&b, SCR), 0x5a);
	ck_assert_uint_eq(rd(&b, IIR), rd(&a, IIR));
	ck_assert_uint_eq(rd(&b, IIR), 0xc4); /* FIFO on, data ready */
	ck_assert_uint_eq(rd(&b, MSR), rd(&a, MSR));
	wr(&a, LCR, 0x9b);
	wr(&b, LCR, 0x9b);
	ck_assert_uint_eq(rd(&b, RBR), 0x01); /* DLL */
	ck_assert_uint_eq(rd(&b, IER), 0x02); /* DLM */
	wr(&a, LCR, 0x1b);
	wr(&b, LCR, 0x1b);
	for (const char *p = "ello"; *p; p++) {
		ck_assert_uint_eq(rd(&b, LSR), rd(&a, LSR));
		ck_assert_uint_eq(rd(&b, LSR), 0x61);
		ck_assert_uint_eq(rd(&a, RBR), (uint8_t)*p);
		ck_assert_uint_eq(rd(&b, RBR), (uint8_t)*p);
	}
	ck_assert_uint_eq(rd(&b, LSR), 0x60);
	ck_assert_int_eq(b.irq_level, 0);
	/* The restored FIFO keeps working, wrapping included. */
	ck_assert_uint_eq(type(&b, "0123456789abcdef"), 16);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(&b, RBR), (uint8_t)"0123456789abcdef"[i]);
	/* The host side stayed b's own. */
	wr(&b, THR, '!');
	ck_assert_uint_eq(b.out_len, 1);
	ck_assert_uint_eq(a.out_len, 0);
}
END_TEST

/* A full FIFO whose data wraps around the end of the ring. */
START_TEST(test_round_trip_wrapped)
{
	create(&a);
	guest_listens(&a);
	ck_assert_uint_eq(type(&a, "0123456789"), 10);
	for (int i = 0; i < 10; i++)
		(void)rd(&a, RBR);
	ck_assert_uint_eq(type(&a, "ABCDEFGHIJKLMNOP"), 16);
	snapshot(&a);
	create(&b);
	ck_assert_int_eq(restore(&b, 1), 0);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(&b, RBR), (uint8_t)('A' + i));
	ck_assert_uint_eq(rd(&b, LSR) & 1, 0);
}
END_TEST

/* A state written field by field, as a hostile or corrupt file could be. */
static void put8(const char *name, uint8_t v)
{
	ck_assert_int_eq(state_put(&w, name, SMOLVM_STATE_U8, &v, 1), 0);
}

static void hostile_state(uint8_t rx_len, uint8_t rx_head, uint32_t rx_bytes,
			  const char *skip)
{
	static const char *const names[] = { "dll", "dlm", "ier", "lcr", "mcr", "msr",
					     "scr", "fcr", "thr_pending" };
	uint8_t rx[32];

	memset(rx, 'R', sizeof(rx));
	ck_assert_int_eq(state_begin(&w, "uart0", 0), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!skip || strcmp(skip, names[i]))
			/* ier 0x01, fcr 0x01 (FIFO on), thr_pending 1: values the
			 * registers can hold; the rest 0x0b. */
			put8(names[i], i == 2 || i == 7 || i == 8 ? 0x01 : 0x0b);
	if (!skip || strcmp(skip, "rx_len"))
		put8("rx_len", rx_len);
	if (!skip || strcmp(skip, "rx_head"))
		put8("rx_head", rx_head);
	if (!skip || strcmp(skip, "rx"))
		ck_assert_int_eq(state_put(&w, "rx", SMOLVM_STATE_BYTES, rx, rx_bytes), 0);
	ck_assert_int_eq(state_end(&w), 0);
}

static void expect_untouched(struct fake *f)
{
	/* A refused restore leaves the device as it was. */
	ck_assert_uint_eq(rd(f, IER), 0x05);
	ck_assert_uint_eq(rd(f, SCR), 0x5a);
	ck_assert_uint_eq(rd(f, LSR), 0x61);
	ck_assert_uint_eq(rd(f, RBR), 'k');
	ck_assert_uint_eq(rd(f, LSR), 0x60);
}

START_TEST(test_hostile_rx_len)
{
	create(&b);
	guest_listens(&b);
	ck_assert_uint_eq(type(&b, "k"), 1);
	hostile_state(200, 0, 16, NULL);
	ck_assert_int_eq(restore(&b, 1), -EINVAL);
	ck_assert_str_contains(b.error, "out of range");
	ck_assert_str_contains(b.error, "200");
	expect_untouched(&b);
}
END_TEST

START_TEST(test_hostile_rx_head)
{
	create(&b);
	guest_listens(&b);
	ck_assert_uint_eq(type(&b, "k"), 1);
	hostile_state(1, 16, 16, NULL);
	ck_assert_int_eq(restore(&b, 1), -EINVAL);
	ck_assert_str_contains(b.error, "out of range");
	expect_untouched(&b);
}
END_TEST

START_TEST(test_boundary_state_accepted)
{
	create(&b);
	hostile_state(16, 15, 16, NULL);
	ck_assert_int_eq(restore(&b, 1), 0);
	ck_assert_uint_eq(rd(&b, LSR), 0x61);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rd(&b, RBR), 'R');
	ck_assert_uint_eq(rd(&b, LSR), 0x60);
}
END_TEST

START_TEST(test_short_rx_bytes)
{
	create(&b);
	guest_listens(&b);
	ck_assert_uint_eq(type(&b, "k"), 1);
	hostile_state(1, 0, 8, NULL);
	ck_assert_int_eq(restore(&b, 1), -EBADMSG);
	expect_untouched(&b);
	state_writer_free(&w);
	state_reader_free(&r);
	state_writer_init(&w);
	ck_assert_uint_eq(type(&b, "k"), 1);
	hostile_state(1, 0, 32, NULL);
	ck_assert_int_eq(restore(&b, 1), -EBADMSG);
	expect_untouched(&b);
}
END_TEST

START_TEST(test_missing_field)
{
	create(&b);
	guest_listens(&b);
	ck_assert_uint_eq(type(&b, "k"), 1);
	hostile_state(1, 0, 16, "rx_head");
	ck_assert_int_eq(restore(&b, 1), -ENOENT);
	ck_assert_str_eq(b.error, "rx_head: field missing");
	expect_untouched(&b);
}
END_TEST

/* ---- the SDK's typed writer and reader (sdk/src/state_io.c) ------------------ */

struct io_state {
	uint8_t mode;
	uint16_t head;
	uint64_t count;
	uint8_t blob[4];
};

static const struct smolvm_state_field io_fields[] = {
	SMOLVM_FIELD(struct io_state, mode, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct io_state, head, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct io_state, blob, SMOLVM_STATE_BYTES, 1),
	SMOLVM_FIELD(struct io_state, count, SMOLVM_STATE_U64, 2),
};

static const struct smolvm_state_limit io_limits[] = {
	SMOLVM_LIMIT(struct io_state, mode, 3),
	SMOLVM_LIMIT(struct io_state, head, 63),
};

/* outer { inner { mode head blob count } opt? { x } } */
static void io_write(const struct io_state *st, int with_opt)
{
	struct smolvm_state_out o;

	smolvm_state_out_init(&o, &api, (smolvm_ctx *)(void *)&a, &w);
	smolvm_state_begin(&o, "outer");
	smolvm_state_begin(&o, "inner");
	smolvm_state_put_fields(&o, io_fields, SMOLVM_ARRAY_LEN(io_fields), st);
	smolvm_state_end(&o);
	if (with_opt) {
		smolvm_state_begin_opt(&o, "opt");
		smolvm_state_put_u32(&o, "x", 7);
		smolvm_state_end(&o);
	}
	smolvm_state_end(&o);
	ck_assert_int_eq(smolvm_state_out_done(&o), 0);
}

static void io_reader(struct smolvm_state_in *in, const char *prefix)
{
	struct err e;

	ck_assert_int_eq(state_reader_init(&r, w.buf, w.len, &e), 0);
	smolvm_state_in_init(in, &api, (smolvm_ctx *)(void *)&a, &r);
	in->prefix = prefix;
	a.error[0] = 0;
}

START_TEST(test_io_round_trip)
{
	struct io_state st = { 2, 40, 1ull << 40, { 1, 2, 3, 4 } }, got;
	struct smolvm_state_in in;
	uint32_t x = 0;
	int missing = -1;

	io_write(&st, 1);
	io_reader(&in, NULL);
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(smolvm_state_enter(&in, "outer"), 0);
	ck_assert_int_eq(smolvm_state_enter(&in, "inner"), 0);
	ck_assert_str_eq(in.path, "outer.inner");
	ck_assert_int_eq(smolvm_state_get_fields(&in, io_fields, SMOLVM_ARRAY_LEN(io_fields),
						 &got, 2), 0);
	ck_assert_uint_eq(got.mode, st.mode);
	ck_assert_uint_eq(got.head, st.head);
	ck_assert_uint_eq(got.count, st.count);
	ck_assert_int_eq(memcmp(got.blob, st.blob, sizeof(st.blob)), 0);
	ck_assert_int_eq(smolvm_state_check_limits(&in, io_limits, SMOLVM_ARRAY_LEN(io_limits),
						   &got), 0);
	smolvm_state_leave(&in);
	ck_assert_str_eq(in.path, "outer");
	ck_assert_int_eq(smolvm_state_enter_opt(&in, "opt", &missing), 0);
	ck_assert_int_eq(missing, 0);
	ck_assert_int_eq(smolvm_state_get_u32(&in, "x", &x), 0);
	ck_assert_uint_eq(x, 7);
	smolvm_state_in_done(&in);
	ck_assert_int_eq(in.depth, 0);
	ck_assert_str_eq(in.path, "");
	ck_assert_str_eq(a.error, "");
}
END_TEST

/* Each failure says where, and returns what the host's reader said. */
START_TEST(test_io_errors)
{
	struct io_state st = { 5, 70, 9, { 0 } }, got;
	struct smolvm_state_in in;
	uint32_t v32;
	uint8_t v8;
	int missing = -1;

	io_write(&st, 0);
	io_reader(&in, "dev0 state: ");
	ck_assert_int_eq(smolvm_state_enter(&in, "nope"), -ENOENT);
	ck_assert_str_eq(a.error, "dev0 state: section nope: missing");
	ck_assert_int_eq(smolvm_state_enter(&in, "outer"), 0);
	ck_assert_int_eq(smolvm_state_enter_opt(&in, "opt", &missing), 0);
	ck_assert_int_eq(missing, 1);
	ck_assert_str_eq(in.path, "outer"); /* nothing entered */
	ck_assert_int_eq(smolvm_state_enter(&in, "inner"), 0);
	/* Version 1 has no count: not asked for, left alone. */
	memset(&got, 0xee, sizeof(got));
	ck_assert_int_eq(smolvm_state_get_fields(&in, io_fields, SMOLVM_ARRAY_LEN(io_fields),
						 &got, 1), 0);
	ck_assert_uint_eq(got.count, 0xeeeeeeeeeeeeeeeeull);
	ck_assert_int_eq(smolvm_state_check_limits(&in, io_limits, SMOLVM_ARRAY_LEN(io_limits),
						   &got), -EINVAL);
	ck_assert_str_eq(a.error, "dev0 state: outer.inner.mode: 5 is out of range (at most 3)");
	ck_assert_int_eq(smolvm_state_get_u32(&in, "mode", &v32), -EBADMSG);
	ck_assert_str_eq(a.error, "dev0 state: outer.inner.mode: wrong type or size "
				  "(want an integer of 4 bytes)");
	ck_assert_int_eq(smolvm_state_get_u8(&in, "gone", &v8), -ENOENT);
	ck_assert_str_eq(a.error, "dev0 state: outer.inner.gone: field missing");
	a.error[0] = 0;
	ck_assert_int_eq(smolvm_state_get_opt(&in, "gone", SMOLVM_STATE_U8, &v8, 1), -ENOENT);
	ck_assert_str_eq(a.error, "");
	ck_assert_int_eq(smolvm_state_bad(&in, "head", "%u is odd", 71u), -EINVAL);
	ck_assert_str_eq(a.error, "dev0 state: outer.inner.head: 71 is odd");
	smolvm_state_in_done(&in);
	ck_assert_int_eq(in.depth, 0);
}
END_TEST

/* The writer's first failure sticks: later calls write nothing, and
 * smolvm_state_out_done() reports it once. */
START_TEST(test_io_sticky_writer)
{
	struct smolvm_state_out o;
	char name[300];
	size_t len;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0; /* longer than a record name may be */
	smolvm_state_out_init(&o, &api, (smolvm_ctx *)(void *)&a, &w);
	o.prefix = "dev0 state: ";
	smolvm_state_put_u8(&o, "ok", 1);
	len = w.len;
	smolvm_state_put_u8(&o, name, 1);
	ck_assert_int_eq(o.rc, -EINVAL);
	smolvm_state_begin(&o, "later");
	smolvm_state_put_u64(&o, "later", 1);
	ck_assert_uint_eq(w.len, len);
	ck_assert_int_eq(smolvm_state_out_done(&o), -EINVAL);
	ck_assert_str_eq(a.error, "dev0 state: cannot write the state: Invalid argument");
	/* A failure of the plugin's own keeps its message. */
	state_writer_free(&w);
	state_writer_init(&w);
	smolvm_state_out_init(&o, &api, (smolvm_ctx *)(void *)&a, &w);
	ck_assert_int_eq(smolvm_state_out_fail(&o, -EIO, "disk %d unreadable", 2), -EIO);
	smolvm_state_put_u8(&o, "after", 1);
	ck_assert_uint_eq(w.len, 0);
	ck_assert_int_eq(smolvm_state_out_done(&o), -EIO);
	ck_assert_str_eq(a.error, "disk 2 unreadable");
}
END_TEST

START_TEST(test_ops_table)
{
	ops = smolvm_plugin_v1.ops;
	ck_assert_uint_eq(smolvm_plugin_v1.abi_major, SMOLVM_ABI_MAJOR);
	ck_assert_uint_eq(ops->struct_size, sizeof(struct smolvm_device_ops));
	ck_assert_uint_le(ops->min_state_version, ops->state_version);
	ck_assert_ptr_nonnull(ops->save);
	ck_assert_ptr_nonnull(ops->restore);
	ck_assert_ptr_nonnull(ops->destroy);
}
END_TEST

Suite *uart_suite(void)
{
	Suite *s = suite_create("uart");
	TCase *tc;

	tc = tcase_create("registers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ops_table);
	tcase_add_test(tc, test_create_defaults);
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_rx_only_when_listening);
	tcase_add_test(tc, test_tx);
	suite_add_tcase(s, tc);

	tc = tcase_create("save-restore");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_round_trip_wrapped);
	tcase_add_test(tc, test_boundary_state_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile-state");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hostile_rx_len);
	tcase_add_test(tc, test_hostile_rx_head);
	tcase_add_test(tc, test_short_rx_bytes);
	tcase_add_test(tc, test_missing_field);
	suite_add_tcase(s, tc);

	tc = tcase_create("sdk-state-io");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_io_round_trip);
	tcase_add_test(tc, test_io_errors);
	tcase_add_test(tc, test_io_sticky_writer);
	suite_add_tcase(s, tc);
	return s;
}
