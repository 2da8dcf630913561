/*
 * corrupt_chunk BUNDLE CHUNK [stale]: damages one stored chunk of a bundle's
 * memory section in place, yet leaves a container that opens, as an attacker
 * would: flips 64 bytes in the middle of the chunk's zstd frame, then
 * recomputes (format 2) the chunk's BLAKE2b in the chunk table and the
 * section's BLAKE2b over the table, then the section's XXH3 in its TOC
 * entry, the TOC checksum and the header checksum (docs/bundle-format.md).
 * Only the chunk's own frame (its content checksum) can tell. With "stale"
 * the chunk's hash is left as it was: the hash tells. (A signature would
 * tell too: the TOC changed.) Used by tests/integration/lazy.test.sh;
 * built with -lxxhash -lsodium.
 */
#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>
#include <xxhash.h>

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

static void die(const char *msg)
{
	fprintf(stderr, "corrupt_chunk: %s\n", msg);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "stale")))
		die("usage: corrupt_chunk BUNDLE CHUNK [stale]");
	int stale = argc == 4;
	uint32_t chunk = (uint32_t)strtoul(argv[2], NULL, 0);
	int fd = open(argv[1], O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 64)
		die("cannot open the bundle");
	uint8_t *b = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED)
		die("cannot map the bundle");
	if (memcmp(b, "\x89SMOLVM\n", 8))
		die("not a bundle");
	uint64_t toc = get64(b + 16), size = (uint64_t)st.st_size;
	uint32_t n = get32(b + 24), esz = get32(b + 28), version = get32(b + 8);
	uint64_t sigs = version >= 2 ? get64(b + 48) : 0;
	if (esz != (version >= 2 ? 160 : 128) || toc > size || sigs > size - toc ||
	    size - sigs - toc != (uint64_t)n * esz)
		die("bad table of contents");

	uint8_t *ent = NULL;
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp((char *)b + toc + (uint64_t)i * esz, "memory"))
			ent = b + toc + (uint64_t)i * esz;
	if (!ent)
		die("no memory section");
	uint64_t off = get64(ent + 72), len = get64(ent + 80);
	if (off > toc || len > toc - off || len < 24)
		die("memory section out of range");
	uint8_t *sec = b + off;
	uint32_t nchunks = get32(sec + 20), es = get32(sec + 4) >= 2 ? 48 : 16;
	if (memcmp(sec, "SMEM", 4) || chunk >= nchunks || 24 + (uint64_t)nchunks * es > len)
		die("bad chunk table, or no such chunk");
	uint8_t *cent = sec + 24 + (uint64_t)chunk * es;
	uint64_t coff = get64(cent);
	uint32_t clen = get32(cent + 8);
	if (!coff)
		die("that chunk is all zero: not stored");
	if (clen < 256 || coff > len || clen > len - coff)
		die("that chunk's frame is too short or out of range");

	uint64_t at = coff + clen / 2 - 32;
	for (int k = 0; k < 64; k++)
		sec[at + k] ^= 0xff;
	if (version >= 2) {
		if (sodium_init() < 0 || es != 48)
			die("format 2 wants libsodium and a version 2 chunk table");
		if (!stale)
			crypto_generichash(cent + 16, 32, sec + coff, clen, NULL, 0);
		crypto_generichash(ent + 128, 32, sec, (size_t)get64(ent + 112), NULL, 0);
	}
	put64(ent + 96, XXH3_64bits(sec, (size_t)len));
	put64(b + 40, XXH3_64bits(b + toc, (size_t)n * esz));
	put64(b + 56, XXH3_64bits(b, 56));
	if (msync(b, (size_t)size, MS_SYNC) < 0)
		die("msync failed");
	printf("chunk %u: flipped 64 bytes at offset %llu of its %u-byte frame; %s"
	       "memory section, TOC and header checksums recomputed\n", chunk,
	       (unsigned long long)(at - coff), clen,
	       version < 2 ? "" : stale ? "its hash left as it was; " : "its hash, ");
	return 0;
}
