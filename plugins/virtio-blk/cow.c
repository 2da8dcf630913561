/* Copy-on-write overlay: see cow.h for the model and the file layout. */
#include "cow.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header fields: byte offsets, all little-endian. */
enum {
	H_MAGIC = 0,          /* 8 bytes, COW_MAGIC */
	H_VERSION = 8,        /* u32 */
	H_HEADER_SIZE = 12,   /* u32, COW_HEADER_SIZE */
	H_CLUSTER_SIZE = 16,  /* u32, power of two */
	H_FLAGS = 20,         /* u32, 0 */
	H_VIRTUAL_SIZE = 24,  /* u64, the disk as the guest sees it */
	H_BASE_SIZE = 32,     /* u64, the base this overlay was made for */
	H_BASE_MTIME_S = 40,  /* u64 */
	H_BASE_MTIME_NS = 48, /* u32, then a zero u32 */
	H_BASE_HASH = 56,     /* u64, FNV-1a of the base's first 64 KiB */
	H_MAP_OFFSET = 64,    /* u64, COW_HEADER_SIZE */
	H_MAP_SIZE = 72,      /* u64, ceil(clusters / 8) */
	H_DATA_OFFSET = 80,   /* u64, header + map rounded up to a cluster */
	H_CHECKSUM = 88,      /* u64, FNV-1a of bytes [0, 88) */
	H_END = 96,
};

struct cow {
	int base_fd, fd;
	int readonly;
	int private_; /* an unlinked temporary file (cow_open_private) */
	uint64_t base_hash;
	char *base_name, *name;
	const struct smolvm_host_api *api; /* errors: api->set_error(ctx, ...) */
	smolvm_ctx *ctx;
	uint32_t cluster_size;
	uint64_t size, clusters;
	uint64_t map_size, data_offset;
	uint8_t *map;
	/* Map bytes [dirty_lo, dirty_hi) changed since the last flush. */
	uint64_t dirty_lo, dirty_hi;
	uint8_t *scratch; /* one cluster, for copy-up */
	char warning[512];
};

static void errf(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Why the call fails, through the host (set_error); the caller returns
 * -errno. */
static void errf(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api->set_error(ctx, "%s", msg);
}

static uint64_t fnv1a(uint64_t h, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

static void put32(uint8_t *h, unsigned off, uint32_t v)
{
	v = htole32(v);
	memcpy(h + off, &v, 4);
}

static void put64(uint8_t *h, unsigned off, uint64_t v)
{
	v = htole64(v);
	memcpy(h + off, &v, 8);
}

static uint32_t get32(const uint8_t *h, unsigned off)
{
	uint32_t v;
	memcpy(&v, h + off, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *h, unsigned off)
{
	uint64_t v;
	memcpy(&v, h + off, 8);
	return le64toh(v);
}

/* Reads exactly len bytes unless the file ends first; returns the count
 * read or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int cow_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int sync_fd(int fd)
{
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* A private overlay is an unlinked file nobody can find after a crash:
 * making it durable buys nothing (and cost a restore four fdatasyncs). */
static int sync_cow(const struct cow *c)
{
	return c->private_ ? 0 : sync_fd(c->fd);
}

static uint64_t map_bytes(uint64_t clusters)
{
	return (clusters + 7) / 8;
}

static uint64_t data_offset_for(uint64_t map_size, uint32_t cluster)
{
	uint64_t end = COW_HEADER_SIZE + map_size;
	return (end + cluster - 1) / cluster * cluster;
}

static int valid_cluster(uint32_t cs)
{
	return cs >= COW_MIN_CLUSTER && cs <= COW_MAX_CLUSTER && !(cs & (cs - 1));
}

/* An image's identity: a hash of its first COW_HASH_BYTES. */
int cow_image_hash(int fd, uint64_t size, uint64_t *out)
{
	size_t len = size < COW_HASH_BYTES ? (size_t)size : COW_HASH_BYTES;
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = pread_full(fd, buf, len, 0);
	if (n >= 0 && (size_t)n != len)
		n = -EIO;
	if (n >= 0)
		*out = fnv1a(FNV_OFFSET, buf, len);
	free(buf);
	return n < 0 ? (int)n : 0;
}

/* After creating a file, make its directory entry durable too. */
static void sync_parent(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(copy);
}

static int create_overlay(struct cow *c, const struct stat *bst, uint64_t hash)
{
	uint8_t h[COW_HEADER_SIZE];
	int rc;

	c->map_size = map_bytes(c->clusters);
	c->data_offset = data_offset_for(c->map_size, c->cluster_size);
	memset(h, 0, sizeof(h));
	memcpy(h + H_MAGIC, COW_MAGIC, 8);
	put32(h, H_VERSION, COW_VERSION);
	put32(h, H_HEADER_SIZE, COW_HEADER_SIZE);
	put32(h, H_CLUSTER_SIZE, c->cluster_size);
	put64(h, H_VIRTUAL_SIZE, c->size);
	put64(h, H_BASE_SIZE, c->size);
	put64(h, H_BASE_MTIME_S, (uint64_t)bst->st_mtim.tv_sec);
	put32(h, H_BASE_MTIME_NS, (uint32_t)bst->st_mtim.tv_nsec);
	put64(h, H_BASE_HASH, hash);
	put64(h, H_MAP_OFFSET, COW_HEADER_SIZE);
	put64(h, H_MAP_SIZE, c->map_size);
	put64(h, H_DATA_OFFSET, c->data_offset);
	put64(h, H_CHECKSUM, fnv1a(FNV_OFFSET, h, H_CHECKSUM));

	/* The map starts all zero: a sparse hole up to its end. */
	if (ftruncate(c->fd, (off_t)(COW_HEADER_SIZE + c->map_size)) < 0) {
		rc = -errno;
		errf(c->api, c->ctx, "overlay %s: cannot size it: %s", c->name, strerror(-rc));
		return rc;
	}
	rc = cow_pwrite_full(c->fd, h, sizeof(h), 0);
	if (!rc)
		rc = sync_cow(c);
	if (rc) {
		errf(c->api, c->ctx, "overlay %s: cannot write its header: %s", c->name,
		     strerror(-rc));
		return rc;
	}
	if (!c->private_)
		sync_parent(c->name);
	return 0;
}

static int load_overlay(struct cow *c, uint64_t file_size, const struct stat *bst,
			uint64_t hash)
{
	uint8_t h[H_END];
	uint64_t vsize, bsize, map_size, data_off;
	uint32_t cs, version;
	ssize_t n;

	if (file_size < COW_HEADER_SIZE) {
		errf(c->api, c->ctx, "overlay %s: %llu bytes, too short for its %u-byte header "
		     "(corrupt; delete it to start from the base again)", c->name,
		     (unsigned long long)file_size, COW_HEADER_SIZE);
		return -EINVAL;
	}
	n = pread_full(c->fd, h, sizeof(h), 0);
	if (n != (ssize_t)sizeof(h)) {
		errf(c->api, c->ctx, "overlay %s: cannot read its header: %s", c->name,
		     n < 0 ? strerror((int)-n) : "short read");
		return n < 0 ? (int)n : -EIO;
	}
	if (memcmp(h + H_MAGIC, COW_MAGIC, 8)) {
		errf(c->api, c->ctx, "overlay %s: not a smolvm overlay (bad magic)", c->name);
		return -EINVAL;
	}
	version = get32(h, H_VERSION);
	if (version != COW_VERSION) {
		errf(c->api, c->ctx, "overlay %s: format version %u, this build reads %u",
		     c->name, version, COW_VERSION);
		return -EINVAL;
	}
	if (get64(h, H_CHECKSUM) != fnv1a(FNV_OFFSET, h, H_CHECKSUM)) {
		errf(c->api, c->ctx, "overlay %s: header checksum mismatch (corrupt)", c->name);
		return -EINVAL;
	}
	cs = get32(h, H_CLUSTER_SIZE);
	vsize = get64(h, H_VIRTUAL_SIZE);
	bsize = get64(h, H_BASE_SIZE);
	map_size = get64(h, H_MAP_SIZE);
	data_off = get64(h, H_DATA_OFFSET);
	if (get32(h, H_HEADER_SIZE) != COW_HEADER_SIZE || get32(h, H_FLAGS) != 0 ||
	    !valid_cluster(cs) || !vsize || vsize % 512 || vsize != bsize ||
	    get64(h, H_MAP_OFFSET) != COW_HEADER_SIZE) {
		errf(c->api, c->ctx, "overlay %s: invalid header (header size %u, cluster size %u, "
		     "virtual size %llu, flags 0x%x)", c->name, get32(h, H_HEADER_SIZE), cs,
		     (unsigned long long)vsize, get32(h, H_FLAGS));
		return -EINVAL;
	}
	c->cluster_size = cs;
	c->clusters = (vsize + cs - 1) / cs;
	if (map_size != map_bytes(c->clusters) ||
	    data_off != data_offset_for(map_size, cs)) {
		errf(c->api, c->ctx, "overlay %s: map of %llu bytes at data offset %llu does not fit "
		     "%llu clusters (corrupt)", c->name, (unsigned long long)map_size,
		     (unsigned long long)data_off, (unsigned long long)c->clusters);
		return -EINVAL;
	}
	if (file_size < COW_HEADER_SIZE + map_size) {
		errf(c->api, c->ctx, "overlay %s: truncated: its map ends at byte %llu, the file "
		     "has %llu", c->name, (unsigned long long)(COW_HEADER_SIZE + map_size),
		     (unsigned long long)file_size);
		return -EINVAL;
	}
	/* Made for this base? */
	if (bsize != c->size) {
		errf(c->api, c->ctx, "overlay %s was made for a base of %llu bytes, but %s has "
		     "%llu bytes (delete the overlay to start again from this base)", c->name,
		     (unsigned long long)bsize, c->base_name, (unsigned long long)c->size);
		return -EINVAL;
	}
	if (get64(h, H_BASE_HASH) != hash) {
		errf(c->api, c->ctx, "overlay %s was made for a different base: %s has the same "
		     "size (%llu bytes) but its first %u KiB differ", c->name, c->base_name,
		     (unsigned long long)c->size, COW_HASH_BYTES / 1024);
		return -EINVAL;
	}
	if (get64(h, H_BASE_MTIME_S) != (uint64_t)bst->st_mtim.tv_sec ||
	    get32(h, H_BASE_MTIME_NS) != (uint32_t)bst->st_mtim.tv_nsec)
		snprintf(c->warning, sizeof(c->warning),
			 "base %s was modified after overlay %s was made (same size and "
			 "first %u KiB); the disk may be inconsistent", c->base_name, c->name,
			 COW_HASH_BYTES / 1024);
	c->map_size = map_size;
	c->data_offset = data_off;
	return 0;
}

static int load_map(struct cow *c)
{
	ssize_t n;
	unsigned tail = (unsigned)(c->clusters % 8);

	c->map = calloc(1, c->map_size);
	if (!c->map) {
		errf(c->api, c->ctx, "out of memory for the map of %s", c->name);
		return -ENOMEM;
	}
	n = pread_full(c->fd, c->map, c->map_size, COW_HEADER_SIZE);
	if (n != (ssize_t)c->map_size) {
		errf(c->api, c->ctx, "overlay %s: cannot read its map: %s", c->name,
		     n < 0 ? strerror((int)-n) : "short read");
		return n < 0 ? (int)n : -EIO;
	}
	if (tail && (c->map[c->map_size - 1] >> tail)) {
		errf(c->api, c->ctx, "overlay %s: map marks clusters past the end of the disk "
		     "(corrupt)", c->name);
		return -EINVAL;
	}
	return 0;
}

/* An unlinked file in $TMPDIR (or /tmp): it vanishes with the process. */
static int open_private(const struct smolvm_host_api *api, smolvm_ctx *ctx)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd, rc;

	if (!dir || !*dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* No O_TMPFILE on this file system: a unique name, unlinked at once. */
	if ((size_t)snprintf(path, sizeof(path), "%s/smolvm-overlay.XXXXXX", dir) >= sizeof(path)) {
		errf(api, ctx, "TMPDIR %s: name too long", dir);
		return -ENAMETOOLONG;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		errf(api, ctx, "cannot create a private overlay in %s: %s", dir, strerror(-rc));
		return rc;
	}
	unlink(path);
	return fd;
}

static int cow_open_common(const struct smolvm_host_api *api, smolvm_ctx *ctx,
			   const char *base, const char *overlay, const struct cow_params *p,
			   int private_, struct cow **out);

int cow_open(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *base,
	     const char *overlay, const struct cow_params *p, struct cow **out)
{
	return cow_open_common(api, ctx, base, overlay, p, 0, out);
}

int cow_open_private(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *base,
		     uint32_t cluster_size, struct cow **out)
{
	struct cow_params p = { .cluster_size = cluster_size };

	return cow_open_common(api, ctx, base, "(private overlay)", &p, 1, out);
}

static int cow_open_common(const struct smolvm_host_api *api, smolvm_ctx *ctx,
			   const char *base, const char *overlay, const struct cow_params *p,
			   int private_, struct cow **out)
{
	struct cow_params dflt = { 0 };
	struct cow *c;
	struct stat bst, ost;
	uint64_t hash = 0;
	off_t end;
	int rc;

	if (!p)
		p = &dflt;
	*out = NULL;
	if (p->cluster_size && !valid_cluster(p->cluster_size)) {
		errf(api, ctx, "overlay cluster size %u: not a power of two in [%u, %u]",
		     p->cluster_size, COW_MIN_CLUSTER, COW_MAX_CLUSTER);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base_fd = c->fd = -1;
	c->api = api;
	c->ctx = ctx;
	c->readonly = !!p->readonly;
	c->private_ = private_;
	c->cluster_size = p->cluster_size ? p->cluster_size : COW_DEFAULT_CLUSTER;
	c->base_name = strdup(base);
	c->name = strdup(overlay);
	if (!c->base_name || !c->name) {
		rc = -ENOMEM;
		goto out;
	}

	c->base_fd = open(base, O_RDONLY | O_CLOEXEC);
	if (c->base_fd < 0) {
		rc = -errno;
		errf(api, ctx, "cannot open base image %s: %s", base, strerror(-rc));
		goto out;
	}
	/* Readers share the base; a machine writing it directly locks it
	 * exclusively. */
	if (flock(c->base_fd, LOCK_SH | LOCK_NB) < 0) {
		rc = -errno;
		errf(api, ctx, "base image %s is locked for writing by another process",
		     base);
		goto out;
	}
	end = lseek(c->base_fd, 0, SEEK_END);
	if (end < 0 || fstat(c->base_fd, &bst) < 0) {
		rc = -errno;
		errf(api, ctx, "base image %s: %s", base, strerror(-rc));
		goto out;
	}
	c->size = (uint64_t)end;
	if (!c->size || c->size % 512) {
		errf(api, ctx, "base image %s is %llu bytes, not a positive multiple of 512",
		     base, (unsigned long long)c->size);
		rc = -EINVAL;
		goto out;
	}
	rc = cow_image_hash(c->base_fd, c->size, &hash);
	if (rc) {
		errf(api, ctx, "base image %s: cannot read it: %s", base, strerror(-rc));
		goto out;
	}

	c->base_hash = hash;
	if (private_) {
		c->fd = open_private(api, ctx);
		if (c->fd < 0) {
			rc = c->fd;
			goto out;
		}
		c->clusters = (c->size + c->cluster_size - 1) / c->cluster_size;
		rc = create_overlay(c, &bst, hash);
		goto opened;
	}
	c->fd = open(overlay, c->readonly ? O_RDONLY | O_CLOEXEC
					  : O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->fd < 0) {
		rc = -errno;
		errf(api, ctx, "cannot open overlay %s: %s%s", overlay, strerror(-rc),
		     c->readonly && rc == -ENOENT ? " (a readonly disk does not create it)" : "");
		goto out;
	}
	if (fstat(c->fd, &ost) < 0) {
		rc = -errno;
		errf(api, ctx, "overlay %s: %s", overlay, strerror(-rc));
		goto out;
	}
	if (ost.st_dev == bst.st_dev && ost.st_ino == bst.st_ino) {
		errf(api, ctx, "overlay %s and base %s are the same file", overlay, base);
		rc = -EINVAL;
		goto out;
	}
	if (!S_ISREG(ost.st_mode)) {
		errf(api, ctx, "overlay %s is not a regular file", overlay);
		rc = -EINVAL;
		goto out;
	}
	if (flock(c->fd, (c->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		rc = -errno;
		errf(api, ctx, "overlay %s is in use by another process", overlay);
		goto out;
	}
	/* Its size again, now that nobody else can be creating it. */
	if (fstat(c->fd, &ost) < 0) {
		rc = -errno;
		errf(api, ctx, "overlay %s: %s", overlay, strerror(-rc));
		goto out;
	}
	if (ost.st_size == 0 && !c->readonly) {
		c->clusters = (c->size + c->cluster_size - 1) / c->cluster_size;
		rc = create_overlay(c, &bst, hash);
	} else {
		rc = load_overlay(c, (uint64_t)ost.st_size, &bst, hash);
	}
opened:
	if (!rc)
		rc = load_map(c);
	if (rc)
		goto out;
	c->scratch = malloc(c->cluster_size);
	if (!c->scratch) {
		rc = -ENOMEM;
		goto out;
	}
	c->dirty_lo = c->map_size;
	c->dirty_hi = 0;
	*out = c;
	return 0;
out:
	if (rc == -ENOMEM)
		errf(api, ctx, "out of memory");
	if (c->fd >= 0)
		close(c->fd);
	if (c->base_fd >= 0)
		close(c->base_fd);
	free(c->map);
	free(c->base_name);
	free(c->name);
	free(c);
	return rc;
}

int cow_close(struct cow *c)
{
	int rc;

	if (!c)
		return 0;
	rc = cow_flush(c);
	close(c->fd);
	close(c->base_fd);
	free(c->scratch);
	free(c->map);
	free(c->base_name);
	free(c->name);
	free(c);
	return rc;
}

uint64_t cow_size(const struct cow *c) { return c->size; }
uint64_t cow_base_hash(const struct cow *c) { return c->base_hash; }
int cow_fd(const struct cow *c) { return c->fd; }
uint64_t cow_data_offset(const struct cow *c) { return c->data_offset; }
const uint8_t *cow_map(const struct cow *c, uint64_t *len)
{
	*len = c->map_size;
	return c->map;
}
uint32_t cow_cluster_size(const struct cow *c) { return c->cluster_size; }
uint64_t cow_clusters(const struct cow *c) { return c->clusters; }
const char *cow_warning(const struct cow *c) { return c->warning[0] ? c->warning : NULL; }

int cow_allocated(const struct cow *c, uint64_t cluster)
{
	return cluster < c->clusters && (c->map[cluster / 8] >> (cluster % 8) & 1);
}

uint64_t cow_allocated_count(const struct cow *c)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < c->map_size; i++)
		n += (uint64_t)__builtin_popcount(c->map[i]);
	return n;
}

static void mark_allocated(struct cow *c, uint64_t cluster)
{
	uint64_t byte = cluster / 8;

	c->map[byte] |= (uint8_t)(1u << (cluster % 8));
	if (byte < c->dirty_lo)
		c->dirty_lo = byte;
	if (byte + 1 > c->dirty_hi)
		c->dirty_hi = byte + 1;
}

static int in_range(const struct cow *c, size_t len, uint64_t off)
{
	return off <= c->size && len <= c->size - off;
}

/* Bytes of cluster i (the last one may be short). */
uint32_t cow_cluster_len(const struct cow *c, uint64_t i)
{
	uint64_t start = i * c->cluster_size;
	uint64_t left = c->size - start;
	return left < c->cluster_size ? (uint32_t)left : c->cluster_size;
}

int cow_read(struct cow *c, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (!in_range(c, len, off))
		return -EINVAL;
	while (len) {
		uint64_t i = off / c->cluster_size;
		uint32_t within = (uint32_t)(off % c->cluster_size);
		size_t n = c->cluster_size - within;
		ssize_t got;

		if (n > len)
			n = len;
		if (cow_allocated(c, i)) {
			got = pread_full(c->fd, p, n, c->data_offset + i * c->cluster_size + within);
			/* Past the overlay's end is a hole: zeros. */
			if (got >= 0 && (size_t)got < n)
				memset(p + got, 0, n - (size_t)got);
		} else {
			got = pread_full(c->base_fd, p, n, off);
			if (got >= 0 && (size_t)got < n)
				got = -EIO; /* the base shrank under us */
		}
		if (got < 0)
			return (int)got;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int cow_write(struct cow *c, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	int rc;

	if (c->readonly)
		return -EROFS;
	if (!in_range(c, len, off))
		return -EINVAL;
	while (len) {
		uint64_t i = off / c->cluster_size;
		uint32_t within = (uint32_t)(off % c->cluster_size);
		uint32_t clen = cow_cluster_len(c, i);
		uint64_t at = c->data_offset + i * c->cluster_size;
		size_t n = clen - within;

		if (n > len)
			n = len;
		if (cow_allocated(c, i)) {
			rc = cow_pwrite_full(c->fd, p, n, at + within);
		} else if (within == 0 && n == clen) {
			rc = cow_pwrite_full(c->fd, p, n, at);
		} else {
			/* Copy-up: the cluster's other bytes come from the base. */
			ssize_t got = pread_full(c->base_fd, c->scratch, clen, i * c->cluster_size);
			if (got >= 0 && (size_t)got != clen)
				got = -EIO;
			if (got < 0)
				return (int)got;
			memcpy(c->scratch + within, p, n);
			rc = cow_pwrite_full(c->fd, c->scratch, clen, at);
		}
		if (rc)
			return rc;
		/* Only now that the data is written does the map point at it. */
		if (!cow_allocated(c, i))
			mark_allocated(c, i);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int cow_flush(struct cow *c)
{
	int rc;

	if (c->readonly)
		return 0;
	if (c->dirty_lo < c->dirty_hi) {
		/* The clusters first, so that the durable map never points at
		 * data that is not. */
		rc = sync_cow(c);
		if (rc)
			return rc;
		rc = cow_pwrite_full(c->fd, c->map + c->dirty_lo, c->dirty_hi - c->dirty_lo,
				 COW_HEADER_SIZE + c->dirty_lo);
		if (rc)
			return rc;
		c->dirty_lo = c->map_size;
		c->dirty_hi = 0;
	}
	return sync_cow(c);
}

int cow_check_map(const struct smolvm_host_api *api, smolvm_ctx *ctx, uint64_t size,
		  uint32_t cluster_size, const uint8_t *map, uint64_t map_len)
{
	uint64_t clusters;
	unsigned tail;

	if (!valid_cluster(cluster_size)) {
		errf(api, ctx, "snapshot: bad overlay map: "
		     "cluster size %u: not a power of two in [%u, %u]",
		     cluster_size, COW_MIN_CLUSTER, COW_MAX_CLUSTER);
		return -EINVAL;
	}
	clusters = (size + cluster_size - 1) / cluster_size;
	if (map_len != map_bytes(clusters)) {
		errf(api, ctx, "snapshot: bad overlay map: "
		     "map of %llu bytes for %llu clusters of %u bytes (want %llu)",
		     (unsigned long long)map_len, (unsigned long long)clusters, cluster_size,
		     (unsigned long long)map_bytes(clusters));
		return -EINVAL;
	}
	tail = (unsigned)(clusters % 8);
	if (map_len && tail && (map[map_len - 1] >> tail)) {
		errf(api, ctx, "snapshot: bad overlay map: "
		     "map marks clusters past the end of the disk");
		return -EINVAL;
	}
	return 0;
}

int cow_import_cluster(struct cow *c, uint64_t i, const void *data, uint32_t len)
{
	int rc;

	if (c->readonly)
		return -EROFS;
	if (i >= c->clusters || len != cow_cluster_len(c, i))
		return -EINVAL;
	rc = cow_pwrite_full(c->fd, data, len, c->data_offset + i * c->cluster_size);
	if (!rc && !cow_allocated(c, i))
		mark_allocated(c, i);
	return rc;
}
