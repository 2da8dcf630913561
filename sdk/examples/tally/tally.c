/* tally: an example out-of-tree smolvm device plugin (port I/O, no virtio).
 *
 * Four 32-bit registers at `port` (default 0x700, 16 ports claimed):
 *
 *   +0   COUNT    read: the counter, which then advances by STEP;
 *                 write: set the counter
 *   +4   SCRATCH  read/write: holds any value
 *   +8   VERSION  read: the state version this build writes (1 or 2)
 *   +12  STEP     state version 2 only: read/write, the counter increment
 *                 (1..255; a write of 0 is ignored). Reads 0 in version 1.
 *
 * The state version is a build option, so one source shows a device as it
 * evolves: build with -DEXAMPLE_STATE_VERSION=1 for the first release and
 * =2 (the default) for the next one, which added STEP. A version-2 build
 * restores a bundle saved by version 1 (STEP keeps its default of 1); a
 * version-1 build refuses a version-2 bundle before anything runs.
 *
 * Build (only the installed SDK is needed):
 *   cc -std=c11 -D_GNU_SOURCE -shared -fPIC -fvisibility=hidden \
 *      $(pkg-config --cflags smolvm-plugin) tally.c -o tally.so
 * Use: devices = { { type = "uart" }, { type = "tally", port = 0x700 } }
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <smolvm/plugin.h>
#include <smolvm/state.h>

#ifndef EXAMPLE_STATE_VERSION
#define EXAMPLE_STATE_VERSION 2
#endif
#if EXAMPLE_STATE_VERSION != 1 && EXAMPLE_STATE_VERSION != 2
#error "EXAMPLE_STATE_VERSION must be 1 or 2"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
/* The plugin's own version moves with its state: 1.0.0, then 2.0.0. */
#define TALLY_VERSION STR(EXAMPLE_STATE_VERSION) ".0.0"

enum { REG_COUNT = 0, REG_SCRATCH = 4, REG_VERSION = 8, REG_STEP = 12, NPORTS = 16 };

/* Guest-visible registers: everything save() writes. */
struct tally_regs {
	uint32_t count;
	uint32_t scratch;
	uint32_t step; /* state version 2 */
};

struct tally {
	struct tally_regs regs;
	pthread_mutex_t lock; /* I/O handlers run on any vCPU thread */
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
};

/* The state, described once: save and restore both use this table. A
 * field added later carries the state version that added it (`since`). */
static const struct smolvm_state_field tally_fields[] = {
	SMOLVM_FIELD(struct tally_regs, count, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct tally_regs, scratch, SMOLVM_STATE_U32, 1),
#if EXAMPLE_STATE_VERSION >= 2
	SMOLVM_FIELD(struct tally_regs, step, SMOLVM_STATE_U32, 2),
#endif
};

static void regs_reset(struct tally_regs *r)
{
	r->count = 0;
	r->scratch = 0;
	r->step = 1;
}

static void tally_read(void *opaque, uint64_t off, void *data, uint32_t size)
{
	struct tally *t = opaque;
	uint32_t v = 0;

	if (size != 4 || (off & 3))
		return; /* 32-bit registers only: other reads see zeros */
	pthread_mutex_lock(&t->lock);
	switch (off) {
	case REG_COUNT:
		v = t->regs.count;
		t->regs.count += t->regs.step;
		break;
	case REG_SCRATCH:
		v = t->regs.scratch;
		break;
	case REG_VERSION:
		v = EXAMPLE_STATE_VERSION;
		break;
#if EXAMPLE_STATE_VERSION >= 2
	case REG_STEP:
		v = t->regs.step;
		break;
#endif
	}
	pthread_mutex_unlock(&t->lock);
	memcpy(data, &v, 4); /* x86 is little-endian, as the bus wants */
}

static void tally_write(void *opaque, uint64_t off, const void *data, uint32_t size)
{
	struct tally *t = opaque;
	uint32_t v;

	if (size != 4 || (off & 3))
		return;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&t->lock);
	switch (off) {
	case REG_COUNT:
		t->regs.count = v;
		break;
	case REG_SCRATCH:
		t->regs.scratch = v;
		break;
#if EXAMPLE_STATE_VERSION >= 2
	case REG_STEP:
		if (v >= 1 && v <= 255)
			t->regs.step = v;
		break;
#endif
	}
	pthread_mutex_unlock(&t->lock);
}

static const struct smolvm_io_ops tally_io = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = tally_read,
	.write = tally_write,
};

/* create: build the device from its configuration. Everything the
 * instance owns hangs off the pointer returned in *out. */
static int tally_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	const char *s = api->config_get(ctx, "port");
	unsigned long port = 0x700;
	struct tally *t;
	char *end;
	int rc;

	if (s) {
		errno = 0;
		port = strtoul(s, &end, 0);
		if (errno || *end || end == s || port > 0x10000 - NPORTS) {
			api->set_error(ctx, "port: expected a port number up to %#x, got \"%s\"",
				       0x10000 - NPORTS, s);
			return -EINVAL;
		}
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ctx = ctx;
	t->api = api;
	regs_reset(&t->regs);
	pthread_mutex_init(&t->lock, NULL);
	rc = api->io_register(ctx, SMOLVM_SPACE_PIO, port, NPORTS, &tally_io, t);
	if (rc) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		return rc;
	}
	/* ABI 1.3: the instance's name ("tally0"). log() and the core's
	 * messages start with it already; here it names what the core calls
	 * this device elsewhere. A host before 1.3 lacks the entry: test it. */
	if (SMOLVM_HAS(api, instance_name))
		api->log(ctx, SMOLVM_LOG_DEBUG, "tally %s at port %#lx (state: bundle section dev.%s)",
			 TALLY_VERSION, port, api->instance_name(ctx));
	else
		api->log(ctx, SMOLVM_LOG_DEBUG, "tally %s at port %#lx", TALLY_VERSION, port);
	*out = t;
	return 0;
}

static void tally_destroy(void *dev)
{
	struct tally *t = dev;

	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Machine reset: back to the state create() made. */
static void tally_reset(void *dev)
{
	struct tally *t = dev;

	pthread_mutex_lock(&t->lock);
	regs_reset(&t->regs);
	pthread_mutex_unlock(&t->lock);
}

static int tally_save(void *dev, struct smolvm_state_writer *w)
{
	struct tally *t = dev;
	struct tally_regs copy;

	pthread_mutex_lock(&t->lock);
	copy = t->regs;
	pthread_mutex_unlock(&t->lock);
	return smolvm_state_save_fields(t->api, w, tally_fields,
					SMOLVM_ARRAY_LEN(tally_fields), &copy);
}

/* restore: runs on a device create() just built from the same
 * configuration; `version` is the state version the bundle was saved
 * with (the core already checked min_state_version <= it <= ours). The
 * state is untrusted: load into a copy, validate, then apply. */
static int tally_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	struct tally *t = dev;
	struct tally_regs tmp;
	int rc;

	pthread_mutex_lock(&t->lock);
	tmp = t->regs; /* fields the saved version lacks keep these values */
	pthread_mutex_unlock(&t->lock);
	rc = smolvm_state_load_fields(t->api, r, tally_fields,
				      SMOLVM_ARRAY_LEN(tally_fields), &tmp, version);
	if (rc) {
		t->api->set_error(t->ctx, "state version %u: %s", version,
				  rc == -ENOENT ? "a field is missing" : "unreadable");
		return rc;
	}
	if (tmp.step < 1 || tmp.step > 255) {
		t->api->set_error(t->ctx, "step %u out of range (1..255)", tmp.step);
		return -EINVAL;
	}
	pthread_mutex_lock(&t->lock);
	t->regs = tmp;
	pthread_mutex_unlock(&t->lock);
	t->api->log(t->ctx, SMOLVM_LOG_INFO, "tally %s restored state version %u: count %u, step %u",
		    TALLY_VERSION, version, tmp.count, tmp.step);
	return 0;
}

/* The options a machine script may give it: smolvm refuses any other,
 * and a port that is not an integer, before create() runs. */
static const struct smolvm_option tally_options[] = {
	{ "port", SMOLVM_OPT_INT, 0, "0x700", "the first of its 16 I/O ports" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops tally_ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = EXAMPLE_STATE_VERSION, /* what save() writes */
	.min_state_version = 1,                 /* the oldest restore() reads */
	.create = tally_create,
	.destroy = tally_destroy,
	.reset = tally_reset,
	.save = tally_save,
	.restore = tally_restore,
	.options = tally_options,               /* ABI 1.2 */
};

SMOLVM_DEVICE_PLUGIN("tally", TALLY_VERSION, "example: port I/O counter and scratch register",
		     tally_ops);
