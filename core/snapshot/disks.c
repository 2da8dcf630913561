#include "snapshot/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "snapshot/cache.h"

static int is_disk(const struct dev_config *d)
{
	return !strcmp(d->type, "virtio-blk") && dev_config_get(d, "path");
}

static int save_one(struct bundle_writer *w, struct dev_config *d, const char *script,
		    struct snapmem_stats *st, struct err *e)
{
	const char *path = dev_config_path(d, "path", script);
	char name[80];
	struct snapmem_stats one;
	struct stat sb;
	void *map;
	int fd, rc;

	if (!path)
		return err_set(e, -ENOMEM, "out of memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, -errno, "%s: its disk %s: %s", d->name, path, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size <= 0) {
		close(fd);
		return 0; /* a device file or an empty one: the plugin says what it thinks */
	}
	map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return err_set(e, -errno, "%s: its disk %s: %s", d->name, path, strerror(errno));
	/* read ahead: the chunks are compressed in order by several threads */
	madvise(map, (size_t)sb.st_size, MADV_SEQUENTIAL);
	snprintf(name, sizeof(name), "disk.%s", d->name);
	rc = snapmem_write_bytes(w, name, SEC_DISK, map, (uint64_t)sb.st_size, NULL, &one, e);
	munmap(map, (size_t)sb.st_size);
	if (rc)
		return err_wrap(e, rc, "%s: its disk %s", d->name, path);
	st->chunks += one.chunks;
	st->zero_chunks += one.zero_chunks;
	st->stored_bytes += one.stored_bytes;
	return 0;
}

int disks_save(struct bundle_writer *w, const struct machine_config *cfg,
	       struct snapmem_stats *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		int rc = is_disk(d) ? save_one(w, d, cfg->script, st, e) : 0;
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
		const uint8_t *sec;
		rc = bundle_section_data(&p->b, s, &sec, e);
		if (!rc)
			rc = snapmem_size(sec, s->size, &size, e);
		if (!rc)
			rc = cache_image(&p->b, s, "disk", size, &r, path, sizeof(path), e);
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
