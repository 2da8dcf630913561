#include "snapshot/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/holes.h"
#include "snapshot/cache.h"

static int is_disk(const struct dev_config *d)
{
	return !strcmp(d->type, "virtio-blk") && dev_config_get(d, "path");
}

/* What a disk's section can take from bundles already written: the one
 * the machine was restored from (its disk came out of it: every chunk is
 * as it was) and the one the new bundle names as its parent. */
struct disk_base {
	struct chunked from, parent;
	struct snapmem_base base;
	uint8_t *clean;
};

static int disk_base(const struct restore_plan *plan, const struct bundle *parent,
		     const struct dev_config *d, const char *name, struct disk_base *db,
		     struct err *e)
{
	int rc;

	memset(&db->base, 0, sizeof(db->base));
	db->clean = NULL;
	if (!plan)
		return 0;
	if (d->from_bundle) {
		rc = lineage_view_of(&plan->b, &plan->up, &plan->b, name, &db->from, e);
		if (rc && rc != -ENOENT)
			return rc;
		if (!rc) {
			db->clean = malloc(db->from.v[0].nchunks ? db->from.v[0].nchunks : 1);
			if (!db->clean)
				return err_set(e, -ENOMEM, "out of memory");
			memset(db->clean, 1, db->from.v[0].nchunks);
			db->base.v = &db->from.v[0];
			db->base.clean = db->clean;
		}
	}
	if (parent == &plan->b && db->base.v) {
		db->base.parent = db->base.v;
	} else if (parent) {
		rc = lineage_view_of(&plan->b, &plan->up, parent, name, &db->parent, e);
		if (rc && rc != -ENOENT)
			return rc;
		if (!rc)
			db->base.parent = &db->parent.v[0];
	}
	return 0;
}

static int save_one(struct bundle_writer *w, struct dev_config *d, const char *script,
		    const struct restore_plan *plan, const struct bundle *parent,
		    struct snapmem_stats *st, struct err *e)
{
	const char *path = dev_config_path(d, "path", script);
	char name[80];
	struct snapmem_stats one;
	struct disk_base *db;
	uint8_t *holes = NULL;
	struct stat sb;
	void *map = NULL;
	int fd, rc;

	if (!path)
		return err_set(e, -ENOMEM, "out of memory");
	snprintf(name, sizeof(name), "disk.%s", d->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, -errno, "%s: its disk %s: %s", d->name, path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0) {
		close(fd);
		return 0; /* a device file or an empty one: the plugin says what it thinks */
	}
	if ((uint64_t)sb.st_size > SNAPMEM_MAX_SIZE) {
		close(fd);
		return err_set(e, -EFBIG, "%s: its disk %s has %llu bytes; a bundle carries disks of "
			       "at most %llu GiB", d->name, path, (unsigned long long)sb.st_size,
			       SNAPMEM_MAX_SIZE >> 30);
	}
	db = calloc(1, sizeof(*db));
	if (!db) {
		close(fd);
		return err_set(e, -ENOMEM, "out of memory");
	}
	rc = disk_base(plan, parent, d, name, db, e);
	/* (a disk taken whole from the bundle is not read at all; of
	 * another, not its holes) */
	if (!rc && !db->clean) {
		db->base.known_zero = holes = holes_by_chunk(fd, 0, (uint64_t)sb.st_size,
							      SNAPMEM_CHUNK);
		map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED)
			rc = err_set(e, -errno, "%s: its disk %s: %s", d->name, path, strerror(errno));
		else /* read ahead: the chunks are compressed in order by several threads */
			madvise(map, (size_t)sb.st_size, MADV_SEQUENTIAL);
	}
	close(fd);
	if (!rc)
		rc = snapmem_write_bytes(w, name, SEC_DISK, map == MAP_FAILED ? NULL : map,
					 (uint64_t)sb.st_size, &db->base, &one, e);
	if (map && map != MAP_FAILED)
		munmap(map, (size_t)sb.st_size);
	free(db->clean);
	free(db);
	free(holes);
	if (rc)
		return err_wrap(e, rc, "%s: its disk %s", d->name, path);
	st->chunks += one.chunks;
	st->zero_chunks += one.zero_chunks;
	st->stored_bytes += one.stored_bytes;
	st->reused_chunks += one.reused_chunks;
	st->parent_chunks += one.parent_chunks;
	return 0;
}

int disks_save(struct bundle_writer *w, const struct machine_config *cfg,
	       const struct restore_plan *plan, const struct bundle *parent,
	       struct snapmem_stats *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		int rc = is_disk(d) ? save_one(w, d, cfg->script, plan, parent, st, e) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

int disks_bind(const struct restore_plan *p, struct machine_config *cfg, double *ms,
	       unsigned *unpacked, struct err *e)
{
	double t0 = clock_ms();

	*unpacked = 0;
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		const struct bundle_section *s;
		struct cache_result r;
		char name[80], path[4200];
		uint64_t size;
		int rc;

		snprintf(name, sizeof(name), "disk.%s", d->name);
		if (strcmp(d->type, "virtio-blk") || !(s = bundle_find(&p->b, name)))
			continue;
		if (s->type != SEC_DISK)
			return err_set(e, -EBADMSG, "%s: section %s is not a disk", p->b.path, name);
		struct chunked *c = malloc(sizeof(*c));
		rc = c ? lineage_view(&p->b, &p->up, s, c, e) : err_set(e, -ENOMEM, "out of memory");
		size = rc ? 0 : c->v[0].mem_size;
		if (!rc)
			rc = cache_image(&p->b, s, &c->v[0], "disk", size, &r, path, sizeof(path), e);
		free(c);
		if (rc)
			return err_wrap(e, rc, "%s: its disk %s", p->b.path, d->name);
		*unpacked += !r.hit;
		/* without a cache: the memory file, for as long as smolvm runs */
		if (!path[0])
			snprintf(path, sizeof(path), "/proc/self/fd/%d", r.fd);
		else
			close(r.fd);
		if (dev_config_set(d, "path", path))
			return err_set(e, -ENOMEM, "out of memory");
		d->from_bundle = 1;
	}
	*ms = clock_ms() - t0;
	return 0;
}
