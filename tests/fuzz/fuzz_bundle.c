/* Fuzz the bundle reader: header, table of contents, manifest (inih) and
 * the memory section's chunk table. Bundles are untrusted input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/bundle.h"
#include "snapshot/manifest.h"
#include "snapshot/snapmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Mutations nearly always break a checksum first; to reach the parsers
 * behind them, every other input gets its checksums recomputed. */
static void fix_checksums(uint8_t *d, size_t size)
{
	uint64_t toc, count, h;

	if (size < BUNDLE_HEADER_SIZE)
		return;
	memcpy(&toc, d + 16, 8);
	count = 0;
	memcpy(&count, d + 24, 4);
	if (toc <= size && count <= (size - toc) / BUNDLE_TOC_ENTRY_SIZE) {
		for (uint64_t i = 0; i < count; i++) {
			uint8_t *ent = d + toc + i * BUNDLE_TOC_ENTRY_SIZE;
			uint64_t off, len;
			memcpy(&off, ent + 72, 8);
			memcpy(&len, ent + 80, 8);
			if (off <= size && len <= size - off) {
				h = XXH3_64bits(d + off, len);
				memcpy(ent + 96, &h, 8);
			}
		}
		h = XXH3_64bits(d + toc, size - toc);
		memcpy(d + 40, &h, 8);
	}
	h = XXH3_64bits(d, 56);
	memcpy(d + 56, &h, 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = NULL;
	struct bundle b;
	struct manifest m;
	struct err e;
	const uint8_t *p;

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
	for (size_t i = 0; i < b.n; i++) {
		const struct bundle_section *s = &b.secs[i];
		if (bundle_section_data(&b, s, &p, &e))
			continue;
		if (s->type == SEC_MANIFEST) {
			(void)manifest_parse((const char *)p, s->size, &m, &e);
		} else if (s->type == SEC_MEMORY) {
			uint64_t mem;
			/* Small images only: the fuzzer must not allocate GiBs. */
			if (!snapmem_size(p, s->size, &mem, &e) && mem <= (64u << 20)) {
				void *dst = calloc(1, mem ? mem : 1);
				if (dst)
					(void)snapmem_read(p, s->size, dst, mem, 1, &e);
				free(dst);
			}
		}
	}
	bundle_close(&b);
	free(copy);
	return 0;
}
