#include "snapshot/snapmem.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>
#include <zstd.h>

#define LEVEL 1 /* fast: snapshot time matters more than a few % of size */

static void put_u32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

static const char *sec_name(const struct snapmem_view *v)
{
	return v->name ? v->name : "memory";
}

static const uint8_t *entry_of(const struct snapmem_view *v, uint32_t i)
{
	return v->sec + SNAPMEM_HDR + (size_t)i * v->entry;
}

static unsigned ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
}

static int all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[4096];
	for (size_t off = 0; off < n; off += sizeof(zero)) {
		size_t k = n - off < sizeof(zero) ? n - off : sizeof(zero);
		if (memcmp(p + off, zero, k))
			return 0;
	}
	return 1;
}

/* What each chunk of a section being written becomes. */
enum { C_ZERO, C_OWN, C_BORROWED, C_PARENT };

struct cjob {
	const uint8_t *data;
	uint64_t size;
	const struct snapmem_base *base;
	uint32_t nchunks;
	atomic_uint next;
	void **out;      /* frame per chunk: C_OWN ours, C_BORROWED the base's */
	size_t *out_len;
	uint8_t (*digest)[32]; /* of each frame */
	uint8_t *kind;
	atomic_int failed;
};

/* 1 when the parent holds chunk i as a frame of this hash and size (it
 * is the same chunk: the frame is written as "in the parent"). */
static int parent_has(const struct snapmem_view *pv, uint32_t i, const uint8_t *digest,
		      size_t len)
{
	const uint8_t *ent;

	if (!pv || i >= pv->nchunks || pv->entry != SNAPMEM_ENTRY || snapmem_chunk_zero(pv, i))
		return 0;
	ent = entry_of(pv, i);
	return get_u32(ent + 8) == len && !memcmp(ent + 16, digest, 32);
}

/* A chunk unchanged since the restore: in the new parent if it is there,
 * else its frame copied from wherever the base has it. */
static void take_clean(struct cjob *j, uint32_t i)
{
	const struct snapmem_view *v = j->base->v;
	const uint8_t *ent = entry_of(v, i), *p;
	uint32_t plen;

	if (snapmem_chunk_zero(v, i))
		return; /* C_ZERO */
	if (v->entry == SNAPMEM_ENTRY) {
		memcpy(j->digest[i], ent + 16, 32);
		j->out_len[i] = get_u32(ent + 8);
		if (j->base->parent == v ||
		    (j->base->parent && snapmem_chunk_in_parent(v, i) &&
		     parent_has(j->base->parent, i, j->digest[i], j->out_len[i]))) {
			j->kind[i] = C_PARENT;
			return;
		}
	}
	snapmem_chunk_frame(v, i, &p, &plen);
	if (!p) { /* in a parent that is not linked: cannot happen after a restore */
		atomic_store(&j->failed, -ENOENT);
		return;
	}
	j->out[i] = (void *)p;
	j->out_len[i] = plen;
	j->kind[i] = C_BORROWED;
	if (v->entry != SNAPMEM_ENTRY)
		crypto_generichash(j->digest[i], 32, p, plen, NULL, 0);
}

static void *compress_worker(void *arg)
{
	struct cjob *j = arg;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	size_t bound = ZSTD_compressBound(SNAPMEM_CHUNK);

	if (!cc) {
		atomic_store(&j->failed, -ENOMEM);
		return NULL;
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, LEVEL);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	for (;;) {
		uint32_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->nchunks || atomic_load(&j->failed))
			break;
		if (j->base && j->base->clean && j->base->clean[i]) {
			take_clean(j, i);
			continue;
		}
		if (j->base && j->base->known_zero && j->base->known_zero[i])
			continue;
		uint64_t off = (uint64_t)i * SNAPMEM_CHUNK;
		size_t len = j->size - off < SNAPMEM_CHUNK ? (size_t)(j->size - off) : SNAPMEM_CHUNK;
		const uint8_t *src = j->data + off;
		if (all_zero(src, len))
			continue;
		void *buf = malloc(bound);
		if (!buf) {
			atomic_store(&j->failed, -ENOMEM);
			break;
		}
		size_t n = ZSTD_compress2(cc, buf, bound, src, len);
		if (ZSTD_isError(n)) {
			free(buf);
			atomic_store(&j->failed, -EIO);
			break;
		}
		crypto_generichash(j->digest[i], 32, buf, n, NULL, 0);
		j->out_len[i] = n;
		/* written over with what it held: still the parent's chunk */
		if (j->base && parent_has(j->base->parent, i, j->digest[i], n)) {
			free(buf);
			j->kind[i] = C_PARENT;
			continue;
		}
		j->out[i] = buf;
		j->kind[i] = C_OWN;
	}
	ZSTD_freeCCtx(cc);
	return NULL;
}

int snapmem_write(struct bundle_writer *w, const struct guest_mem *m,
		  const struct snapmem_base *base, struct snapmem_stats *st, struct err *e)
{
	return snapmem_write_bytes(w, "memory", SEC_MEMORY, m->base, m->size, base, st, e);
}

int snapmem_write_bytes(struct bundle_writer *w, const char *name, uint32_t type,
			const uint8_t *data, uint64_t size, const struct snapmem_base *base,
			struct snapmem_stats *st, struct err *e)
{
	struct cjob j = { .data = data, .size = size };
	unsigned nt = ncpus();
	pthread_t th[16];
	uint8_t *table = NULL;
	size_t table_len;
	uint64_t off;
	uint32_t version = SNAPMEM_VERSION;
	int rc = 0;

	j.nchunks = (uint32_t)((size + SNAPMEM_CHUNK - 1) / SNAPMEM_CHUNK);
	j.out = calloc(j.nchunks, sizeof(*j.out));
	j.out_len = calloc(j.nchunks, sizeof(*j.out_len));
	j.kind = calloc(j.nchunks, 1);
	j.digest = calloc(j.nchunks, sizeof(*j.digest));
	table_len = SNAPMEM_HDR + (size_t)j.nchunks * SNAPMEM_ENTRY;
	table = calloc(1, table_len);
	/* A base or parent of another shape cannot lend chunks. */
	struct snapmem_base b = base ? *base : (struct snapmem_base){ 0 };
	if (b.v && (b.v->mem_size != size || b.v->nchunks != j.nchunks))
		b.v = NULL, b.clean = NULL;
	if (!b.v)
		b.clean = NULL;
	if (b.parent && (b.parent->mem_size != size || b.parent->entry != SNAPMEM_ENTRY))
		b.parent = NULL;
	j.base = b.v || b.parent || b.known_zero ? &b : NULL;
	if (!j.out || !j.out_len || !j.kind || !j.digest || !table || sodium_init() < 0) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned t = 0; t < nt; t++)
		if (pthread_create(&th[t], NULL, compress_worker, &j))
			nt = t;
	compress_worker(&j); /* this thread helps too */
	for (unsigned t = 0; t < nt; t++)
		pthread_join(th[t], NULL);
	if (atomic_load(&j.failed)) {
		rc = err_set(e, atomic_load(&j.failed), "%s: compression failed", name);
		goto out;
	}

	off = table_len;
	memset(st, 0, sizeof(*st));
	st->chunks = j.nchunks;
	for (uint32_t i = 0; i < j.nchunks; i++) {
		uint8_t *ent = table + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
		st->reused_chunks += j.kind[i] == C_BORROWED ||
				     (j.kind[i] == C_PARENT && b.clean && b.clean[i]);
		if (j.kind[i] == C_ZERO) {
			st->zero_chunks++;
			continue;
		}
		put_u32(ent + 8, (uint32_t)j.out_len[i]);
		memcpy(ent + 16, j.digest[i], 32);
		if (j.kind[i] == C_PARENT) {
			put_u32(ent + 12, SNAPMEM_IN_PARENT);
			st->parent_chunks++;
			version = SNAPMEM_VERSION_CHILD;
			continue;
		}
		put_u64(ent, off);
		off += j.out_len[i];
	}
	memcpy(table, "SMEM", 4);
	put_u32(table + 4, version);
	put_u64(table + 8, size);
	put_u32(table + 16, SNAPMEM_CHUNK);
	put_u32(table + 20, j.nchunks);
	rc = bundle_section_begin(w, name, type, COMP_ZSTD, size, e);
	if (!rc)
		rc = bundle_section_write(w, table, table_len, e);
	if (!rc)
		bundle_section_seal_head(w); /* the frames: by their hashes */
	for (uint32_t i = 0; !rc && i < j.nchunks; i++)
		if (j.kind[i] == C_OWN || j.kind[i] == C_BORROWED)
			rc = bundle_section_write(w, j.out[i], j.out_len[i], e);
	if (!rc)
		rc = bundle_section_end(w, e);
	st->stored_bytes = off;
out:
	for (uint32_t i = 0; j.out && i < j.nchunks; i++)
		if (j.kind && j.kind[i] == C_OWN)
			free(j.out[i]);
	free(j.out);
	free(j.out_len);
	free(j.kind);
	free(j.digest);
	free(table);
	return rc;
}

/* Bounds of every chunk, checked before anything is decompressed; and
 * that every byte is covered: by the caller's check or by chunk hashes. */
static int check_table(const uint8_t *sec, uint64_t sec_size, uint64_t covered,
		       struct snapmem_view *v, struct err *e)
{
	static const uint8_t nohash[32];
	uint64_t size, table_len;
	uint32_t n, version, es, in_parent = 0;

	if (sec_size < SNAPMEM_HDR || memcmp(sec, "SMEM", 4) ||
	    get_u32(sec + 16) != SNAPMEM_CHUNK)
		return err_set(e, -EBADMSG, "memory section: bad header");
	version = get_u32(sec + 4);
	if (version < 1 || version > SNAPMEM_VERSION_CHILD)
		return err_set(e, -EBADMSG, "memory section: bad header (version %u)", version);
	es = version == 1 ? SNAPMEM_ENTRY_V1 : SNAPMEM_ENTRY;
	size = get_u64(sec + 8);
	n = get_u32(sec + 20);
	if (size > SNAPMEM_MAX_SIZE || (size + SNAPMEM_CHUNK - 1) / SNAPMEM_CHUNK != n)
		return err_set(e, -EBADMSG, "memory section: %llu bytes in %u chunks is inconsistent",
			       (unsigned long long)size, n);
	table_len = SNAPMEM_HDR + (uint64_t)n * es;
	if (table_len > sec_size)
		return err_set(e, -EBADMSG, "memory section: chunk table truncated");
	if (covered < sec_size && (version == 1 || covered < table_len))
		return err_set(e, -EBADMSG, "memory section: its chunks are not covered by its hash");
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ent = sec + SNAPMEM_HDR + (size_t)i * es;
		uint64_t off = get_u64(ent);
		uint32_t len = get_u32(ent + 8), flags = get_u32(ent + 12);
		int bad;

		if (flags == SNAPMEM_IN_PARENT && version == SNAPMEM_VERSION_CHILD) {
			/* a frame of the parent's: its size and hash, nothing here */
			bad = off || !len || len > ZSTD_compressBound(SNAPMEM_CHUNK) ||
			      !memcmp(ent + 16, nohash, 32);
			in_parent++;
		} else {
			bad = flags || (!off && len) ||
			      (!off && es == SNAPMEM_ENTRY && memcmp(ent + 16, nohash, 32)) ||
			      (off && (off < table_len || off > sec_size || len > sec_size - off ||
				       !len));
		}
		if (bad)
			return err_set(e, -EBADMSG, "memory section: chunk %u out of range", i);
	}
	memset(v, 0, sizeof(*v));
	v->sec = sec;
	v->sec_size = sec_size;
	v->mem_size = size;
	v->nchunks = n;
	v->entry = es;
	v->version = version;
	v->in_parent = in_parent;
	return 0;
}

int snapmem_size(const uint8_t *sec, uint64_t sec_size, uint64_t *mem_size, struct err *e)
{
	struct snapmem_view v;
	int rc = check_table(sec, sec_size, sec_size, &v, e);

	if (!rc)
		*mem_size = v.mem_size;
	return rc;
}

int snapmem_open(const uint8_t *sec, uint64_t sec_size, uint64_t covered,
		 struct snapmem_view *v, struct err *e)
{
	return check_table(sec, sec_size, covered, v, e);
}

int snapmem_content_id(const struct snapmem_view *v, uint8_t id[32])
{
	static const uint8_t zero[32];
	crypto_generichash_state st;
	uint8_t head[16];

	if (v->entry != SNAPMEM_ENTRY)
		return -ENOTSUP;
	memcpy(head, "SMEMID\0\0", 8);
	put_u64(head + 8, v->mem_size);
	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, head, sizeof(head));
	for (uint32_t i = 0; i < v->nchunks; i++)
		crypto_generichash_update(&st, snapmem_chunk_zero(v, i) ? zero : entry_of(v, i) + 16,
					  32);
	crypto_generichash_final(&st, id, 32);
	return 0;
}

int snapmem_chunk_in_parent(const struct snapmem_view *v, uint32_t i)
{
	return v->version == SNAPMEM_VERSION_CHILD &&
	       get_u32(entry_of(v, i) + 12) == SNAPMEM_IN_PARENT;
}

int snapmem_link(struct snapmem_view *v, const struct snapmem_view *parent, struct err *e)
{
	/* (a loop would make holder() go round forever) */
	for (const struct snapmem_view *p = parent; p; p = p->parent)
		if (p == v)
			return err_set(e, -ELOOP, "a section cannot be its own parent");
	if (parent->entry != SNAPMEM_ENTRY)
		return err_set(e, -EBADMSG, "the parent's chunk table has no chunk hashes (format 1)");
	if (parent->mem_size != v->mem_size)
		return err_set(e, -EBADMSG, "%llu bytes here, %llu in the parent",
			       (unsigned long long)v->mem_size,
			       (unsigned long long)parent->mem_size);
	for (uint32_t i = 0; i < v->nchunks; i++) {
		const uint8_t *ent = entry_of(v, i);
		if (snapmem_chunk_in_parent(v, i) &&
		    !parent_has(parent, i, ent + 16, get_u32(ent + 8)))
			return err_set(e, -EBADMSG, "chunk %u is not in the parent as it was "
				       "when this bundle was saved", i);
	}
	v->parent = parent;
	return 0;
}

/* The view whose own frame chunk i is: v, or the parent that holds it;
 * NULL for a chunk in a parent not linked. */
static const struct snapmem_view *holder(const struct snapmem_view *v, uint32_t i)
{
	while (v && snapmem_chunk_in_parent(v, i))
		v = v->parent;
	return v;
}

/* A version 2 chunk's frame against its hash (version 1: the caller
 * verified the whole section). */
static int check_frame(const struct snapmem_view *v, uint32_t i, struct err *e)
{
	const uint8_t *ent = entry_of(v, i);
	uint8_t d[32];

	if (v->entry != SNAPMEM_ENTRY)
		return 0;
	crypto_generichash(d, sizeof(d), v->sec + get_u64(ent), get_u32(ent + 8), NULL, 0);
	if (memcmp(d, ent + 16, sizeof(d)))
		return err_set(e, -EBADMSG, "%s section: chunk %u does not match its hash "
			       "(corrupt or modified)", sec_name(v), i);
	return 0;
}

size_t snapmem_chunk_len(const struct snapmem_view *v, uint32_t i)
{
	uint64_t at = (uint64_t)i * SNAPMEM_CHUNK;

	return v->mem_size - at < SNAPMEM_CHUNK ? (size_t)(v->mem_size - at) : SNAPMEM_CHUNK;
}

void snapmem_chunk_frame(const struct snapmem_view *v, uint32_t i, const uint8_t **p,
			 uint32_t *len)
{
	const struct snapmem_view *h = holder(v, i);
	const uint8_t *ent = h ? entry_of(h, i) : NULL;
	uint64_t off = ent ? get_u64(ent) : 0;

	*p = off ? h->sec + off : NULL;
	*len = off ? get_u32(ent + 8) : 0;
}

int snapmem_chunk_zero(const struct snapmem_view *v, uint32_t i)
{
	return get_u64(entry_of(v, i)) == 0 && !snapmem_chunk_in_parent(v, i);
}

int snapmem_chunk_read(const struct snapmem_view *v, uint32_t i, void *dctx, void *dst,
		       struct err *e)
{
	const struct snapmem_view *h = holder(v, i);
	const uint8_t *ent;
	uint64_t off;
	size_t want = snapmem_chunk_len(v, i), n;
	int rc;

	if (!h)
		return err_set(e, -ENOENT, "%s section: chunk %u is in the parent bundle, "
			       "which is not open", sec_name(v), i);
	ent = entry_of(h, i);
	off = get_u64(ent);
	if (!off) {
		memset(dst, 0, want);
		return 0;
	}
	rc = check_frame(h, i, e);
	n = rc ? 0 : ZSTD_decompressDCtx(dctx, dst, want, h->sec + off, get_u32(ent + 8));
	if (!rc && (ZSTD_isError(n) || n != want))
		rc = err_set(e, -EBADMSG, "%s section: chunk %u does not decompress", sec_name(v),
			     i);
	/* say which bundle holds the bad frame when it is not this one */
	if (rc && h != v && h->path) {
		size_t len = strlen(e->msg);
		snprintf(e->msg + len, sizeof(e->msg) - len, ", in the parent %s", h->path);
	}
	return rc;
}

struct djob {
	struct snapmem_view v;
	uint8_t *dst; /* NULL: decompress to check only */
	atomic_uint next;
	atomic_int failed;
	pthread_mutex_t lock;
	struct err err; /* the first failure's */
};

static void *decompress_worker(void *arg)
{
	struct djob *j = arg;
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	uint8_t *scratch = j->dst ? NULL : malloc(SNAPMEM_CHUNK);
	struct err e;
	int rc = 0;

	if (!dc || (!j->dst && !scratch)) {
		rc = err_set(&e, -ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		uint32_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->v.nchunks || atomic_load(&j->failed))
			break;
		if (snapmem_chunk_zero(&j->v, i))
			continue; /* the destination is already zero */
		rc = snapmem_chunk_read(&j->v, i, dc,
					j->dst ? j->dst + (uint64_t)i * SNAPMEM_CHUNK : scratch, &e);
		if (rc)
			break;
	}
out:
	if (rc) {
		pthread_mutex_lock(&j->lock);
		if (!atomic_load(&j->failed)) {
			j->err = e;
			atomic_store(&j->failed, rc);
		}
		pthread_mutex_unlock(&j->lock);
	}
	ZSTD_freeDCtx(dc);
	free(scratch);
	return NULL;
}

static int decompress_all(struct djob *j, unsigned threads, struct err *e)
{
	pthread_t th[16];
	unsigned nt = threads ? threads : ncpus();

	if (nt > 16)
		nt = 16;
	pthread_mutex_init(&j->lock, NULL);
	for (unsigned t = 1; t < nt; t++)
		if (pthread_create(&th[t], NULL, decompress_worker, j))
			nt = t;
	decompress_worker(j);
	for (unsigned t = 1; t < nt; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&j->lock);
	if (atomic_load(&j->failed)) {
		*e = j->err;
		return atomic_load(&j->failed);
	}
	return 0;
}

int snapmem_read(const uint8_t *sec, uint64_t sec_size, uint64_t covered, void *dst,
		 uint64_t mem_size, unsigned threads, struct err *e)
{
	struct snapmem_view v;
	int rc = check_table(sec, sec_size, covered, &v, e);

	if (rc)
		return rc;
	if (v.mem_size != mem_size)
		return err_set(e, -EBADMSG, "memory section holds %llu bytes, expected %llu",
			       (unsigned long long)v.mem_size, (unsigned long long)mem_size);
	return snapmem_read_view(&v, dst, threads, e);
}

int snapmem_read_view(const struct snapmem_view *v, void *dst, unsigned threads,
		      struct err *e)
{
	struct djob j = { .v = *v, .dst = dst };

	return decompress_all(&j, threads, e);
}

int snapmem_verify(const uint8_t *sec, uint64_t sec_size, uint64_t covered, struct err *e)
{
	struct snapmem_view v;
	int rc = check_table(sec, sec_size, covered, &v, e);

	return rc ? rc : snapmem_verify_view(&v, e);
}

int snapmem_verify_view(const struct snapmem_view *v, struct err *e)
{
	struct djob j = { .v = *v, .dst = NULL };

	return decompress_all(&j, 0, e);
}
