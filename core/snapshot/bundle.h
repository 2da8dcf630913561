/* The .smolmachine container: a header, sections back to back, a table of
 * contents, and (format 2) an optional block of signatures at the end.
 * Every byte is covered by a checksum (XXH3-64): the header by its own, the
 * TOC by one in the header, each section by one in its TOC entry; sections
 * tile the file with no gaps, so a single flipped bit anywhere is detected.
 * Format 2 adds a cryptographic hash (BLAKE2b-256) of each section to its
 * TOC entry; the hash of the TOC is then the bundle's identity, and what a
 * signature signs (snapshot/sign.h). Layout in docs/bundle-format.md.
 *
 * Writing is atomic: a temporary file next to the target, fsync, rename.
 * Reading treats the file as hostile: everything is bounded and verified
 * before use. */
#ifndef SMOLVM_BUNDLE_H
#define SMOLVM_BUNDLE_H

#include <stdint.h>
#include <stdio.h>
#include <sodium.h>
#include <xxhash.h>

#include "lib/err.h"

#define BUNDLE_MAGIC "\x89SMOLVM\n"
#define BUNDLE_VERSION 2        /* written; format 1 is still read */
#define BUNDLE_HEADER_SIZE 64
#define BUNDLE_TOC_ENTRY_SIZE 160  /* format 2 */
#define BUNDLE_TOC_ENTRY_SIZE_V1 128
#define BUNDLE_HASH_SIZE 32        /* BLAKE2b-256 */
#define BUNDLE_SIG_MAX 16          /* signatures in one bundle */
#define BUNDLE_MAX_SECTIONS 4096
#define BUNDLE_NAME_MAX 63 /* in a 64-byte, NUL-padded field */

enum bundle_section_type {
	SEC_MANIFEST = 1, /* INI text */
	SEC_LUA = 2,      /* the machine script, source text */
	SEC_VM = 3,       /* backend VM state (irqchip, PIT, clock) */
	SEC_CPU = 4,      /* one vCPU's state */
	SEC_DEVICE = 5,   /* one device's state */
	SEC_MEMORY = 6,   /* guest RAM, chunked zstd */
	SEC_KEPT = 7,     /* values hooks keep across a snapshot (vm:keep) */
	SEC_DISK = 8,     /* a disk's base image ("disk.NAME"), chunked as memory */
	SEC_PARENT = 9,   /* the parent of a child bundle (snapshot/lineage.h) */
	SEC_IMAGE = 10,   /* a device's bulk data ("image.DEV.NAME"), chunked as memory */
};

/* The sections in the chunked layout of guest memory (snapmem.h), whose
 * hash covers only their chunk table. */
static inline int bundle_chunked(uint32_t type)
{
	return type == SEC_MEMORY || type == SEC_DISK || type == SEC_IMAGE;
}

enum bundle_compression { COMP_NONE = 0, COMP_ZSTD = 1 };

struct bundle_section {
	char name[BUNDLE_NAME_MAX + 1];
	uint32_t type, compression, flags;
	uint64_t offset, size, raw_size;
	uint64_t hash; /* XXH3-64 of the stored bytes */
	/* Format 2: BLAKE2b-256 of the first `covered` stored bytes. A section
	 * whose digest covers only its head (memory: the chunk table) carries
	 * hashes of the rest in that head, checked as it is read. Format 1:
	 * covered = size, digest zero (the XXH3 is all there is). */
	uint64_t covered;
	uint8_t digest[BUNDLE_HASH_SIZE];
};

/* One Ed25519 signature of the bundle's identity (snapshot/sign.h). */
struct bundle_signature {
	uint8_t key[32]; /* public key */
	uint8_t sig[64];
};

/* What a signature signs: a tag, then the bundle's identity (the BLAKE2b
 * of its TOC). */
#define BUNDLE_SIGNED_TAG "smolvm-bundle-2\n"
#define BUNDLE_SIGNED_SIZE (16 + BUNDLE_HASH_SIZE)
void bundle_signed_message(const uint8_t id[BUNDLE_HASH_SIZE], uint8_t msg[BUNDLE_SIGNED_SIZE]);
/* Encodes a signature block into p (8 + 96 n bytes); returns its size. */
size_t bundle_sigblock_encode(uint8_t *p, const struct bundle_signature *v, size_t n);

struct bundle_writer {
	char *path, *tmp_path;
	int fd;
	uint64_t pos;
	struct bundle_section *secs;
	size_t n, cap;
	/* The section being written. */
	int open, sealed;
	XXH3_state_t *xxh;
	crypto_generichash_state b2;
};

int bundle_writer_open(struct bundle_writer *w, const char *path, struct err *e) WARN_UNUSED;
/* A section is begun, fed in pieces, and ended. */
int bundle_section_begin(struct bundle_writer *w, const char *name, uint32_t type,
			 uint32_t compression, uint64_t raw_size, struct err *e) WARN_UNUSED;
int bundle_section_write(struct bundle_writer *w, const void *buf, size_t len,
			 struct err *e) WARN_UNUSED;
int bundle_section_end(struct bundle_writer *w, struct err *e) WARN_UNUSED;
/* The section's digest covers what was written of it so far, and no more:
 * the rest must be covered by hashes in what was written (snapmem.h). */
void bundle_section_seal_head(struct bundle_writer *w);
/* Convenience: a whole section from one buffer. */
int bundle_add(struct bundle_writer *w, const char *name, uint32_t type,
	       const void *buf, size_t len, struct err *e) WARN_UNUSED;
/* Writes the TOC and header, fsyncs, renames over the target. */
int bundle_writer_commit(struct bundle_writer *w, struct err *e) WARN_UNUSED;
/* Drops the temporary file (the target is untouched). */
void bundle_writer_abort(struct bundle_writer *w);

struct bundle {
	char *path;
	int fd;
	const uint8_t *map;
	uint64_t size;
	uint32_t version;
	struct bundle_section *secs;
	size_t n;
	/* Format 2: BLAKE2b-256 of the TOC (which holds every section's
	 * digest), and the signatures found after it (not yet checked). */
	uint8_t id[BUNDLE_HASH_SIZE];
	uint64_t toc_offset, toc_size;
	struct bundle_signature *sigs;
	size_t nsigs;
};

/* Opens and verifies header and TOC (not section contents). */
int bundle_open(struct bundle *b, const char *path, struct err *e) WARN_UNUSED;
/* Same, over bytes in memory (tests, fuzzing); `data` must outlive b. */
int bundle_open_mem(struct bundle *b, const void *data, size_t len, struct err *e) WARN_UNUSED;
void bundle_close(struct bundle *b);
const struct bundle_section *bundle_find(const struct bundle *b, const char *name);
/* Verifies a section (format 2: its digest; format 1: its XXH3); returns a
 * pointer to its stored bytes, of which s->covered are verified. */
int bundle_section_data(const struct bundle *b, const struct bundle_section *s,
			const uint8_t **data, struct err *e) WARN_UNUSED;
/* Verifies every section, digest and XXH3 (inspect, sign; the memory
 * section's chunks: snapmem.h). */
int bundle_verify_all(const struct bundle *b, struct err *e) WARN_UNUSED;
const char *bundle_type_name(uint32_t type);

#endif
