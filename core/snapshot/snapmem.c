#include "snapshot/snapmem.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define LEVEL 1 /* fast: snapshot time matters more than a few % of size */

static void put_u32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

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

struct cjob {
	const struct guest_mem *m;
	const struct snapmem_base *base;
	uint32_t nchunks;
	atomic_uint next;
	void **out;      /* compressed frame per chunk, NULL if zero */
	size_t *out_len;
	uint8_t *borrowed; /* out[i] points into the base: not ours to free */
	atomic_int failed;
};

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
		uint64_t off = (uint64_t)i * SNAPMEM_CHUNK;
		size_t len = j->m->size - off < SNAPMEM_CHUNK ? (size_t)(j->m->size - off) : SNAPMEM_CHUNK;
		const uint8_t *src = j->m->base + off;
		if (j->base && j->base->clean[i]) {
			const uint8_t *p;
			uint32_t plen;
			snapmem_chunk_frame(j->base->v, i, &p, &plen);
			j->out[i] = (void *)p;
			j->out_len[i] = plen;
			j->borrowed[i] = 1;
			continue;
		}
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
		j->out[i] = buf;
		j->out_len[i] = n;
	}
	ZSTD_freeCCtx(cc);
	return NULL;
}

int snapmem_write(struct bundle_writer *w, const struct guest_mem *m,
		  const struct snapmem_base *base, struct snapmem_stats *st, struct err *e)
{
	struct cjob j = { .m = m };
	unsigned nt = ncpus();
	pthread_t th[16];
	uint8_t *table = NULL;
	size_t table_len;
	uint64_t off;
	int rc = 0;

	j.nchunks = (uint32_t)((m->size + SNAPMEM_CHUNK - 1) / SNAPMEM_CHUNK);
	j.out = calloc(j.nchunks, sizeof(*j.out));
	j.out_len = calloc(j.nchunks, sizeof(*j.out_len));
	j.borrowed = calloc(j.nchunks, 1);
	table_len = SNAPMEM_HDR + (size_t)j.nchunks * SNAPMEM_ENTRY;
	table = calloc(1, table_len);
	/* A base of another shape cannot lend chunks. */
	if (base && (base->v->mem_size != m->size || base->v->nchunks != j.nchunks))
		base = NULL;
	j.base = base;
	if (!j.out || !j.out_len || !j.borrowed || !table) {
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
		rc = err_set(e, atomic_load(&j.failed), "memory: compression failed");
		goto out;
	}

	memcpy(table, "SMEM", 4);
	put_u32(table + 4, 1);
	put_u64(table + 8, m->size);
	put_u32(table + 16, SNAPMEM_CHUNK);
	put_u32(table + 20, j.nchunks);
	off = table_len;
	memset(st, 0, sizeof(*st));
	st->chunks = j.nchunks;
	for (uint32_t i = 0; i < j.nchunks; i++) {
		uint8_t *ent = table + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
		st->reused_chunks += j.borrowed[i];
		if (!j.out[i]) {
			st->zero_chunks++;
			continue;
		}
		put_u64(ent, off);
		put_u32(ent + 8, (uint32_t)j.out_len[i]);
		off += j.out_len[i];
	}
	rc = bundle_section_begin(w, "memory", SEC_MEMORY, COMP_ZSTD, m->size, e);
	if (!rc)
		rc = bundle_section_write(w, table, table_len, e);
	for (uint32_t i = 0; !rc && i < j.nchunks; i++)
		if (j.out[i])
			rc = bundle_section_write(w, j.out[i], j.out_len[i], e);
	if (!rc)
		rc = bundle_section_end(w, e);
	st->stored_bytes = off;
out:
	for (uint32_t i = 0; j.out && i < j.nchunks; i++)
		if (!j.borrowed || !j.borrowed[i])
			free(j.out[i]);
	free(j.out);
	free(j.out_len);
	free(j.borrowed);
	free(table);
	return rc;
}

/* Bounds of every chunk, checked before anything is decompressed. */
static int check_table(const uint8_t *sec, uint64_t sec_size, uint64_t *mem_size,
		       uint32_t *nchunks, struct err *e)
{
	uint64_t size, table_len;
	uint32_t n;

	if (sec_size < SNAPMEM_HDR || memcmp(sec, "SMEM", 4) || get_u32(sec + 4) != 1 ||
	    get_u32(sec + 16) != SNAPMEM_CHUNK)
		return err_set(e, -EBADMSG, "memory section: bad header");
	size = get_u64(sec + 8);
	n = get_u32(sec + 20);
	if (size > MEM_MAX_SIZE || (size + SNAPMEM_CHUNK - 1) / SNAPMEM_CHUNK != n)
		return err_set(e, -EBADMSG, "memory section: %llu bytes in %u chunks is inconsistent",
			       (unsigned long long)size, n);
	table_len = SNAPMEM_HDR + (uint64_t)n * SNAPMEM_ENTRY;
	if (table_len > sec_size)
		return err_set(e, -EBADMSG, "memory section: chunk table truncated");
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *ent = sec + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
		uint64_t off = get_u64(ent);
		uint32_t len = get_u32(ent + 8);
		if (get_u32(ent + 12) || (!off && len) ||
		    (off && (off < table_len || off > sec_size || len > sec_size - off || !len)))
			return err_set(e, -EBADMSG, "memory section: chunk %u out of range", i);
	}
	*mem_size = size;
	*nchunks = n;
	return 0;
}

int snapmem_size(const uint8_t *sec, uint64_t sec_size, uint64_t *mem_size, struct err *e)
{
	uint32_t n;
	return check_table(sec, sec_size, mem_size, &n, e);
}

int snapmem_open(const uint8_t *sec, uint64_t sec_size, struct snapmem_view *v, struct err *e)
{
	v->sec = sec;
	v->sec_size = sec_size;
	return check_table(sec, sec_size, &v->mem_size, &v->nchunks, e);
}

size_t snapmem_chunk_len(const struct snapmem_view *v, uint32_t i)
{
	uint64_t at = (uint64_t)i * SNAPMEM_CHUNK;

	return v->mem_size - at < SNAPMEM_CHUNK ? (size_t)(v->mem_size - at) : SNAPMEM_CHUNK;
}

void snapmem_chunk_frame(const struct snapmem_view *v, uint32_t i, const uint8_t **p,
			 uint32_t *len)
{
	const uint8_t *ent = v->sec + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
	uint64_t off = get_u64(ent);

	*p = off ? v->sec + off : NULL;
	*len = off ? get_u32(ent + 8) : 0;
}

int snapmem_chunk_zero(const struct snapmem_view *v, uint32_t i)
{
	return get_u64(v->sec + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY) == 0;
}

int snapmem_chunk_read(const struct snapmem_view *v, uint32_t i, void *dctx, void *dst,
		       struct err *e)
{
	const uint8_t *ent = v->sec + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
	uint64_t off = get_u64(ent);
	size_t want = snapmem_chunk_len(v, i), n;

	if (!off) {
		memset(dst, 0, want);
		return 0;
	}
	n = ZSTD_decompressDCtx(dctx, dst, want, v->sec + off, get_u32(ent + 8));
	if (ZSTD_isError(n) || n != want)
		return err_set(e, -EBADMSG, "memory section: chunk %u does not decompress", i);
	return 0;
}

struct djob {
	const uint8_t *sec;
	uint8_t *dst;
	uint64_t mem_size;
	uint32_t nchunks;
	atomic_uint next;
	atomic_int failed;
	atomic_uint bad_chunk;
};

static void *decompress_worker(void *arg)
{
	struct djob *j = arg;
	ZSTD_DCtx *dc = ZSTD_createDCtx();

	if (!dc) {
		atomic_store(&j->failed, -ENOMEM);
		return NULL;
	}
	for (;;) {
		uint32_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->nchunks || atomic_load(&j->failed))
			break;
		const uint8_t *ent = j->sec + SNAPMEM_HDR + (size_t)i * SNAPMEM_ENTRY;
		uint64_t off = get_u64(ent);
		uint32_t len = get_u32(ent + 8);
		uint64_t at = (uint64_t)i * SNAPMEM_CHUNK;
		size_t want = j->mem_size - at < SNAPMEM_CHUNK ? (size_t)(j->mem_size - at) : SNAPMEM_CHUNK;
		if (!off)
			continue; /* zero chunk: the destination is already zero */
		size_t n = ZSTD_decompressDCtx(dc, j->dst + at, want, j->sec + off, len);
		if (ZSTD_isError(n) || n != want) {
			atomic_store(&j->bad_chunk, i);
			atomic_store(&j->failed, -EBADMSG);
			break;
		}
	}
	ZSTD_freeDCtx(dc);
	return NULL;
}

int snapmem_read(const uint8_t *sec, uint64_t sec_size, void *dst, uint64_t mem_size,
		 unsigned threads, struct err *e)
{
	struct djob j = { .sec = sec, .dst = dst };
	pthread_t th[16];
	unsigned nt = threads ? threads : ncpus();
	uint64_t size;
	int rc;

	rc = check_table(sec, sec_size, &size, &j.nchunks, e);
	if (rc)
		return rc;
	if (size != mem_size)
		return err_set(e, -EBADMSG, "memory section holds %llu bytes, expected %llu",
			       (unsigned long long)size, (unsigned long long)mem_size);
	j.mem_size = size;
	if (nt > 16)
		nt = 16;
	for (unsigned t = 1; t < nt; t++)
		if (pthread_create(&th[t], NULL, decompress_worker, &j))
			nt = t;
	decompress_worker(&j);
	for (unsigned t = 1; t < nt; t++)
		pthread_join(th[t], NULL);
	if (atomic_load(&j.failed))
		return err_set(e, atomic_load(&j.failed), "memory section: chunk %u does not decompress",
			       atomic_load(&j.bad_chunk));
	return 0;
}
