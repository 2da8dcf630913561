#include "snapshot/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/cache_size.h"
#include "lib/dirs.h"
#include "snapshot/snapmem.h"


/* Decompresses into `fd` (already sized) through a shared mapping. */
static int fill(int fd, const struct bundle *b, const struct bundle_section *s,
		const struct snapmem_view *v, uint64_t mem_size, struct err *e)
{
	const uint8_t *sec;
	void *dst;
	int rc;

	rc = bundle_section_data(b, s, &sec, e);
	if (rc)
		return rc;
	struct snapmem_view own;
	if (!v && (rc = snapmem_open(sec, s->size, s->covered, &own, e)))
		return rc;
	if (!v)
		v = &own;
	if (v->mem_size != mem_size || v->sec != sec)
		return err_set(e, -EBADMSG, "%s section holds %llu bytes, expected %llu", s->name,
			       (unsigned long long)v->mem_size, (unsigned long long)mem_size);
	dst = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (dst == MAP_FAILED)
		return err_set(e, -errno, "%s image: %s", s->name, strerror(errno));
	rc = snapmem_read_view(v, dst, 0, e);
	munmap(dst, mem_size);
	return rc;
}

int cache_image_path(const struct bundle_section *s, const struct snapmem_view *v,
		     uint64_t mem_size, char *path, size_t len)
{
	return cache_kind_path("mem", s, v, mem_size, path, len);
}

int cache_kind_path(const char *kind, const struct bundle_section *s,
		    const struct snapmem_view *v, uint64_t mem_size, char *path, size_t len)
{
	static int warned;
	char dir[4000];
	struct err e;
	int rc = cache_dir_private(dir, sizeof(dir), NULL, &e);

	if (rc) {
		/* A directory we cannot trust is not used; say so once. */
		if (rc != -ENOENT && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			fprintf(stderr, "smolvm: cache %s; restoring without the cache\n", e.msg);
		return rc;
	}
	/* Format 2: named by what it holds (the hash of every chunk's hash:
	 * a name no other content can have, the same for a child's section
	 * and its parent's when they hold the same), else by the hash of its
	 * chunk table. */
	static const uint8_t none[BUNDLE_HASH_SIZE];
	uint8_t id[BUNDLE_HASH_SIZE];
	if ((v && !snapmem_content_id(v, id)) || memcmp(memcpy(id, s->digest, sizeof(id)), none,
							   sizeof(none))) {
		char hex[2 * BUNDLE_HASH_SIZE + 1];
		sodium_bin2hex(hex, sizeof(hex), id, sizeof(id));
		snprintf(path, len, "%s/%s-%s-%llu.raw", dir, kind, hex,
			 (unsigned long long)mem_size);
	} else {
		snprintf(path, len, "%s/%s-%016llx-%llu.raw", dir, kind,
			 (unsigned long long)s->hash, (unsigned long long)mem_size);
	}
	return 0;
}

int cache_image_open(const char *path, uint64_t mem_size)
{
	return cache_file_open(path, mem_size);
}

int cache_memory(const struct bundle *b, const struct bundle_section *s,
		 const struct snapmem_view *v, uint64_t mem_size, struct cache_result *r,
		 struct err *e)
{
	return cache_image(b, s, v, "mem", mem_size, r, NULL, 0, e);
}

/* Whether the file system of `path` has room for the chunks of v that
 * are not zero (the rest stay holes): 0, or -ENOSPC with e saying so. A
 * full disk would fault the mapping being filled (SIGBUS), so this is
 * asked first. */
static int room_for(const char *path, const struct snapmem_view *v, const char *what,
		    struct err *e)
{
	uint64_t need = 0, have;
	struct statvfs sv;
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s", path);
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = 0;
	if (!v || statvfs(dir, &sv))
		return 0; /* (not known: the fill says what went wrong) */
	for (uint32_t i = 0; i < v->nchunks; i++)
		need += snapmem_chunk_zero(v, i) ? 0 : snapmem_chunk_len(v, i);
	have = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (need + (16u << 20) <= have)
		return 0;
	return err_set(e, -ENOSPC, "the cache %s has %.1f MiB free, and %s needs %.1f MiB there: "
		       "make room (smolvm cache prune) or point SMOLVM_CACHE_DIR at a larger file "
		       "system", dir, have / 1048576.0, what, need / 1048576.0);
}

int cache_image(const struct bundle *b, const struct bundle_section *s,
		const struct snapmem_view *v, const char *kind, uint64_t mem_size,
		struct cache_result *r, char *where, size_t wlen, struct err *e)
{
	char path[4200], *tmp;
	double t0 = clock_ms();
	int fd, rc;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (where && wlen)
		where[0] = 0;
	/* (named by its content: a view of it without a parent will do) */
	struct snapmem_view own;
	if (!v && !snapmem_open(b->map + s->offset, s->size, s->covered, &own, e))
		v = &own;
	if (cache_kind_path(kind, s, v, mem_size, path, sizeof(path)) == 0) {
		fd = cache_image_open(path, mem_size);
		if (fd >= 0) {
			cache_touch(fd);
			r->fd = fd;
			r->hit = 1;
			if (where && wlen)
				snprintf(where, wlen, "%s", path);
			r->ms = clock_ms() - t0;
			return 0;
		}
		/* A disk image has nowhere else to go (a memory file would hold
		 * it all in RAM); memory falls back to one. */
		rc = room_for(path, v, s->name, e);
		if (rc && strcmp(kind, "mem"))
			return rc;
		/* Build it beside its final name; rename makes it appear whole. */
		fd = rc ? -ENOSPC : tmp_beside(path, &tmp);
		if (fd >= 0) {
			rc = ftruncate(fd, (off_t)mem_size) < 0 ? -errno : 0;
			if (!rc)
				rc = fill(fd, b, s, v, mem_size, e);
			/* Durable before it is trusted by later restores. */
			if (!rc && fdatasync(fd) < 0)
				rc = -errno;
			if (!rc && rename(tmp, path) < 0)
				rc = -errno;
			if (rc) {
				close(fd);
				unlink(tmp);
				free(tmp);
				if (rc == -EBADMSG || rc == -ENOMEM)
					return rc; /* the bundle is bad: no point retrying */
			} else {
				free(tmp);
				cache_added(path);
				if (where && wlen)
					snprintf(where, wlen, "%s", path);
				r->fd = fd;
				r->ms = clock_ms() - t0;
				return 0;
			}
		}
	}
	/* No cache: an anonymous file that lives as long as the VM. */
	fd = memfd_create("smolvm-mem", MFD_CLOEXEC);
	if (fd < 0)
		return err_set(e, -errno, "memfd_create: %s", strerror(errno));
	rc = ftruncate(fd, (off_t)mem_size) < 0 ? -errno : 0;
	if (!rc)
		rc = fill(fd, b, s, v, mem_size, e);
	if (rc) {
		close(fd);
		return rc < 0 && !e->msg[0] ? err_set(e, rc, "%s image: %s", s->name, strerror(-rc))
					    : rc;
	}
	r->fd = fd;
	r->ms = clock_ms() - t0;
	return 0;
}
