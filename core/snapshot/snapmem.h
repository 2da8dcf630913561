/* Guest RAM in a bundle: fixed-size chunks, each an independent zstd frame
 * (with its content checksum), all-zero chunks left out, so chunks can be
 * decompressed in parallel or one at a time on demand.
 *
 * Section layout (little-endian):
 *   "SMEM" u32 version(2) u64 mem_size u32 chunk_size u32 nchunks
 *   nchunks x { u64 offset (from the section start, 0 = zero chunk),
 *               u32 compressed size, u32 flags,
 *               BLAKE2b-256 of the frame (zero for a zero chunk) }
 *   zstd frames, in chunk order
 * flags (version 3 only; 0 before): SNAPMEM_IN_PARENT, the chunk is the
 * frame of the same chunk in the same section of the parent bundle
 * (snapshot/lineage.h): offset 0, size and hash those of that frame, which
 * must match when the two are linked (snapmem_link). A child bundle stores
 * only the chunks that changed. Version 3 is written only when a section
 * has such chunks, so other bundles stay readable by older builds.
 * The section's digest in the TOC covers the header and the chunk table
 * only; each frame is checked against its hash when it is decompressed, so
 * a lazy restore verifies only what it reads. Version 1 (format 1 bundles)
 * has 16-byte entries without hashes: its whole section must be verified
 * by the caller. */
#ifndef SMOLVM_SNAPMEM_H
#define SMOLVM_SNAPMEM_H

#include <stdint.h>

#include "snapshot/bundle.h"
#include "machine/mem.h"

#define SNAPMEM_CHUNK (1u << 20)
#define SNAPMEM_HDR 24
#define SNAPMEM_VERSION 2
#define SNAPMEM_VERSION_CHILD 3 /* with chunks in the parent */
#define SNAPMEM_IN_PARENT 1u
#define SNAPMEM_ENTRY 48
#define SNAPMEM_ENTRY_V1 16
/* The most a chunked section holds: guest memory is bounded by the board
 * (the manifest's size must match), a disk or a device image by this. */
#define SNAPMEM_MAX_SIZE (1ull << 40)

struct snapmem_stats {
	uint64_t chunks, zero_chunks, stored_bytes;
	uint64_t reused_chunks; /* taken as they were from the base */
	uint64_t parent_chunks; /* left in the parent (of reused or not) */
};

struct snapmem_view;

/* What a save from a restored machine starts from: the section it was
 * restored from (v), and which chunks are unchanged since (clean: their
 * frames are copied as they are, not compressed again; NULL: none known).
 * parent: the same section of the bundle the new one names as its parent
 * (v itself, or v's own parent), or NULL for a bundle without one: chunks
 * the parent holds as they are now are written as "in the parent". */
struct snapmem_base {
	const struct snapmem_view *v;
	const uint8_t *clean; /* per chunk, or NULL */
	const struct snapmem_view *parent;
	const uint8_t *known_zero; /* per chunk: 1 = all zero, not read (a hole) */
};

/* Compresses `m` into a memory section named "memory"; base may be NULL. */
int snapmem_write(struct bundle_writer *w, const struct guest_mem *m,
		  const struct snapmem_base *base, struct snapmem_stats *st,
		  struct err *e) WARN_UNUSED;
/* The same for any `size` bytes at `data` (a disk image: SEC_DISK). */
int snapmem_write_bytes(struct bundle_writer *w, const char *name, uint32_t type,
			const uint8_t *data, uint64_t size, const struct snapmem_base *base,
			struct snapmem_stats *st, struct err *e) WARN_UNUSED;
/* A memory section of sec_size bytes whose first `covered` bytes the
 * caller verified (bundle_section_data): chunks beyond them must carry
 * hashes (version 2), checked as each is decompressed. */

/* Decompresses it into dst (mem_size bytes, zero-filled beforehand),
 * using `threads` threads. */
int snapmem_read(const uint8_t *sec, uint64_t sec_size, uint64_t covered, void *dst,
		 uint64_t mem_size, unsigned threads, struct err *e) WARN_UNUSED;
/* One chunk at a time (lazy restore): a checked view of the section. */
struct snapmem_view {
	const uint8_t *sec;
	uint64_t sec_size, mem_size;
	uint32_t nchunks;
	uint32_t entry; /* size of a table entry: version 1 or 2 */
	uint32_t version;
	uint32_t in_parent; /* chunks flagged SNAPMEM_IN_PARENT */
	const char *name;   /* for messages (NULL: "memory") */
	const char *path;   /* the bundle's, for messages (may be NULL) */
	const struct snapmem_view *parent; /* snapmem_link */
};

int snapmem_open(const uint8_t *sec, uint64_t sec_size, uint64_t covered,
		 struct snapmem_view *v, struct err *e) WARN_UNUSED;
/* Links v to the same section of its parent bundle: every chunk v says is
 * in the parent must be there with the same size and hash (else the
 * parent is not the one v was saved from). Without a link such chunks do
 * not read. */
int snapmem_link(struct snapmem_view *v, const struct snapmem_view *parent,
		 struct err *e) WARN_UNUSED;
/* 1 when chunk i is stored in the parent (SNAPMEM_IN_PARENT). */
int snapmem_chunk_in_parent(const struct snapmem_view *v, uint32_t i);
/* Decompresses/verifies a whole view, its parent's chunks included. */
int snapmem_read_view(const struct snapmem_view *v, void *dst, unsigned threads,
		      struct err *e) WARN_UNUSED;
int snapmem_verify_view(const struct snapmem_view *v, struct err *e) WARN_UNUSED;
/* What the section holds, whatever bundle stores each chunk: a BLAKE2b
 * of its size and every chunk's frame hash (zeros for a zero chunk), so a
 * child's section and its parent's name one cache image when every chunk
 * is the same. -ENOTSUP for version 1 (no chunk hashes). */
int snapmem_content_id(const struct snapmem_view *v, uint8_t id[32]);
/* Bytes of guest memory chunk i covers. */
size_t snapmem_chunk_len(const struct snapmem_view *v, uint32_t i);
/* 1 when chunk i is all zero (stored as nothing). */
int snapmem_chunk_zero(const struct snapmem_view *v, uint32_t i);
/* The stored frame of chunk i, found in the parent if it is there (NULL,
 * 0 for a zero chunk, or one in a parent that is not linked). */
void snapmem_chunk_frame(const struct snapmem_view *v, uint32_t i, const uint8_t **p,
			 uint32_t *len);
/* Checks chunk i against its hash and decompresses it into dst
 * (snapmem_chunk_len bytes); dctx is a ZSTD_DCtx of the caller's thread. */
int snapmem_chunk_read(const struct snapmem_view *v, uint32_t i, void *dctx, void *dst,
		       struct err *e) WARN_UNUSED;

/* Reads mem_size from a section header after bounds checks. */
int snapmem_size(const uint8_t *sec, uint64_t sec_size, uint64_t *mem_size,
		 struct err *e) WARN_UNUSED;
/* Checks every stored chunk against its hash and decompresses it
 * (inspect, verify, sign): the whole section, as a restore would. */
int snapmem_verify(const uint8_t *sec, uint64_t sec_size, uint64_t covered,
		   struct err *e) WARN_UNUSED;

#endif
