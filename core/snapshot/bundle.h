/* The .smolmachine container: a header, sections back to back, and a table
 * of contents at the end. Every byte is covered by a checksum (XXH3-64):
 * the header by its own, the TOC by one in the header, each section by one
 * in its TOC entry; sections tile the file with no gaps, so a single flipped
 * bit anywhere is detected. Layout in docs/bundle-format.md.
 *
 * Writing is atomic: a temporary file next to the target, fsync, rename.
 * Reading treats the file as hostile: everything is bounded and verified
 * before use. */
#ifndef SMOLVM_BUNDLE_H
#define SMOLVM_BUNDLE_H

#include <stdint.h>
#include <stdio.h>
#include <xxhash.h>

#include "lib/err.h"

#define BUNDLE_MAGIC "\x89SMOLVM\n"
#define BUNDLE_VERSION 1
#define BUNDLE_HEADER_SIZE 64
#define BUNDLE_TOC_ENTRY_SIZE 128
#define BUNDLE_MAX_SECTIONS 4096
#define BUNDLE_NAME_MAX 63 /* in a 64-byte, NUL-padded field */

enum bundle_section_type {
	SEC_MANIFEST = 1, /* INI text */
	SEC_LUA = 2,      /* the machine script, source text */
	SEC_VM = 3,       /* backend VM state (irqchip, PIT, clock) */
	SEC_CPU = 4,      /* one vCPU's state */
	SEC_DEVICE = 5,   /* one device's state */
	SEC_MEMORY = 6,   /* guest RAM, chunked zstd */
};

enum bundle_compression { COMP_NONE = 0, COMP_ZSTD = 1 };

struct bundle_section {
	char name[BUNDLE_NAME_MAX + 1];
	uint32_t type, compression, flags;
	uint64_t offset, size, raw_size, hash;
};

struct bundle_writer {
	char *path, *tmp_path;
	int fd;
	uint64_t pos;
	struct bundle_section *secs;
	size_t n;
	/* The section being written. */
	int open;
	XXH3_state_t *xxh;
};

int bundle_writer_open(struct bundle_writer *w, const char *path, struct err *e) WARN_UNUSED;
/* A section is begun, fed in pieces, and ended. */
int bundle_section_begin(struct bundle_writer *w, const char *name, uint32_t type,
			 uint32_t compression, uint64_t raw_size, struct err *e) WARN_UNUSED;
int bundle_section_write(struct bundle_writer *w, const void *buf, size_t len,
			 struct err *e) WARN_UNUSED;
int bundle_section_end(struct bundle_writer *w, struct err *e) WARN_UNUSED;
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
	struct bundle_section *secs;
	size_t n;
};

/* Opens and verifies header and TOC (not section contents). */
int bundle_open(struct bundle *b, const char *path, struct err *e) WARN_UNUSED;
/* Same, over bytes in memory (tests, fuzzing); `data` must outlive b. */
int bundle_open_mem(struct bundle *b, const void *data, size_t len, struct err *e) WARN_UNUSED;
void bundle_close(struct bundle *b);
const struct bundle_section *bundle_find(const struct bundle *b, const char *name);
/* Verifies a section's checksum; returns a pointer to its stored bytes. */
int bundle_section_data(const struct bundle *b, const struct bundle_section *s,
			const uint8_t **data, struct err *e) WARN_UNUSED;
/* Verifies every section (inspect). */
int bundle_verify_all(const struct bundle *b, struct err *e) WARN_UNUSED;
const char *bundle_type_name(uint32_t type);

#endif
