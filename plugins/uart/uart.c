/* 16550A UART: the guest's serial console (COM1 at 0x3f8, IRQ 4 by default).
 *
 * Transmit is instantaneous (each THR write goes to the VM console), so THR
 * and the transmitter are always empty. Receive goes through a 16-byte FIFO
 * fed from the console. Bytes wait in the core until the guest takes
 * receive interrupts for real (IER.RDI with MCR.OUT2, not in loopback):
 * Linux's 8250 probe briefly sets IER to 0x0f with OUT2 clear and then
 * clears the FIFO, which would eat whatever had been typed ahead.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <smolvm/plugin.h>
#include <smolvm/state.h>

enum {
	RBR = 0, THR = 0, DLL = 0,
	IER = 1, DLM = 1,
	IIR = 2, FCR = 2,
	LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

#define FIFO_SIZE 16

struct uart {
	/* Guest-visible state, saved as named fields. */
	uint8_t dll, dlm, ier, lcr, mcr, msr, scr, fcr;
	uint8_t thr_pending; /* THR-empty interrupt not yet acknowledged */
	uint8_t rx_len, rx_head;
	uint8_t rx[FIFO_SIZE];

	/* Host side. */
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	pthread_mutex_t lock;
	uint32_t irq;
	int irq_level;
	int paused;
};

static const struct smolvm_state_field uart_fields[] = {
	SMOLVM_FIELD(struct uart, dll, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, dlm, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, ier, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, lcr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, mcr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, msr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, scr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, fcr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, thr_pending, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, rx_len, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, rx_head, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct uart, rx, SMOLVM_STATE_BYTES, 1),
};

static uint8_t iir_of(const struct uart *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((u->ier & IER_RDI) && u->rx_len)
		return IIR_RDI | fifo;
	if ((u->ier & IER_THRI) && u->thr_pending)
		return IIR_THRI | fifo;
	if ((u->ier & IER_MSI) && (u->msr & 0x0f))
		return IIR_MSI | fifo;
	return IIR_NO_INT | fifo;
}

/* The guest is really listening: input may enter the FIFO. */
static int rx_open(const struct uart *u)
{
	return (u->ier & IER_RDI) && (u->mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2 &&
	       !u->paused;
}

/* Called with the lock held after every state change. */
static void update_irq(struct uart *u)
{
	int level = !(iir_of(u) & IIR_NO_INT) && (u->mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2;

	if (level != u->irq_level && !u->paused) {
		u->irq_level = level;
		u->api->irq_set(u->ctx, u->irq, level);
	}
}

static void rx_push(struct uart *u, uint8_t c)
{
	if (u->rx_len == FIFO_SIZE)
		return; /* overrun: the byte is lost, as on hardware */
	u->rx[(u->rx_head + u->rx_len) % FIFO_SIZE] = c;
	u->rx_len++;
}

static uint8_t loop_msr(uint8_t mcr)
{
	/* Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
	return (uint8_t)(((mcr & 0x01) ? MSR_DSR : 0) | ((mcr & 0x02) ? MSR_CTS : 0) |
			 ((mcr & 0x04) ? MSR_RI : 0) | ((mcr & 0x08) ? MSR_DCD : 0));
}

static void uart_read(void *opaque, uint64_t off, void *data, uint32_t size)
{
	struct uart *u = opaque;
	uint8_t v = 0xff;
	int kick = 0;

	(void)size;
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case RBR:
		if (u->lcr & LCR_DLAB) {
			v = u->dll;
			break;
		}
		v = 0;
		if (u->rx_len) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % FIFO_SIZE;
			u->rx_len--;
			kick = u->rx_len == 0;
		}
		break;
	case IER:
		v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
		break;
	case IIR:
		v = iir_of(u);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			u->thr_pending = 0;
		break;
	case LCR:
		v = u->lcr;
		break;
	case MCR:
		v = u->mcr;
		break;
	case LSR:
		v = LSR_THRE | LSR_TEMT | (u->rx_len ? LSR_DR : 0);
		break;
	case MSR:
		if (u->mcr & MCR_LOOP) {
			v = loop_msr(u->mcr);
		} else {
			v = u->msr;
			u->msr &= 0xf0; /* delta bits clear on read */
		}
		break;
	case SCR:
		v = u->scr;
		break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	*(uint8_t *)data = v;
	if (kick)
		u->api->console_kick(u->ctx);
}

static void uart_write(void *opaque, uint64_t off, const void *data, uint32_t size)
{
	struct uart *u = opaque;
	uint8_t v = *(const uint8_t *)data;
	int kick = 0, was_open;

	(void)size;
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case THR:
		if (u->lcr & LCR_DLAB) {
			u->dll = v;
			break;
		}
		if (u->mcr & MCR_LOOP)
			rx_push(u, v);
		else
			u->api->console_write(u->ctx, &v, 1);
		u->thr_pending = 1; /* sent at once: THR is empty again */
		break;
	case IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
			break;
		}
		/* Enabling THRI with an empty THR raises it at once. */
		if ((v & IER_THRI) && !(u->ier & IER_THRI))
			u->thr_pending = 1;
		was_open = rx_open(u);
		u->ier = v & 0x0f;
		kick = !was_open && rx_open(u);
		break;
	case FCR:
		if (v & FCR_CLEAR_RX)
			u->rx_len = u->rx_head = 0;
		u->fcr = v & 0xc1;
		break;
	case LCR:
		u->lcr = v;
		break;
	case MCR:
		was_open = rx_open(u);
		u->mcr = v & 0x1f;
		kick = !was_open && rx_open(u);
		break;
	case SCR:
		u->scr = v;
		break;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (kick)
		u->api->console_kick(u->ctx);
}

/* Console input, on the event-loop thread. */
static size_t uart_rx(void *opaque, const uint8_t *buf, size_t len)
{
	struct uart *u = opaque;
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	if (rx_open(u)) {
		while (n < len && u->rx_len < FIFO_SIZE)
			rx_push(u, buf[n++]);
		update_irq(u);
	}
	pthread_mutex_unlock(&u->lock);
	return n;
}

static const struct smolvm_io_ops uart_io = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = uart_read,
	.write = uart_write,
};

static int parse_u32(const struct smolvm_host_api *api, smolvm_ctx *ctx,
		     const char *key, uint32_t def, uint32_t max, uint32_t *out)
{
	const char *s = api->config_get(ctx, key);
	char *end;
	unsigned long v;

	*out = def;
	if (!s)
		return 0;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || end == s || v > max) {
		api->set_error(ctx, "%s: expected a number up to %u, got \"%s\"",
			       key, max, s);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static void uart_reset_regs(struct uart *u)
{
	u->dll = 0x0c; /* 9600 baud, what firmware leaves behind */
	u->dlm = 0;
	u->ier = 0;
	u->lcr = 0x03;
	u->mcr = 0; /* OUT2 off: no interrupts until the driver wants them */
	u->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	u->scr = 0;
	u->fcr = 0;
	u->thr_pending = 0;
	u->rx_len = u->rx_head = 0;
}

static int uart_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct uart *u;
	uint32_t port;
	int rc;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->ctx = ctx;
	u->api = api;
	pthread_mutex_init(&u->lock, NULL);
	uart_reset_regs(u);

	rc = parse_u32(api, ctx, "port", 0x3f8, 0xfff8, &port);
	if (!rc)
		rc = parse_u32(api, ctx, "irq", 4, 23, &u->irq);
	if (!rc && SMOLVM_HAS(api, irq_claim))
		rc = api->irq_claim(ctx, u->irq);
	if (!rc)
		rc = api->io_register(ctx, SMOLVM_SPACE_PIO, port, 8, &uart_io, u);
	/* An earlier device may have the console's input: then this port
	 * is output only, which is still a console worth having. */
	if (!rc && api->console_attach(ctx, uart_rx, u))
		api->log(ctx, SMOLVM_LOG_WARN, "console input goes to an earlier device; "
			 "this port is output only");
	if (rc) {
		pthread_mutex_destroy(&u->lock);
		free(u);
		return rc;
	}
	*out = u;
	return 0;
}

static void uart_destroy(void *dev)
{
	struct uart *u = dev;

	pthread_mutex_destroy(&u->lock);
	free(u);
}

static void uart_reset(void *dev)
{
	struct uart *u = dev;

	pthread_mutex_lock(&u->lock);
	uart_reset_regs(u);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static void set_paused(struct uart *u, int paused)
{
	pthread_mutex_lock(&u->lock);
	u->paused = paused;
	if (!paused) {
		u->irq_level = -1; /* re-assert whatever the state says */
		update_irq(u);
	}
	pthread_mutex_unlock(&u->lock);
	if (!paused)
		u->api->console_kick(u->ctx);
}

static void uart_pause(void *dev) { set_paused(dev, 1); }
static void uart_resume(void *dev) { set_paused(dev, 0); }

static int uart_save(void *dev, struct smolvm_state_writer *w)
{
	struct uart *u = dev;
	struct smolvm_state_out o;

	smolvm_state_out_init(&o, u->api, u->ctx, w);
	pthread_mutex_lock(&u->lock);
	smolvm_state_put_fields(&o, uart_fields, SMOLVM_ARRAY_LEN(uart_fields), u);
	pthread_mutex_unlock(&u->lock);
	return smolvm_state_out_done(&o);
}

static int uart_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	struct uart *u = dev;
	struct smolvm_state_in in;
	struct uart tmp;
	int rc;

	smolvm_state_in_init(&in, u->api, u->ctx, r);
	pthread_mutex_lock(&u->lock);
	tmp = *u;
	rc = smolvm_state_get_fields(&in, uart_fields, SMOLVM_ARRAY_LEN(uart_fields), &tmp,
				     version);
	if (!rc && (tmp.rx_len > FIFO_SIZE || tmp.rx_head >= FIFO_SIZE))
		rc = smolvm_state_in_fail(&in, -EINVAL, "rx fifo %u bytes at %u: out of range",
					  tmp.rx_len, tmp.rx_head);
	/* Only values the registers can hold (see the write handler). */
	if (!rc && ((tmp.ier & ~0x0f) || (tmp.mcr & ~0x1f) || (tmp.fcr & ~0xc1) ||
		    tmp.thr_pending > 1))
		rc = smolvm_state_in_fail(&in, -EINVAL,
					  "register values out of range (ier %#x mcr %#x fcr %#x)",
					  tmp.ier, tmp.mcr, tmp.fcr);
	if (!rc) {
		/* Only the guest-visible prefix; the host side stays ours. */
		memcpy(u, &tmp, offsetof(struct uart, ctx));
		u->irq_level = -1;
		update_irq(u);
	}
	pthread_mutex_unlock(&u->lock);
	smolvm_state_in_done(&in);
	return rc;
}

static const struct smolvm_option uart_options[] = {
	{ "port", SMOLVM_OPT_INT, 0, "0x3f8", "the first of its 8 I/O ports (at most 0xfff8)" },
	{ "irq", SMOLVM_OPT_INT, 0, "4", "its interrupt line (0-23), one no other device has" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops uart_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.create = uart_create,
	.destroy = uart_destroy,
	.reset = uart_reset,
	.pause = uart_pause,
	.resume = uart_resume,
	.save = uart_save,
	.restore = uart_restore,
	.options = uart_options,
};

SMOLVM_DEVICE_PLUGIN("uart", "1.0.0", "16550A serial port (console)", uart_ops);
