/* virtio-9p: a host directory shared with the guest over 9P2000.L, served
 * inside the VMM process (server.c) on a thread of the device's own.
 *
 *   { type = "virtio-9p", path = "src", tag = "src", readonly = false,
 *     guest = "/work" }
 *
 * Without `path` the device is a placeholder (virtio device ID 0, which the
 * guest's virtio-mmio driver passes over quietly): smolvm adds a few to a
 * machine with a guest agent, so that a bundle packed without volumes can
 * be given one at run time (--volume), the agent binding the slot then.
 *
 * Threads: the vCPU threads (or the event loop) only kick the worker
 * through an eventfd; the worker does all the file work, under the
 * transport's notify lock, so a pause or a snapshot never sees a request
 * half done. The vCPU threads' syscall filter would not allow it anyway. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_ids.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

#include "server.h"

#define QUEUE_SIZE 128         /* what Linux's 9p transport uses */
#define VIRTIO_9P_MOUNT_TAG 0  /* feature bit: the config space has a tag */
#define TAG_MAX 64

struct p9 {
	struct smolvm_virtio_dev vd; /* first: SMOLVM_VIRTIO_DEVICE_OPS */
	struct smolvm_virtio_ops vops;
	smolvm_ctx *ctx;
	const struct smolvm_host_api *api;
	int active;                  /* a share is configured (else a placeholder) */
	struct p9_server srv;
	char tag[TAG_MAX + 1];
	char guest[256];             /* where the guest mounts it, for messages */
	uint8_t cfg[2 + TAG_MAX];    /* tag_len[2] tag */
	uint32_t cfg_len;
	uint8_t *req, *resp;         /* one message each way */
	int wake_fd;
	int kick_fd;                 /* the queue's ioeventfd, taken from the event loop; or -1 */
	pthread_t thread;
	int have_thread;
	volatile int stop;
};

/* One request: copied out of the chain, answered, the reply copied in. */
static void answer(struct p9 *d, struct smolvm_virtq_elem *e)
{
	size_t inlen = smolvm_iov_to_buf(e->out, e->nout, 0, d->req, P9_MAX_MSIZE);
	size_t cap = e->in_len < P9_MAX_MSIZE ? (size_t)e->in_len : P9_MAX_MSIZE;
	size_t n;

	if (e->out_len > P9_MAX_MSIZE)
		n = p9_error(d->resp, cap,
			     inlen >= P9_HDR ? (uint16_t)(d->req[5] | d->req[6] << 8) : 0xffff,
			     EMSGSIZE);
	else
		n = p9_server_handle(&d->srv, d->req, inlen, d->resp, cap);
	smolvm_iov_from_buf(e->in, e->nin, 0, d->resp, n);
	smolvm_virtq_push(&d->vd, 0, e, (uint32_t)n);
}

static void process(struct p9 *d)
{
	struct smolvm_virtq_elem e;
	int rc;

	for (;;) {
		while ((rc = smolvm_virtq_pop(&d->vd, 0, &e)) > 0)
			answer(d, &e);
		smolvm_virtq_notify(&d->vd, 0);
		if (rc < 0)
			return;
		/* as virtio-blk: a driver may skip its kick while we saw the
		 * ring empty; a full fence, then look once more */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (smolvm_virtq_pop(&d->vd, 0, &e) <= 0)
			return;
		answer(d, &e);
	}
}

static void *worker(void *arg)
{
	struct p9 *d = arg;
	uint64_t v;

	while (!d->stop) {
		struct pollfd pf[2] = { { d->wake_fd, POLLIN, 0 }, { d->kick_fd, POLLIN, 0 } };
		if (poll(pf, d->kick_fd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (read(d->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		if (d->kick_fd >= 0 && read(d->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		if (d->stop)
			break;
		pthread_mutex_lock(&d->vd.notify_lock);
		if (!d->vd.paused && d->active)
			process(d);
		pthread_mutex_unlock(&d->vd.notify_lock);
	}
	return NULL;
}

static void wake(struct p9 *d)
{
	uint64_t one = 1;

	if (write(d->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		d->api->log(d->ctx, SMOLVM_LOG_WARN, "cannot wake the 9p thread: %s",
			    strerror(errno));
}

/* With vd.notify_lock held, on a vCPU thread or the event loop. */
static void p9_notify(void *dev, uint32_t q)
{
	(void)q;
	wake(dev);
}

static void p9_resume(void *dev)
{
	wake(dev); /* a kick a snapshot lost: look at the queue once */
}

static void p9_reset(void *dev)
{
	struct p9 *d = dev;

	if (d->active)
		p9_server_reset(&d->srv);
}

static void p9_config_read(void *dev, uint32_t off, void *data, uint32_t size)
{
	struct p9 *d = dev;

	memset(data, 0, size);
	if (off < d->cfg_len)
		memcpy(data, d->cfg + off, d->cfg_len - off < size ? d->cfg_len - off : size);
}

/* ---- state -----------------------------------------------------------------------
 * Fields: active (u8), tag, guest (text), readonly (u8), msize (u32),
 * nfids (u32); then a section "fid<i>" per fid: fid (u32), path (text,
 * relative to the share), oflags (u32), open (u8). Text is a length
 * "<name>_len" (u32) and the bytes "<name>". */

/* Text as "<name>_len" (u32) and "<name>" (bytes): the reader wants a
 * field's exact length. */
static void put_text(struct smolvm_state_out *o, const char *name, const char *s)
{
	char key[48];

	snprintf(key, sizeof(key), "%s_len", name);
	smolvm_state_put_u32(o, key, (uint32_t)strlen(s));
	smolvm_state_put_bytes(o, name, s, (uint32_t)strlen(s));
}

/* A text field of at most `max` bytes into buf (max + 1 long). */
static int get_text(struct smolvm_state_in *in, const char *name, char *buf, size_t max)
{
	char key[48];
	uint32_t n;
	int rc;

	snprintf(key, sizeof(key), "%s_len", name);
	if ((rc = smolvm_state_get_u32(in, key, &n)))
		return rc;
	if (n > max)
		return smolvm_state_bad(in, key, "%u is out of range (at most %zu)", n, max);
	if ((rc = smolvm_state_get(in, name, SMOLVM_STATE_BYTES, buf, n)))
		return rc;
	buf[n] = 0;
	return memchr(buf, 0, n) ? smolvm_state_bad(in, name, "has a NUL byte") : 0;
}

struct save_ctx {
	struct smolvm_state_out *o;
	uint32_t i;
};

static int save_fid(void *opaque, uint32_t fid, const char *path, uint32_t oflags, int open)
{
	struct save_ctx *s = opaque;
	char name[32];

	snprintf(name, sizeof(name), "fid%u", s->i++);
	smolvm_state_begin(s->o, name);
	smolvm_state_put_u32(s->o, "fid", fid);
	put_text(s->o, "path", path);
	smolvm_state_put_u32(s->o, "oflags", oflags);
	smolvm_state_put_u8(s->o, "open", (uint8_t)open);
	smolvm_state_end(s->o);
	return s->o->rc;
}

static int p9_save(void *dev, struct smolvm_state_out *o)
{
	struct p9 *d = dev;
	struct save_ctx sc = { o, 0 };

	smolvm_virtio_put_state(&d->vd, o);
	smolvm_state_put_u8(o, "active", (uint8_t)d->active);
	put_text(o, "tag", d->tag);
	put_text(o, "guest", d->guest);
	smolvm_state_put_u8(o, "readonly", (uint8_t)(d->active && d->srv.readonly));
	smolvm_state_put_u32(o, "msize", d->active ? d->srv.msize : 0);
	smolvm_state_put_u32(o, "nfids", d->active ? (uint32_t)d->srv.nfids : 0);
	if (d->active)
		p9_server_each_fid(&d->srv, save_fid, &sc);
	return o->rc;
}

static int p9_restore(void *dev, struct smolvm_state_in *in, uint32_t version)
{
	struct p9 *d = dev;
	char tag[TAG_MAX + 1], guest[256], *path = NULL;
	uint8_t active, ro, open;
	uint32_t msize, nfids, fid, oflags;
	int rc, stale = 0;

	(void)version;
	if ((rc = smolvm_virtio_get_state(&d->vd, in)) ||
	    (rc = smolvm_state_get_u8(in, "active", &active)) ||
	    (rc = get_text(in, "tag", tag, TAG_MAX)) ||
	    (rc = get_text(in, "guest", guest, sizeof(guest) - 1)) ||
	    (rc = smolvm_state_get_u8(in, "readonly", &ro)) ||
	    (rc = smolvm_state_get_u32(in, "msize", &msize)) ||
	    (rc = smolvm_state_get_u32(in, "nfids", &nfids)))
		return rc;
	if (!active)
		return 0; /* a placeholder then: whatever this one is, the guest never used it */
	if (!d->active)
		return smolvm_state_in_fail(in, -ENOENT,
					    "the machine had a host directory mounted at %s in "
					    "the guest (9p tag \"%s\"%s): give it one with --volume "
					    "HOSTDIR:%s%s", guest[0] ? guest : "(unknown)", tag,
					    ro ? ", read-only" : "", guest[0] ? guest : "GUESTDIR",
					    ro ? ":ro" : "");
	if (strcmp(tag, d->tag))
		return smolvm_state_in_fail(in, -EINVAL, "the guest mounted tag \"%s\" from this "
					    "device, which now has tag \"%s\"", tag, d->tag);
	if (msize < P9_MIN_MSIZE || msize > P9_MAX_MSIZE)
		return smolvm_state_bad(in, "msize", "%u is out of range", msize);
	if (nfids > P9_MAX_FIDS)
		return smolvm_state_bad(in, "nfids", "%u is out of range (at most %u)", nfids,
					P9_MAX_FIDS);
	if (ro && !d->srv.readonly)
		d->api->log(d->ctx, SMOLVM_LOG_INFO, "%s was read-only when saved; now writable",
			    guest);
	path = malloc(4096);
	if (!path)
		return smolvm_state_in_fail(in, -ENOMEM, "out of memory");
	p9_server_reset(&d->srv);
	d->srv.msize = msize;
	for (uint32_t i = 0; i < nfids && !rc; i++) {
		char name[32];
		snprintf(name, sizeof(name), "fid%u", i);
		if ((rc = smolvm_state_enter(in, name)) ||
		    (rc = smolvm_state_get_u32(in, "fid", &fid)) ||
		    (rc = get_text(in, "path", path, 4095)) ||
		    (rc = smolvm_state_get_u32(in, "oflags", &oflags)) ||
		    (rc = smolvm_state_get_u8(in, "open", &open)))
			break;
		rc = p9_server_restore_fid(&d->srv, fid, path, oflags, open);
		if (rc == -EINVAL || rc == -EEXIST || rc == -ENOMEM) {
			rc = smolvm_state_bad(in, "path", "fid %u (\"%s\"): %s", fid, path,
					      rc == -EINVAL ? "not a path under the share"
					      : rc == -EEXIST ? "saved twice" : "out of memory");
			break;
		}
		if (rc) {
			/* gone from the new directory: the guest's uses fail */
			if (!stale++)
				d->api->log(d->ctx, SMOLVM_LOG_WARN,
					    "%s/%s: %s (the guest's open file there is stale)",
					    guest, path, strerror(-rc));
			rc = 0;
		}
		smolvm_state_leave(in);
	}
	free(path);
	if (rc)
		p9_server_reset(&d->srv);
	return rc;
}

/* ---- life ------------------------------------------------------------------------ */

static void p9_destroy(void *dev)
{
	struct p9 *d = dev;

	if (d->have_thread) {
		d->stop = 1;
		wake(d);
		pthread_join(d->thread, NULL);
	}
	if (d->active)
		p9_server_free(&d->srv);
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	free(d->req);
	free(d->resp);
}

static int parse_bool(const char *s, int *out)
{
	if (!s || !strcmp(s, "false") || !strcmp(s, "0"))
		*out = 0;
	else if (!strcmp(s, "true") || !strcmp(s, "1"))
		*out = 1;
	else
		return -EINVAL;
	return 0;
}

static int configure(struct p9 *d, const char **path, int *ro)
{
	const struct smolvm_host_api *api = d->api;
	const char *tag = api->config_get(d->ctx, "tag");
	const char *guest = api->config_get(d->ctx, "guest");
	const char *rs = api->config_get(d->ctx, "readonly");

	*path = api->config_path(d->ctx, "path");
	if (parse_bool(rs, ro)) {
		api->set_error(d->ctx, "readonly: expected true or false, got \"%s\"", rs);
		return -EINVAL;
	}
	if (!tag && SMOLVM_HAS(api, instance_name))
		tag = api->instance_name(d->ctx);
	if (!tag || !*tag || strlen(tag) > TAG_MAX || strpbrk(tag, " ,\t\n")) {
		api->set_error(d->ctx, "tag \"%s\": 1 to %d characters, no spaces or commas",
			       tag ? tag : "", TAG_MAX);
		return -EINVAL;
	}
	snprintf(d->tag, sizeof(d->tag), "%s", tag);
	if (guest && strlen(guest) >= sizeof(d->guest)) {
		api->set_error(d->ctx, "guest: at most %zu characters", sizeof(d->guest) - 1);
		return -EINVAL;
	}
	snprintf(d->guest, sizeof(d->guest), "%s", guest ? guest : "");
	return 0;
}

/* Enough descriptors for every fid a guest may hold (each pins one). */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int p9_create(smolvm_ctx *ctx, const struct smolvm_host_api *api, void **out)
{
	struct p9 *d = calloc(1, sizeof(*d));
	const char *path;
	int ro = 0, rc, root = -1;
	struct stat st;
	size_t tl;

	if (!d)
		return -ENOMEM;
	d->ctx = ctx;
	d->api = api;
	d->wake_fd = -1;
	d->kick_fd = -1;
	rc = configure(d, &path, &ro);
	if (rc)
		goto fail;
	if (path) {
		root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (root < 0 || fstat(root, &st) < 0) {
			rc = -errno;
			api->set_error(ctx, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if ((rc = p9_server_init(&d->srv, root, ro))) {
			close(root);
			goto fail;
		}
		d->active = 1;
		d->req = malloc(P9_MAX_MSIZE);
		d->resp = malloc(P9_MAX_MSIZE);
		if (!d->req || !d->resp) {
			rc = -ENOMEM;
			goto fail;
		}
		raise_fd_limit();
	}
	tl = strlen(d->tag);
	d->cfg[0] = (uint8_t)tl;
	d->cfg[1] = 0;
	memcpy(d->cfg + 2, d->tag, tl);
	d->cfg_len = (uint32_t)(2 + tl);
	d->vops = (struct smolvm_virtio_ops){
		/* device ID 0: "a placeholder with no function" to Linux */
		.device_id = d->active ? VIRTIO_ID_9P : 0,
		.num_queues = 1,
		.queue_max_size = QUEUE_SIZE,
		.features = d->active ? 1ull << VIRTIO_9P_MOUNT_TAG : 0,
		.config_size = sizeof(d->cfg),
		.config_read = p9_config_read,
		.queue_notify = p9_notify,
		.reset = p9_reset,
		.resume = p9_resume,
		.save = p9_save,
		.restore = p9_restore,
		.destroy = p9_destroy,
	};
	d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->wake_fd < 0) {
		rc = -errno;
		api->set_error(ctx, "eventfd: %s", strerror(errno));
		goto fail;
	}
	rc = smolvm_virtio_init(&d->vd, ctx, api, &d->vops, d);
	if (rc)
		goto fail;
	/* The guest's kicks straight to the worker, not through the event
	 * loop and back (a thread hop less per request); while paused the
	 * worker leaves the queue alone and resume wakes it. */
	d->kick_fd = d->vd.vq[0].kick_fd;
	if (d->active && d->kick_fd >= 0 && d->api->fd_unwatch(ctx, d->kick_fd))
		d->kick_fd = -1;
	if (d->active) {
		rc = pthread_create(&d->thread, NULL, worker, d);
		if (rc) {
			smolvm_virtio_cleanup(&d->vd);
			api->set_error(ctx, "cannot start its thread: %s", strerror(rc));
			rc = -rc;
			goto fail;
		}
		d->have_thread = 1;
		api->log(ctx, SMOLVM_LOG_DEBUG, "sharing %s as tag %s%s", path, d->tag,
			 ro ? " (read-only)" : "");
	}
	*out = d;
	return 0;
fail:
	p9_destroy(d);
	free(d);
	return rc;
}

static const struct smolvm_option p9_options[] = {
	{ "path", SMOLVM_OPT_PATH, 0, NULL,
	  "the host directory to share (absent: an empty slot for --volume)" },
	{ "tag", SMOLVM_OPT_STRING, 0, "the device's name",
	  "the mount tag: mount -t 9p -o trans=virtio TAG DIR" },
	{ "readonly", SMOLVM_OPT_BOOL, 0, "false", "the guest cannot change the directory" },
	{ "guest", SMOLVM_OPT_STRING, 0, NULL,
	  "where the guest mounts it (for messages and --volume at restore)" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops p9_ops =
	SMOLVM_VIRTIO_DEVICE_OPS_OPTIONS(struct p9, p9_create, 1, 1, p9_options);

SMOLVM_DEVICE_PLUGIN("virtio-9p", "1.0.0",
		     "a host directory shared with the guest (9P2000.L, served in the VMM)",
		     p9_ops);
