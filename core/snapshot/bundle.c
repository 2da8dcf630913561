#include "snapshot/bundle.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/dirs.h"

/* Little-endian field access on byte buffers. */
static void put_u32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

const char *bundle_type_name(uint32_t type)
{
	switch (type) {
	case SEC_MANIFEST: return "manifest";
	case SEC_LUA: return "lua";
	case SEC_VM: return "vm";
	case SEC_CPU: return "cpu";
	case SEC_DEVICE: return "device";
	case SEC_MEMORY: return "memory";
	case SEC_KEPT: return "kept";
	case SEC_DISK: return "disk";
	case SEC_PARENT: return "parent";
	case SEC_IMAGE: return "image";
	}
	return "unknown";
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int bundle_writer_open(struct bundle_writer *w, const char *path, struct err *e)
{
	uint8_t zero[BUNDLE_HEADER_SIZE] = { 0 };
	int rc;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->path = strdup(path);
	w->xxh = XXH3_createState();
	if (!w->path || !w->xxh || sodium_init() < 0) {
		bundle_writer_abort(w);
		return err_set(e, -ENOMEM, "out of memory");
	}
	/* Next to the target, so the final rename stays on one filesystem;
	 * a fresh name (O_EXCL) where a link planted in a shared directory
	 * could have redirected a predictable one. */
	w->fd = tmp_beside(path, &w->tmp_path);
	if (w->fd < 0) {
		rc = err_set(e, w->fd, "%s: cannot create a file beside it: %s", path,
			     strerror(-w->fd));
		bundle_writer_abort(w);
		return rc;
	}
	/* The header is written last; reserve its place. */
	rc = write_all(w->fd, zero, sizeof(zero));
	if (rc) {
		bundle_writer_abort(w);
		return err_set(e, rc, "%s: %s", path, strerror(-rc));
	}
	w->pos = BUNDLE_HEADER_SIZE;
	return 0;
}

int bundle_section_begin(struct bundle_writer *w, const char *name, uint32_t type,
			 uint32_t compression, uint64_t raw_size, struct err *e)
{
	struct bundle_section *s;

	if (w->open || strlen(name) > BUNDLE_NAME_MAX || !*name || w->n >= BUNDLE_MAX_SECTIONS)
		return err_set(e, -EINVAL, "bundle: bad section \"%s\"", name);
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		s = realloc(w->secs, cap * sizeof(*s));
		if (!s)
			return err_set(e, -ENOMEM, "out of memory");
		w->secs = s;
		w->cap = cap;
	}
	s = &w->secs[w->n];
	memset(s, 0, sizeof(*s));
	strcpy(s->name, name);
	s->type = type;
	s->compression = compression;
	s->raw_size = raw_size;
	s->offset = w->pos;
	XXH3_64bits_reset(w->xxh);
	crypto_generichash_init(&w->b2, NULL, 0, BUNDLE_HASH_SIZE);
	w->open = 1;
	w->sealed = 0;
	return 0;
}

int bundle_section_write(struct bundle_writer *w, const void *buf, size_t len, struct err *e)
{
	int rc;

	if (!w->open)
		return err_set(e, -EINVAL, "bundle: no open section");
	rc = write_all(w->fd, buf, len);
	if (rc)
		return err_set(e, rc, "%s: %s", w->tmp_path, strerror(-rc));
	XXH3_64bits_update(w->xxh, buf, len);
	if (!w->sealed)
		crypto_generichash_update(&w->b2, buf, len);
	w->pos += len;
	return 0;
}

int bundle_section_end(struct bundle_writer *w, struct err *e)
{
	struct bundle_section *s = &w->secs[w->n];

	if (!w->open)
		return err_set(e, -EINVAL, "bundle: no open section");
	s->size = w->pos - s->offset;
	if (s->compression == COMP_NONE)
		s->raw_size = s->size;
	s->hash = XXH3_64bits_digest(w->xxh);
	if (!w->sealed)
		bundle_section_seal_head(w);
	w->n++;
	w->open = 0;
	return 0;
}

void bundle_section_seal_head(struct bundle_writer *w)
{
	struct bundle_section *s = &w->secs[w->n];

	if (!w->open || w->sealed)
		return;
	s->covered = w->pos - s->offset;
	crypto_generichash_final(&w->b2, s->digest, BUNDLE_HASH_SIZE);
	w->sealed = 1;
}

void bundle_signed_message(const uint8_t id[BUNDLE_HASH_SIZE], uint8_t msg[BUNDLE_SIGNED_SIZE])
{
	memcpy(msg, BUNDLE_SIGNED_TAG, 16);
	memcpy(msg + 16, id, BUNDLE_HASH_SIZE);
}

size_t bundle_sigblock_encode(uint8_t *p, const struct bundle_signature *v, size_t n)
{
	memcpy(p, "SSIG", 4);
	put_u32(p + 4, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		memcpy(p + 8 + i * 96, v[i].key, 32);
		memcpy(p + 8 + i * 96 + 32, v[i].sig, 64);
	}
	return 8 + n * 96;
}

int bundle_add(struct bundle_writer *w, const char *name, uint32_t type,
	       const void *buf, size_t len, struct err *e)
{
	int rc = bundle_section_begin(w, name, type, COMP_NONE, len, e);
	if (!rc)
		rc = bundle_section_write(w, buf, len, e);
	if (!rc)
		rc = bundle_section_end(w, e);
	return rc;
}

static void encode_entry(uint8_t *p, const struct bundle_section *s)
{
	memset(p, 0, BUNDLE_TOC_ENTRY_SIZE);
	memcpy(p, s->name, strlen(s->name));
	put_u32(p + 64, s->type);
	put_u32(p + 68, s->compression);
	put_u64(p + 72, s->offset);
	put_u64(p + 80, s->size);
	put_u64(p + 88, s->raw_size);
	put_u64(p + 96, s->hash);
	put_u32(p + 104, s->flags);
	put_u64(p + 112, s->covered);
	memcpy(p + 128, s->digest, BUNDLE_HASH_SIZE);
}

int bundle_writer_commit(struct bundle_writer *w, struct err *e)
{
	size_t toc_size = w->n * BUNDLE_TOC_ENTRY_SIZE;
	uint8_t *toc = calloc(1, toc_size ? toc_size : 1);
	uint8_t hdr[BUNDLE_HEADER_SIZE] = { 0 };
	int rc;

	if (!toc)
		return err_set(e, -ENOMEM, "out of memory");
	if (w->open) {
		free(toc);
		return err_set(e, -EINVAL, "bundle: a section is still open");
	}
	for (size_t i = 0; i < w->n; i++)
		encode_entry(toc + i * BUNDLE_TOC_ENTRY_SIZE, &w->secs[i]);
	rc = write_all(w->fd, toc, toc_size);

	memcpy(hdr, BUNDLE_MAGIC, 8);
	put_u32(hdr + 8, BUNDLE_VERSION);
	put_u32(hdr + 12, BUNDLE_HEADER_SIZE);
	put_u64(hdr + 16, w->pos);
	put_u32(hdr + 24, (uint32_t)w->n);
	put_u32(hdr + 28, BUNDLE_TOC_ENTRY_SIZE);
	put_u64(hdr + 32, w->pos + toc_size);
	put_u64(hdr + 40, XXH3_64bits(toc, toc_size));
	put_u64(hdr + 56, XXH3_64bits(hdr, 56));
	free(toc);
	if (!rc && pwrite(w->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		rc = -errno ? -errno : -EIO;
	/* The mode a new file gets (the temporary one is 0600). */
	if (!rc) {
		mode_t um = umask(0);
		umask(um);
		if (fchmod(w->fd, 0666 & ~um) < 0)
			rc = -errno;
	}
	/* Durable before it replaces anything. */
	if (!rc && fsync(w->fd) < 0)
		rc = -errno;
	if (!rc && close(w->fd) < 0)
		rc = -errno;
	w->fd = -1;
	if (!rc && rename(w->tmp_path, w->path) < 0)
		rc = -errno;
	if (rc) {
		err_set(e, rc, "%s: %s", w->path, strerror(-rc));
		bundle_writer_abort(w);
		return rc;
	}
	/* The rename itself: sync the directory. */
	char *slash = strrchr(w->path, '/');
	char *dir = slash ? strndup(w->path, (size_t)(slash - w->path) + (slash == w->path)) : strdup(".");
	int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	free(w->tmp_path);
	w->tmp_path = NULL;
	bundle_writer_abort(w);
	return 0;
}

void bundle_writer_abort(struct bundle_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_path)
		unlink(w->tmp_path);
	free(w->tmp_path);
	free(w->path);
	free(w->secs);
	if (w->xxh)
		XXH3_freeState(w->xxh);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

/* ---- reading ------------------------------------------------------------- */

static int tail_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct bundle_section *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The signatures after the TOC: "SSIG" u32 count, count x {key, sig}. */
static int parse_sigs(struct bundle *b, const uint8_t *p, uint64_t len, struct err *e)
{
	uint32_t n;

	if (!len)
		return 0;
	n = len >= 8 ? get_u32(p + 4) : 0;
	if (len < 8 || memcmp(p, "SSIG", 4) || !n || n > BUNDLE_SIG_MAX || len != 8 + 96ull * n)
		return err_set(e, -EBADMSG, "%s: malformed signature block", b->path);
	b->sigs = calloc(n, sizeof(*b->sigs));
	if (!b->sigs)
		return err_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		memcpy(b->sigs[i].key, p + 8 + i * 96, 32);
		memcpy(b->sigs[i].sig, p + 8 + i * 96 + 32, 64);
	}
	b->nsigs = n;
	return 0;
}

static int parse(struct bundle *b, struct err *e)
{
	const uint8_t *h = b->map;
	uint64_t toc_off, file_size, sig_size = 0;
	uint32_t count, entry_size, version;
	struct bundle_section *sorted;
	int rc;

	if (b->size < BUNDLE_HEADER_SIZE)
		return err_set(e, -EBADMSG, "%s: %llu bytes, too short to be a bundle", b->path,
			       (unsigned long long)b->size);
	if (memcmp(h, BUNDLE_MAGIC, 8))
		return err_set(e, -EBADMSG, "%s: not a smolvm bundle (bad magic)", b->path);
	if (get_u64(h + 56) != XXH3_64bits(h, 56))
		return err_set(e, -EBADMSG, "%s: header checksum mismatch (corrupt header)", b->path);
	version = get_u32(h + 8);
	if (version < 1 || version > BUNDLE_VERSION)
		return err_set(e, -EPROTO, "%s: bundle format version %u, this smolvm reads 1 to %d",
			       b->path, version, BUNDLE_VERSION);
	b->version = version;
	toc_off = get_u64(h + 16);
	count = get_u32(h + 24);
	entry_size = get_u32(h + 28);
	file_size = get_u64(h + 32);
	if (version >= 2)
		sig_size = get_u64(h + 48);
	if (get_u32(h + 12) != BUNDLE_HEADER_SIZE ||
	    entry_size != (version == 1 ? BUNDLE_TOC_ENTRY_SIZE_V1 : BUNDLE_TOC_ENTRY_SIZE) ||
	    count > BUNDLE_MAX_SECTIONS || sig_size > 8 + 96 * BUNDLE_SIG_MAX)
		return err_set(e, -EBADMSG, "%s: malformed header", b->path);
	if (file_size != b->size)
		return err_set(e, -EBADMSG, "%s: %llu bytes, the header says %llu (truncated?)",
			       b->path, (unsigned long long)b->size, (unsigned long long)file_size);
	if (toc_off < BUNDLE_HEADER_SIZE || sig_size > b->size || toc_off > b->size - sig_size ||
	    b->size - sig_size - toc_off != (uint64_t)count * entry_size)
		return err_set(e, -EBADMSG, "%s: table of contents out of range", b->path);
	b->toc_offset = toc_off;
	b->toc_size = (uint64_t)count * entry_size;
	if (get_u64(h + 40) != XXH3_64bits(b->map + toc_off, (size_t)b->toc_size))
		return err_set(e, -EBADMSG, "%s: table of contents checksum mismatch", b->path);
	if (version >= 2) {
		crypto_generichash(b->id, sizeof(b->id), b->map + toc_off, (size_t)b->toc_size,
				   NULL, 0);
		rc = parse_sigs(b, b->map + toc_off + b->toc_size, sig_size, e);
		if (rc)
			return rc;
	}

	b->secs = calloc(count ? count : 1, sizeof(*b->secs));
	if (!b->secs)
		return err_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = b->map + toc_off + (uint64_t)i * entry_size;
		struct bundle_section *s = &b->secs[i];
		const uint8_t *nul = memchr(p, 0, BUNDLE_NAME_MAX + 1);
		if (!p[0] || !nul || !tail_zero(nul, (size_t)(p + BUNDLE_NAME_MAX + 1 - nul)))
			return err_set(e, -EBADMSG, "%s: section %u has a bad name", b->path, i);
		strcpy(s->name, (const char *)p);
		s->type = get_u32(p + 64);
		s->compression = get_u32(p + 68);
		s->offset = get_u64(p + 72);
		s->size = get_u64(p + 80);
		s->raw_size = get_u64(p + 88);
		s->hash = get_u64(p + 96);
		s->flags = get_u32(p + 104);
		s->covered = s->size;
		if (version >= 2) {
			s->covered = get_u64(p + 112);
			memcpy(s->digest, p + 128, BUNDLE_HASH_SIZE);
			/* Only the memory and disk sections' hashes may cover
			 * less than all of them (their chunks carry their own):
			 * any other section is read whole, so every byte of it
			 * must be covered. */
			if (get_u32(p + 108) || get_u64(p + 120) || s->covered > s->size ||
			    (s->covered < s->size &&
			     !(s->type == SEC_MEMORY && !strcmp(s->name, "memory")) &&
			     !(s->type == SEC_DISK && !strncmp(s->name, "disk.", 5)) &&
			     !(s->type == SEC_IMAGE && !strncmp(s->name, "image.", 6))))
				return err_set(e, -EBADMSG, "%s: section %s: malformed entry", b->path,
					       s->name);
		}
		if (s->compression > COMP_ZSTD)
			return err_set(e, -EBADMSG, "%s: section %s: unknown compression %u", b->path,
				       s->name, s->compression);
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(b->secs[j].name, s->name))
				return err_set(e, -EBADMSG, "%s: section %s appears twice", b->path, s->name);
	}
	b->n = count;

	/* Sections must tile [header, toc) exactly: no overlap, no gap. */
	sorted = malloc((count ? count : 1) * sizeof(*sorted));
	if (!sorted)
		return err_set(e, -ENOMEM, "out of memory");
	memcpy(sorted, b->secs, count * sizeof(*sorted));
	qsort(sorted, count, sizeof(*sorted), cmp_offset);
	uint64_t at = BUNDLE_HEADER_SIZE;
	for (uint32_t i = 0; i < count; i++) {
		if (sorted[i].offset != at || sorted[i].size > toc_off - at) {
			rc = err_set(e, -EBADMSG, "%s: section %s at %llu+%llu overlaps or leaves a gap",
				 b->path, sorted[i].name, (unsigned long long)sorted[i].offset,
				 (unsigned long long)sorted[i].size);
			free(sorted);
			return rc;
		}
		at += sorted[i].size;
	}
	free(sorted);
	if (at != toc_off)
		return err_set(e, -EBADMSG, "%s: unaccounted bytes before the table of contents", b->path);
	return 0;
}

int bundle_open_mem(struct bundle *b, const void *data, size_t len, struct err *e)
{
	int rc;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	b->map = data;
	b->size = len;
	b->path = strdup("(memory)");
	if (sodium_init() < 0)
		return err_set(e, -EIO, "libsodium could not start");
	rc = parse(b, e);
	if (rc) {
		b->map = NULL; /* not ours to unmap */
		bundle_close(b);
	}
	return rc;
}

int bundle_open(struct bundle *b, const char *path, struct err *e)
{
	struct stat st;
	void *map;
	int rc;

	memset(b, 0, sizeof(*b));
	/* (non-blocking: a FIFO under a bundle's name must not hang us;
	 * anything but a regular file is refused below) */
	b->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	b->path = strdup(path);
	if (sodium_init() < 0)
		errno = EIO, close(b->fd), b->fd = -1;
	if (b->fd < 0) {
		rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
		bundle_close(b);
		return rc;
	}
	if (fstat(b->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		bundle_close(b);
		return err_set(e, -EINVAL, "%s: not a regular file", path);
	}
	b->size = (uint64_t)st.st_size;
	if (b->size) {
		map = mmap(NULL, b->size, PROT_READ, MAP_SHARED, b->fd, 0);
		if (map == MAP_FAILED) {
			rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
			bundle_close(b);
			return rc;
		}
		b->map = map;
	}
	rc = parse(b, e);
	if (rc)
		bundle_close(b);
	return rc;
}

void bundle_close(struct bundle *b)
{
	if (b->map && b->fd >= 0)
		munmap((void *)b->map, b->size);
	if (b->fd >= 0)
		close(b->fd);
	free(b->secs);
	free(b->sigs);
	free(b->path);
	memset(b, 0, sizeof(*b));
	b->fd = -1;
}

const struct bundle_section *bundle_find(const struct bundle *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->secs[i].name, name))
			return &b->secs[i];
	return NULL;
}

int bundle_section_data(const struct bundle *b, const struct bundle_section *s,
			const uint8_t **data, struct err *e)
{
	const uint8_t *p = b->map + s->offset;
	uint8_t d[BUNDLE_HASH_SIZE];

	if (b->version == 1) {
		if (XXH3_64bits(p, (size_t)s->size) != s->hash)
			return err_set(e, -EBADMSG, "%s: section %s checksum mismatch (corrupt)",
				       b->path, s->name);
	} else {
		crypto_generichash(d, sizeof(d), p, (size_t)s->covered, NULL, 0);
		if (memcmp(d, s->digest, sizeof(d)))
			return err_set(e, -EBADMSG, "%s: section %s does not match its hash "
				       "(corrupt or modified)", b->path, s->name);
	}
	*data = p;
	return 0;
}

int bundle_verify_all(const struct bundle *b, struct err *e)
{
	const uint8_t *p;

	for (size_t i = 0; i < b->n; i++) {
		const struct bundle_section *s = &b->secs[i];
		int rc = bundle_section_data(b, s, &p, e);
		if (rc)
			return rc;
		if (b->version >= 2 && XXH3_64bits(p, (size_t)s->size) != s->hash)
			return err_set(e, -EBADMSG, "%s: section %s checksum mismatch (corrupt)",
				       b->path, s->name);
	}
	return 0;
}
