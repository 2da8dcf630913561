#include "snapshot/lazy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#include "lib/clock.h"
#include "lib/cache_size.h"
#include "lib/dirs.h"
#include "snapshot/uffd.h"


struct lazy_mem {
	struct snapmem_view v;
	const struct bundle *b;
	const struct bundle_section *s;
	uint8_t *ram;
	int uffd, stop_fd, cache_fd;
	char *cache_path, *tmp_path;
	atomic_uchar *done; /* per chunk; written by the thread only */
	uint32_t next_fill; /* the background fill's position */
	uint8_t *buf;       /* one chunk */
	ZSTD_DCtx *dc;
	pthread_t thread;
	int failed;
	int wp;             /* chunks go in write-protected; a first write to one is
			     * served here, which PAGEMAP_SCAN then sees (dirty.h) */
	void (*on_error)(void *opaque, const char *msg);
	void *opaque;
	double t0;
	atomic_uint faulted, filled;
	atomic_int complete;
	_Atomic double first_fault_ms;
};

int lazy_mem_probe(struct err *e)
{
	int got, fd = uffd_open(0, &got);

	if (fd < 0)
		return err_set(e, fd, "userfaultfd: %s (needs CAP_SYS_PTRACE, access to "
			       "/dev/userfaultfd or vm.unprivileged_userfaultfd=1)", strerror(-fd));
	close(fd);
	return 0;
}

/* Maps [at, at+len) of guest memory: zero pages, or l->buf copied in
 * write-protected so the first write to it is seen (dirty.h). A copy may
 * stop short (EAGAIN: the mapping is changing; EEXIST: a page is there
 * already): it goes on from where it stopped. */
static int install(struct lazy_mem *l, uint64_t at, size_t len, int zero)
{
	size_t off = 0;

	while (off < len) {
		int64_t got;
		int r;
		if (zero) {
			struct uffdio_zeropage z = { .range = { (uintptr_t)(l->ram + at + off), len - off } };
			r = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		} else {
			struct uffdio_copy c = { .dst = (uintptr_t)(l->ram + at + off),
						 .src = (uintptr_t)(l->buf + off), .len = len - off,
						 .mode = l->wp ? UFFDIO_COPY_MODE_WP : 0 };
			r = ioctl(l->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		}
		if (r == 0)
			return 0;
		if (got > 0)
			off += (size_t)got;
		else if (errno == EEXIST)
			off += 4096;
		else if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Puts chunk i into guest memory (and the cache image). */
static int fill_chunk(struct lazy_mem *l, uint32_t i)
{
	uint64_t at = (uint64_t)i * SNAPMEM_CHUNK;
	size_t len = snapmem_chunk_len(&l->v, i);
	struct err e;

	if (l->done[i])
		return 0;
	l->done[i] = 1;
	if (!l->failed && snapmem_chunk_zero(&l->v, i))
		return install(l, at, len, 1);
	if (!l->failed && snapmem_chunk_read(&l->v, i, l->dc, l->buf, &e)) {
		/* Stop the machine first: the faulting thread wakes to a stop. */
		l->failed = 1;
		l->on_error(l->opaque, e.msg);
	}
	if (l->failed) {
		memset(l->buf, 0, len);
	} else if (l->cache_fd >= 0) {
		for (size_t off = 0; off < len;) {
			ssize_t w = pwrite(l->cache_fd, l->buf + off, len - off, (off_t)(at + off));
			if (w <= 0) {
				close(l->cache_fd); /* no cache this time */
				l->cache_fd = -1;
				break;
			}
			off += (size_t)w;
		}
	}
	return install(l, at, len, 0);
}

static void publish(struct lazy_mem *l)
{
	const uint8_t *data;
	struct err e;

	if (l->cache_fd < 0)
		return;
	/* Each chunk was checked as it was decompressed; the section as a
	 * whole (its chunk table too) before later restores trust the image. */
	if (!l->failed && !bundle_section_data(l->b, l->s, &data, &e) &&
	    fdatasync(l->cache_fd) == 0 && rename(l->tmp_path, l->cache_path) == 0) {
		free(l->tmp_path);
		l->tmp_path = NULL;
		cache_added(l->cache_path);
	}
	close(l->cache_fd);
	l->cache_fd = -1;
}

static void serve_faults(struct lazy_mem *l)
{
	struct uffd_msg msg[16];
	ssize_t n;

	while ((n = read(l->uffd, msg, sizeof(msg))) > 0) {
		for (ssize_t k = 0; k < n / (ssize_t)sizeof(msg[0]); k++) {
			if (msg[k].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t off = msg[k].arg.pagefault.address - (uintptr_t)l->ram;
			uint32_t i = (uint32_t)(off / SNAPMEM_CHUNK);
			if (off >= l->v.mem_size)
				continue;
			if (msg[k].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
				/* A first write to a chunk put in protected: let go of
				 * the whole chunk (one such fault per chunk); from now
				 * on PAGEMAP_SCAN reports it written (dirty.h). */
				struct uffdio_writeprotect wp = {
					.range = { (uintptr_t)l->ram + (uint64_t)i * SNAPMEM_CHUNK,
						   snapmem_chunk_len(&l->v, i) } };
				ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp);
				continue;
			}
			if (!atomic_load(&l->faulted))
				atomic_store(&l->first_fault_ms, clock_ms() - l->t0);
			if (!l->done[i]) {
				atomic_fetch_add(&l->faulted, 1);
				if (!fill_chunk(l, i))
					continue; /* the copy woke whoever waits */
			}
			/* Already in (a second vCPU on the same chunk), or the copy
			 * failed: wake it to fault again. */
			struct uffdio_range r = { (uintptr_t)l->ram + (off & ~4095ull), 4096 };
			ioctl(l->uffd, UFFDIO_WAKE, &r);
		}
	}
}

static void *lazy_main(void *arg)
{
	struct lazy_mem *l = arg;

	pthread_setname_np(pthread_self(), "memfill");
	for (;;) {
		while (l->next_fill < l->v.nchunks && l->done[l->next_fill])
			l->next_fill++;
		int all = l->next_fill >= l->v.nchunks;
		if (all && !atomic_load(&l->complete)) {
			atomic_store(&l->complete, 1);
			publish(l);
			/* Every page is in: unless writes are tracked, nothing
			 * more can fault. */
			struct uffdio_range r = { (uintptr_t)l->ram, l->v.mem_size };
			if (!l->wp)
				ioctl(l->uffd, UFFDIO_UNREGISTER, &r);
		}
		/* Faults first; the background fill goes on while none waits. */
		struct pollfd pf[2] = { { l->uffd, POLLIN, 0 }, { l->stop_fd, POLLIN, 0 } };
		if (poll(pf, 2, all ? -1 : 0) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if (pf[0].revents) {
			serve_faults(l);
		} else if (!all) {
			if (!snapmem_chunk_zero(&l->v, l->next_fill))
				atomic_fetch_add(&l->filled, 1);
			fill_chunk(l, l->next_fill++);
		}
	}
	return NULL;
}

static void lazy_free(struct lazy_mem *l)
{
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	if (l->cache_fd >= 0)
		close(l->cache_fd);
	if (l->tmp_path)
		unlink(l->tmp_path);
	free(l->tmp_path);
	free(l->cache_path);
	free((void *)l->done);
	free(l->buf);
	ZSTD_freeDCtx(l->dc);
	free(l);
}

int lazy_mem_start(const struct snapmem_view *v, uint8_t *ram, const struct bundle *b,
		   const struct bundle_section *s, const char *cache_path,
		   void (*on_error)(void *opaque, const char *msg), void *opaque,
		   struct lazy_mem **out, struct err *e)
{
	struct lazy_mem *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return err_set(e, -ENOMEM, "out of memory");
	l->uffd = l->stop_fd = l->cache_fd = -1;
	l->v = *v;
	l->ram = ram;
	l->b = b;
	l->s = s;
	l->on_error = on_error;
	l->opaque = opaque;
	l->t0 = clock_ms();
	l->done = calloc(v->nchunks ? v->nchunks : 1, 1);
	l->buf = malloc(SNAPMEM_CHUNK);
	l->dc = ZSTD_createDCtx();
	if (!l->done || !l->buf || !l->dc) {
		lazy_free(l);
		return err_set(e, -ENOMEM, "out of memory");
	}
	l->uffd = uffd_open(UFFD_FEATURE_PAGEFAULT_FLAG_WP, &l->wp);
	if (l->uffd < 0) {
		rc = l->uffd;
		l->uffd = -1;
		lazy_free(l);
		return err_set(e, rc, "userfaultfd: %s", strerror(-rc));
	}
	struct uffdio_register reg = { .range = { (uintptr_t)ram, v->mem_size },
				       .mode = UFFDIO_REGISTER_MODE_MISSING |
					       (l->wp ? UFFDIO_REGISTER_MODE_WP : 0) };
	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
		rc = -errno;
		lazy_free(l);
		return err_set(e, rc, "userfaultfd: cannot register guest memory: %s", strerror(-rc));
	}
	l->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (l->stop_fd < 0) {
		rc = -errno;
		lazy_free(l);
		return err_set(e, rc, "eventfd: %s", strerror(-rc));
	}
	/* The image is built beside its final name; rename makes it appear whole. */
	if (cache_path && (l->cache_path = strdup(cache_path))) {
		l->cache_fd = tmp_beside(cache_path, &l->tmp_path);
		if (l->cache_fd >= 0 && ftruncate(l->cache_fd, (off_t)v->mem_size) < 0) {
			close(l->cache_fd);
			l->cache_fd = -1;
		}
	}
	rc = pthread_create(&l->thread, NULL, lazy_main, l);
	if (rc) {
		lazy_free(l);
		return err_set(e, -rc, "cannot start the memory fill thread");
	}
	*out = l;
	return 0;
}

void lazy_mem_stop(struct lazy_mem *l)
{
	uint64_t one = 1;

	if (!l)
		return;
	if (write(l->stop_fd, &one, sizeof(one)) < 0)
		perror("smolvm: eventfd");
	pthread_join(l->thread, NULL);
	/* Whoever still waits on a missing page gets zeros from now on. */
	struct uffdio_range r = { (uintptr_t)l->ram, l->v.mem_size };
	ioctl(l->uffd, UFFDIO_UNREGISTER, &r);
	lazy_free(l);
}

int lazy_mem_tracks(struct lazy_mem *l)
{
	return l->wp;
}

void lazy_mem_stats(struct lazy_mem *l, struct lazy_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!l)
		return;
	st->chunks = l->v.nchunks;
	st->faulted = atomic_load(&l->faulted);
	st->filled = atomic_load(&l->filled);
	st->complete = atomic_load(&l->complete);
	st->first_fault_ms = atomic_load(&l->first_fault_ms);
}
