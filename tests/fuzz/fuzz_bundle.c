/* Fuzz the bundle reader: header, table of contents, signature block,
 * manifest (inih) and the memory section's chunk table and chunks, in
 * both bundle formats. Bundles are untrusted input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <zstd.h>

#include "snapshot/bundle.h"
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

/* A version 2 memory section's chunk hashes, of its frames as they are
 * (bounded: at most `*budget` bytes hashed in all). */
static void fix_chunks(uint8_t *sec, uint64_t len, uint64_t *budget)
{
	uint64_t n;

	if (len < SNAPMEM_HDR || memcmp(sec, "SMEM", 4) || rd32(sec + 4) != 2)
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
		if (snapmem_chunk_zero(&v, i) != (f == NULL) || snapmem_chunk_len(&v, i) > SNAPMEM_CHUNK)
			abort();
		(void)snapmem_chunk_read(&v, i, dc, buf, &e);
	}
	ZSTD_freeDCtx(dc);
	free(buf);
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
		else if (s->type == SEC_MEMORY || s->type == SEC_DISK)
			read_memory(p, s); /* a disk's section has memory's layout */
	}
	/* Every section and chunk, as inspect, verify and sign do, where
	 * the memory sections are small (a table that fails snapmem_size
	 * fails snapmem_verify as fast). */
	for (size_t i = 0; small && i < b.n; i++) {
		uint64_t mem;
		if ((b.secs[i].type == SEC_MEMORY || b.secs[i].type == SEC_DISK) &&
		    !snapmem_size(b.map + b.secs[i].offset, b.secs[i].size, &mem, &e) &&
		    mem > MEM_LIMIT)
			small = 0;
	}
	if (small)
		(void)snapshot_verify(&b, &e);
	bundle_close(&b);
	free(copy);
	return 0;
}
