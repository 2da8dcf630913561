#include "snapshot/lineage.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/dirs.h"

#define PARENT_MAGIC "SPAR"
#define PARENT_VERSION 1
#define PARENT_HEAD (4 + 4 + BUNDLE_HASH_SIZE + 8 + 4)

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void hex_of(const uint8_t id[BUNDLE_HASH_SIZE], char hex[2 * BUNDLE_HASH_SIZE + 1])
{
	sodium_bin2hex(hex, 2 * BUNDLE_HASH_SIZE + 1, id, BUNDLE_HASH_SIZE);
}

static int name_ok(const char *name, size_t len)
{
	return len && len <= LINEAGE_NAME_MAX && !memchr(name, '/', len) &&
	       !memchr(name, 0, len) && !(len == 1 && name[0] == '.') &&
	       !(len == 2 && name[0] == '.' && name[1] == '.');
}

int lineage_parent(const struct bundle *b, struct parent_ref *ref, struct err *e)
{
	const struct bundle_section *s = bundle_find(b, "parent");
	const uint8_t *p;
	uint32_t version, len;
	int rc;

	memset(ref, 0, sizeof(*ref));
	if (!s)
		return 0;
	if (s->type != SEC_PARENT || b->version < 2)
		return err_set(e, -EBADMSG, "%s: section parent is not a parent reference", b->path);
	rc = bundle_section_data(b, s, &p, e);
	if (rc)
		return rc;
	if (s->size < PARENT_HEAD || memcmp(p, PARENT_MAGIC, 4))
		return err_set(e, -EBADMSG, "%s: section parent: bad header", b->path);
	memcpy(&version, p + 4, 4);
	memcpy(&len, p + PARENT_HEAD - 4, 4);
	version = le32toh(version);
	len = le32toh(len);
	if (version != PARENT_VERSION)
		return err_set(e, -EBADMSG, "%s: section parent: version %u, this build reads %u",
			       b->path, version, PARENT_VERSION);
	if (s->size != PARENT_HEAD + (uint64_t)len || !name_ok((const char *)p + PARENT_HEAD, len))
		return err_set(e, -EBADMSG, "%s: section parent: bad file name", b->path);
	memcpy(ref->id, p + 8, BUNDLE_HASH_SIZE);
	memcpy(&ref->size, p + 8 + BUNDLE_HASH_SIZE, 8);
	ref->size = le64toh(ref->size);
	memcpy(ref->name, p + PARENT_HEAD, len);
	return 1;
}

static int cache_path_of(const uint8_t id[BUNDLE_HASH_SIZE], char *path, size_t len,
			 struct err *e)
{
	char dir[4000], hex[2 * BUNDLE_HASH_SIZE + 1];
	int rc = cache_dir_private(dir, sizeof(dir), NULL, e);

	if (rc)
		return rc;
	hex_of(id, hex);
	if ((size_t)snprintf(path, len, "%s/bundle-%s.smolmachine", dir, hex) >= len)
		return err_set(e, -ENAMETOOLONG, "cache path too long");
	return 0;
}

/* 1: `path` is the bundle of identity id (opened into out); 0: no such
 * file; -1: a file that is another bundle (or none), left closed. */
static int try_open(const char *path, const uint8_t id[BUNDLE_HASH_SIZE], struct bundle *out)
{
	struct err e;

	if (access(path, F_OK))
		return 0;
	if (bundle_open(out, path, &e))
		return -1;
	if (out->version >= 2 && !memcmp(out->id, id, BUNDLE_HASH_SIZE))
		return 1;
	bundle_close(out);
	return -1;
}

/* The parent ref names, next to `child` or in the cache. */
static int find_parent(const struct bundle *child, const struct parent_ref *ref,
		       struct bundle *out, struct err *e)
{
	const char *slash = strrchr(child->path, '/');
	char beside[4400], cached[4200], hex[2 * BUNDLE_HASH_SIZE + 1];
	int got, in_cache;

	/* A bundle read from memory (bundle_open_mem: fuzzing, tests) is in
	 * no directory: its path "(memory)" would make the name the bytes
	 * chose be opened in the working directory, and the cache directory
	 * be created, on behalf of input that is not a file at all. */
	if (child->fd < 0) {
		hex_of(ref->id, hex);
		return err_set(e, -ENOENT, "%s: its parent %s (identity %.16s...) cannot be looked "
			       "for: this bundle was not read from a file", child->path, ref->name,
			       hex);
	}
	snprintf(beside, sizeof(beside), "%.*s%s", slash ? (int)(slash - child->path + 1) : 0,
		 child->path, ref->name);
	got = try_open(beside, ref->id, out);
	if (got == 1)
		return 0;
	in_cache = cache_path_of(ref->id, cached, sizeof(cached), e) == 0;
	if (in_cache && try_open(cached, ref->id, out) == 1)
		return 0;
	hex_of(ref->id, hex);
	if (got < 0)
		return err_set(e, -ESTALE, "%s: its parent %s changed since it was saved: it is not "
			       "the bundle of identity %.16s... any more%s (put that one back, or "
			       "use a copy saved with --flat)", child->path, beside, hex,
			       in_cache ? ", and the cache does not hold it" : "");
	return err_set(e, -ENOENT, "%s: its parent %s (identity %.16s...) is neither next to "
		       "it nor in the cache%s%s%s: put the parent next to it, or use a copy saved "
		       "with --flat or made with smolvm flatten where the parent is",
		       child->path, ref->name, hex, in_cache ? " (" : "",
		       in_cache ? cached : "", in_cache ? ")" : "");
}

int lineage_open(const struct bundle *b, struct lineage *l, struct err *e)
{
	const struct bundle *cur = b;
	struct parent_ref ref;
	int rc;

	memset(l, 0, sizeof(*l));
	for (;;) {
		rc = lineage_parent(cur, &ref, e);
		if (rc <= 0)
			break;
		if (l->n == LINEAGE_MAX) {
			rc = err_set(e, -ELOOP, "%s: more than %d generations of parents (flatten "
				     "one of them: smolvm flatten)", b->path, LINEAGE_MAX);
			break;
		}
		rc = find_parent(cur, &ref, &l->up[l->n], e);
		if (rc)
			break;
		cur = &l->up[l->n++];
	}
	if (rc < 0)
		lineage_close(l);
	return rc < 0 ? rc : 0;
}

void lineage_close(struct lineage *l)
{
	for (size_t i = 0; i < l->n; i++)
		bundle_close(&l->up[i]);
	l->n = 0;
}

/* Section s of b, whose parent is l->up[first] (its grandparent the next). */
static int view_from(const struct bundle *b, const struct lineage *l, size_t first,
		     const struct bundle_section *s, struct chunked *c, struct err *e)
{
	const struct bundle *cur = b;
	const struct bundle_section *cs = s;
	const uint8_t *data;
	size_t k;
	int rc;

	for (k = 0;; k++) {
		if (cur->version >= 2 && (rc = bundle_section_data(cur, cs, &data, e)))
			return rc;
		rc = snapmem_open(cur->map + cs->offset, cs->size,
				  cur->version >= 2 ? cs->covered : cs->size, &c->v[k], e);
		if (rc)
			return err_wrap(e, rc, "%s: section %s", cur->path, cs->name);
		c->v[k].name = cs->name;
		c->v[k].path = cur->path;
		if (!c->v[k].in_parent)
			break;
		if (first + k >= l->n)
			return err_set(e, -EBADMSG, "%s: section %s has chunks in a parent bundle, "
				       "but it names none", cur->path, cs->name);
		cur = &l->up[first + k];
		cs = bundle_find(cur, s->name);
		if (!cs || cs->type != s->type)
			return err_set(e, -EBADMSG, "%s: its parent %s has no section %s",
				       b->path, cur->path, s->name);
	}
	for (; k > 0; k--) {
		rc = snapmem_link(&c->v[k - 1], &c->v[k], e);
		if (rc)
			return err_wrap(e, rc, "%s: section %s",
					k == 1 ? b->path : l->up[first + k - 2].path, s->name);
	}
	return 0;
}

int lineage_view(const struct bundle *b, const struct lineage *l, const struct bundle_section *s,
		 struct chunked *c, struct err *e)
{
	return view_from(b, l, 0, s, c, e);
}

int lineage_view_of(const struct bundle *b, const struct lineage *l, const struct bundle *which,
		    const char *name, struct chunked *c, struct err *e)
{
	size_t first = 0;
	const struct bundle_section *s;

	while (which != b && first < l->n && which != &l->up[first])
		first++;
	if (which != b && first == l->n)
		return err_set(e, -EINVAL, "%s is not an ancestor of %s", which->path, b->path);
	if (which != b)
		first++;
	s = bundle_find(which, name);
	if (!s || !bundle_chunked(s->type))
		return -ENOENT;
	return view_from(which, l, first, s, c, e);
}

void lineage_costs(const struct chunked *c, struct chunk_costs *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < c->v[0].nchunks; i++) {
		const uint8_t *p;
		uint32_t len;
		size_t k = 0;

		if (snapmem_chunk_zero(&c->v[0], i)) {
			out->zero++;
			continue;
		}
		while (k < LINEAGE_MAX && snapmem_chunk_in_parent(&c->v[k], i))
			k++;
		snapmem_chunk_frame(&c->v[k], i, &p, &len);
		out->chunks[k]++;
		out->bytes[k] += len;
	}
}

void lineage_ref_of(const struct bundle *b, struct parent_ref *ref)
{
	memset(ref, 0, sizeof(*ref));
	memcpy(ref->id, b->id, BUNDLE_HASH_SIZE);
	ref->size = b->size;
	snprintf(ref->name, sizeof(ref->name), "%s", base_name(b->path));
}

int lineage_write(struct bundle_writer *w, const struct parent_ref *ref, struct err *e)
{
	uint8_t buf[PARENT_HEAD + LINEAGE_NAME_MAX];
	uint32_t version = htole32(PARENT_VERSION), len = (uint32_t)strlen(ref->name);
	uint64_t size = htole64(ref->size);

	if (!name_ok(ref->name, len))
		return err_set(e, -EINVAL, "parent file name %s cannot be recorded", ref->name);
	memcpy(buf, PARENT_MAGIC, 4);
	memcpy(buf + 4, &version, 4);
	memcpy(buf + 8, ref->id, BUNDLE_HASH_SIZE);
	memcpy(buf + 8 + BUNDLE_HASH_SIZE, &size, 8);
	len = htole32(len);
	memcpy(buf + PARENT_HEAD - 4, &len, 4);
	memcpy(buf + PARENT_HEAD, ref->name, le32toh(len));
	return bundle_add(w, "parent", SEC_PARENT, buf, PARENT_HEAD + le32toh(len), e);
}

int lineage_keep(const struct bundle *b, struct err *e)
{
	char path[4200], fdpath[64];
	int rc = cache_path_of(b->id, path, sizeof(path), e);

	if (rc)
		return rc;
	if (!access(path, F_OK))
		return 0;
	/* the very file whose identity was checked, even if its name now
	 * holds another */
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", b->fd);
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0 && errno != EEXIST)
		return err_set(e, -errno, "cannot keep %s in the cache as %s: %s", b->path, path,
			       strerror(errno));
	return 0;
}

/* A chunked section of b with every chunk where its ancestors have it. */
static int flatten_chunked(struct bundle_writer *w, const struct bundle *b,
			   const struct lineage *l, const struct bundle_section *s,
			   struct snapmem_stats *st, struct err *e)
{
	struct chunked *c = malloc(sizeof(*c));
	struct snapmem_base base = { 0 };
	struct snapmem_stats one;
	uint8_t *clean = NULL;
	int rc = c ? lineage_view(b, l, s, c, e) : err_set(e, -ENOMEM, "out of memory");

	/* every frame is checked before it is vouched for again */
	if (!rc && (rc = snapmem_verify_view(&c->v[0], e)))
		err_wrap(e, rc, "%s", b->path);
	if (!rc && !(clean = malloc(c->v[0].nchunks ? c->v[0].nchunks : 1)))
		rc = err_set(e, -ENOMEM, "out of memory");
	if (!rc) {
		memset(clean, 1, c->v[0].nchunks);
		base.v = &c->v[0];
		base.clean = clean;
		rc = snapmem_write_bytes(w, s->name, s->type, NULL, c->v[0].mem_size, &base, &one,
					 e);
	}
	if (!rc) {
		st->chunks += one.chunks;
		st->zero_chunks += one.zero_chunks;
		st->stored_bytes += one.stored_bytes;
		st->reused_chunks += one.reused_chunks;
	}
	free(clean);
	free(c);
	return rc;
}

int lineage_flatten(const char *in, const char *out, size_t *generations,
		    struct snapmem_stats *st, struct err *e)
{
	struct bundle b;
	struct lineage l;
	struct bundle_writer w;
	const uint8_t *data;
	int rc;

	memset(st, 0, sizeof(*st));
	*generations = 0;
	rc = bundle_open(&b, in, e);
	if (rc)
		return rc;
	/* (format 1 has no chunk hashes: its sections' checksums, whole) */
	rc = b.version < 2 ? bundle_verify_all(&b, e) : 0;
	if (!rc)
		rc = lineage_open(&b, &l, e);
	if (rc) {
		bundle_close(&b);
		return rc;
	}
	*generations = l.n;
	rc = bundle_writer_open(&w, out, e);
	for (size_t i = 0; !rc && i < b.n; i++) {
		const struct bundle_section *s = &b.secs[i];
		if (s->type == SEC_PARENT)
			continue;
		if (bundle_chunked(s->type))
			rc = flatten_chunked(&w, &b, &l, s, st, e);
		else if (!(rc = bundle_section_data(&b, s, &data, e)))
			rc = bundle_add(&w, s->name, s->type, data, (size_t)s->size, e);
	}
	if (!rc)
		rc = bundle_writer_commit(&w, e);
	else if (w.path)
		bundle_writer_abort(&w); /* nothing replaces `out` */
	lineage_close(&l);
	bundle_close(&b);
	return rc;
}
