/* Fuzz the bundle reader: header, table of contents, signature block,
 * manifest (inih), the memory section's chunk table and chunks, in both
 * bundle formats, a child's "parent" section and its chunk tables
 * (version 3) linked to those of another section of the same input.
 * Bundles are untrusted input. Nothing here opens a file: a bundle read
 * from memory does not look for its parent (lineage.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <zstd.h>

#include "snapshot/bundle.h"
#include "snapshot/lineage.h"
#include "snapshot/manifest.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small images only: the fuzzer must not allocate or inflate GiBs. */
#define MEM_LIMIT (64u << 20)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* The key the seeds in tests/fuzz/corpus/bundle are signed with: from a
 * fixed seed, so a signature it makes is one the reader can find valid. */
static uint8_t fuzz_pk[32], fuzz_sk[64];

static void fuzz_key(void)
{
	static const uint8_t seed[crypto_sign_SEEDBYTES] = "smolvm fuzz_bundle signing key!";
	static int done;

	if (!done) {
		if (sodium_init() < 0)
			abort();
		crypto_sign_seed_keypair(fuzz_pk, fuzz_sk, seed);
		done = 1;
	}
}

/* A version 2 or 3 memory section's chunk hashes, of its frames as they
 * are (bounded: at most `*budget` bytes hashed in all); a chunk in the
 * parent has no frame here, its hash is left as it is. */
static void fix_chunks(uint8_t *sec, uint64_t len, uint64_t *budget)
{
	uint64_t n;

	if (len < SNAPMEM_HDR || memcmp(sec, "SMEM", 4) ||
	    (rd32(sec + 4) != SNAPMEM_VERSION && rd32(sec + 4) != SNAPMEM_VERSION_CHILD))
		return;
	n = rd32(sec + 20);
	if (n > (len - SNAPMEM_HDR) / SNAPMEM_ENTRY)
		return;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *ent = sec + SNAPMEM_HDR + i * SNAPMEM_ENTRY;
		uint64_t off = rd64(ent);
		uint32_t flen = rd32(ent + 8);
		if (!off || off > len || flen > len - off || flen > *budget)
			continue;
		*budget -= flen;
		crypto_generichash(ent + 16, 32, sec + off, flen, NULL, 0);
	}
}

/* Mutations nearly always break a checksum or hash first; to reach the
 * parsers behind them, every other input gets them recomputed: memory
 * chunks' hashes, each section's BLAKE2b (format 2) and XXH3, the TOC's
 * XXH3, the header's; and a first signature by the fuzz key is made again
 * for the identity the TOC now has. */
static void fix_checksums(uint8_t *d, size_t size)
{
	uint64_t toc, count, h, es, budget = 8u << 20;
	uint32_t version;

	if (size < BUNDLE_HEADER_SIZE)
		return;
	version = rd32(d + 8);
	es = version == 1 ? BUNDLE_TOC_ENTRY_SIZE_V1 : BUNDLE_TOC_ENTRY_SIZE;
	toc = rd64(d + 16);
	count = rd32(d + 24);
	if (toc <= size && count <= (size - toc) / es) {
		for (uint64_t i = 0; i < count; i++) {
			uint8_t *ent = d + toc + i * es;
			uint64_t off = rd64(ent + 72), len = rd64(ent + 80), covered;
			if (off > size || len > size - off)
				continue;
			if (version >= 2) {
				fix_chunks(d + off, len, &budget);
				covered = rd64(ent + 112);
				if (covered <= len)
					crypto_generichash(ent + 128, 32, d + off, covered, NULL, 0);
			}
			h = XXH3_64bits(d + off, len);
			memcpy(ent + 96, &h, 8);
		}
		/* What follows the TOC is the signature block (format 2),
		 * outside the TOC's checksum. */
		uint64_t toc_size = version >= 2 ? count * es : size - toc;
		h = XXH3_64bits(d + toc, toc_size);
		memcpy(d + 40, &h, 8);
		uint8_t *sig = d + toc + toc_size;
		if (version >= 2 && size - toc - toc_size >= 8 + 96 && !memcmp(sig, "SSIG", 4) &&
		    !memcmp(sig + 8, fuzz_pk, 32)) {
			uint8_t id[BUNDLE_HASH_SIZE], msg[BUNDLE_SIGNED_SIZE];
			crypto_generichash(id, sizeof(id), d + toc, toc_size, NULL, 0);
			bundle_signed_message(id, msg);
			crypto_sign_detached(sig + 8 + 32, NULL, msg, sizeof(msg), fuzz_sk);
		}
	}
	h = XXH3_64bits(d, 56);
	memcpy(d + 56, &h, 8);
}

/* The memory section as a restore reads it: all at once (the cache), and
 * chunk by chunk (a lazy restore), each against what covers it. */
static void read_memory(const uint8_t *p, const struct bundle_section *s)
{
	struct snapmem_view v;
	struct err e;
	uint64_t mem;

	if (snapmem_size(p, s->size, &mem, &e) || mem > MEM_LIMIT)
		return;
	void *dst = calloc(1, mem ? mem : 1);
	if (dst)
		(void)snapmem_read(p, s->size, s->covered, dst, mem, 1, &e);
	free(dst);
	if (snapmem_open(p, s->size, s->covered, &v, &e))
		return;
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	uint8_t *buf = malloc(SNAPMEM_CHUNK);
	for (uint32_t i = 0; dc && buf && i < v.nchunks && i < 8; i++) {
		const uint8_t *f;
		uint32_t flen;
		snapmem_chunk_frame(&v, i, &f, &flen);
		/* a chunk in a parent that is not linked has no frame either */
		if ((snapmem_chunk_zero(&v, i) || snapmem_chunk_in_parent(&v, i)) != (f == NULL) ||
		    (snapmem_chunk_zero(&v, i) && snapmem_chunk_in_parent(&v, i)) ||
		    snapmem_chunk_len(&v, i) > SNAPMEM_CHUNK)
			abort();
		if (snapmem_chunk_read(&v, i, dc, buf, &e) == -ENOENT &&
		    !snapmem_chunk_in_parent(&v, i))
			abort();
	}
	ZSTD_freeDCtx(dc);
	free(buf);
}

/* The "parent" section, as lineage_open reads it first. */
static void read_parent(const struct bundle *b)
{
	struct parent_ref ref;
	struct err e;
	int rc = lineage_parent(b, &ref, &e);
	size_t len = strnlen(ref.name, sizeof(ref.name));

	if (rc < 0 && (rc != -EBADMSG || !e.msg[0]))
		abort();
	/* a name accepted is a file name: no directory, not . or .. */
	if (rc == 1 && (!len || len > LINEAGE_NAME_MAX || strchr(ref.name, '/') ||
			!strcmp(ref.name, ".") || !strcmp(ref.name, "..")))
		abort();
	if (rc == 0 && bundle_find(b, "parent"))
		abort();
}

#define VIEWS 8

/* Chunked sections with chunks in a parent, linked to other chunked
 * sections of the same size in this input (as a child's are to its
 * parents'), as deep as they go: what reads through the links, each
 * chunk from the view that holds it. */
static void link_views(const struct bundle *b)
{
	struct snapmem_view vs[VIEWS];
	size_t n = 0;
	struct err e;
	uint64_t budget = MEM_LIMIT; /* bytes read through links, in all */

	for (size_t i = 0; i < b->n && n < VIEWS; i++) {
		const struct bundle_section *s = &b->secs[i];
		const uint8_t *p;
		if (!bundle_chunked(s->type) || bundle_section_data(b, s, &p, &e) ||
		    snapmem_open(p, s->size, s->covered, &vs[n], &e) || vs[n].mem_size > MEM_LIMIT)
			continue;
		vs[n].name = s->name;
		n++;
	}
	for (size_t c = 0; c < n; c++) {
		struct snapmem_view *chain[VIEWS];
		size_t depth = 1;
		uint8_t used[VIEWS] = { 0 };

		/* (no link left from the last chain: it could close a loop) */
		for (size_t k = 0; k < n; k++)
			vs[k].parent = NULL;
		if (!vs[c].in_parent)
			continue;
		chain[0] = &vs[c];
		used[c] = 1;
		/* each link to the first section of the same size that takes it */
		while (chain[depth - 1]->in_parent && depth < VIEWS) {
			size_t j;
			for (j = 0; j < n; j++)
				if (!used[j] && vs[j].mem_size == chain[0]->mem_size &&
				    !snapmem_link(chain[depth - 1], &vs[j], &e))
					break;
			if (j == n)
				break;
			used[j] = 1;
			chain[depth++] = &vs[j];
		}
		if (depth == 1 || budget < chain[0]->mem_size)
			continue;
		budget -= chain[0]->mem_size;
		/* a chunk in the parent is the parent's frame, found through it */
		for (uint32_t i = 0; i < chain[0]->nchunks; i++) {
			const uint8_t *f, *g;
			uint32_t fl, gl;
			if (!snapmem_chunk_in_parent(chain[0], i))
				continue;
			snapmem_chunk_frame(chain[0], i, &f, &fl);
			snapmem_chunk_frame(chain[1], i, &g, &gl);
			if (f != g || fl != gl || snapmem_chunk_zero(chain[1], i))
				abort();
		}
		void *dst = calloc(1, chain[0]->mem_size ? chain[0]->mem_size : 1);
		if (dst)
			(void)snapmem_read_view(chain[0], dst, 1, &e);
		free(dst);
		if (!chain[depth - 1]->in_parent) {
			struct chunked *ch = calloc(1, sizeof(*ch));
			struct chunk_costs cc;
			uint64_t total;
			for (size_t k = 0; ch && k < depth; k++) {
				ch->v[k] = *chain[k];
				ch->v[k].parent = k + 1 < depth ? &ch->v[k + 1] : NULL;
			}
			if (ch) {
				lineage_costs(ch, &cc);
				total = cc.zero;
				for (size_t k = 0; k <= LINEAGE_MAX; k++)
					total += cc.chunks[k];
				if (total != chain[0]->nchunks)
					abort();
			}
			free(ch);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = NULL;
	struct bundle b;
	struct manifest m;
	struct err e;
	const uint8_t *p;
	int small = 1;

	fuzz_key();
	if (size && (data[0] & 1)) {
		copy = malloc(size);
		if (!copy)
			return 0;
		memcpy(copy, data, size);
		fix_checksums(copy, size);
		data = copy;
	}
	if (bundle_open_mem(&b, data, size, &e)) {
		free(copy);
		return 0;
	}
	for (size_t i = 0; i <= b.nsigs; i++)
		(void)bundle_signature_valid(&b, i);
	for (size_t i = 0; i < b.n; i++) {
		const struct bundle_section *s = &b.secs[i];
		if (s->covered > s->size)
			abort();
		if (bundle_section_data(&b, s, &p, &e))
			continue;
		if (s->type == SEC_MANIFEST)
			(void)manifest_parse((const char *)p, s->size, &m, &e);
		else if (bundle_chunked(s->type))
			read_memory(p, s); /* a disk's or image's has memory's layout */
	}
	/* Every section and chunk, as inspect, verify and sign do, where
	 * the memory sections are small (a table that fails snapmem_size
	 * fails snapmem_verify as fast). */
	for (size_t i = 0; small && i < b.n; i++) {
		uint64_t mem;
		if (bundle_chunked(b.secs[i].type) &&
		    !snapmem_size(b.map + b.secs[i].offset, b.secs[i].size, &mem, &e) &&
		    mem > MEM_LIMIT)
			small = 0;
	}
	read_parent(&b);
	link_views(&b);
	if (small)
		(void)snapshot_verify(&b, &e);
	bundle_close(&b);
	free(copy);
	return 0;
}
