/*
 * retouch BUNDLE SECTION OFFSET|@TEXT: what an attacker with a signed bundle
 * can do without the signer's key. Flips the lowest bit of byte OFFSET of
 * section SECTION (or of the first byte of TEXT in it), then
 * recomputes everything that is not a signature: the section's BLAKE2b
 * (over its covered bytes) and XXH3 in its TOC entry, the TOC checksum and
 * the header checksum (docs/bundle-format.md, format 2). The bundle opens
 * and every hash matches; only the signature can tell. Used by
 * tests/security/signatures.test.sh; built with -lxxhash -lsodium.
 */
#define _GNU_SOURCE /* memmem */
#include <endian.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

static void die(const char *msg)
{
	fprintf(stderr, "retouch: %s\n", msg);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		die("usage: retouch BUNDLE SECTION OFFSET|@TEXT");
	uint64_t at = strtoull(argv[3], NULL, 0);
	int fd = open(argv[1], O_RDWR);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 64 || sodium_init() < 0)
		die("cannot open the bundle");
	uint8_t *b = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED)
		die("cannot map the bundle");
	if (memcmp(b, "\x89SMOLVM\n", 8) || get32(b + 8) != 2)
		die("not a format 2 bundle");
	uint64_t toc = get64(b + 16), size = (uint64_t)st.st_size, sigs = get64(b + 48);
	uint32_t n = get32(b + 24), esz = get32(b + 28);
	if (esz != 160 || toc > size || sigs > size - toc || size - sigs - toc != (uint64_t)n * esz)
		die("bad table of contents");
	uint8_t *ent = NULL;
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp((char *)b + toc + (uint64_t)i * esz, argv[2]))
			ent = b + toc + (uint64_t)i * esz;
	if (!ent)
		die("no such section");
	uint64_t off = get64(ent + 72), len = get64(ent + 80), covered = get64(ent + 112);
	if (off > toc || len > toc - off || covered > len)
		die("section out of range");
	if (argv[3][0] == '@') {
		const uint8_t *p = memmem(b + off, (size_t)len, argv[3] + 1, strlen(argv[3] + 1));
		if (!p || !argv[3][1])
			die("no such text in the section");
		at = (uint64_t)(p - (b + off));
	}
	if (at >= len)
		die("offset out of range");
	b[off + at] ^= 0x01;
	crypto_generichash(ent + 128, 32, b + off, (size_t)covered, NULL, 0);
	put64(ent + 96, XXH3_64bits(b + off, (size_t)len));
	put64(b + 40, XXH3_64bits(b + toc, (size_t)n * esz));
	put64(b + 56, XXH3_64bits(b, 56));
	if (msync(b, (size_t)size, MS_SYNC) < 0)
		die("msync failed");
	printf("%s: byte %llu flipped; its hash, checksum, the TOC's and the header's "
	       "recomputed; signatures left as they were\n", argv[2], (unsigned long long)at);
	return 0;
}
