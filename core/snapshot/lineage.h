/* Child bundles: a bundle saved from a restored machine names the bundle
 * it was restored from (its parent) by identity, in a section "parent",
 * and stores only the memory and disk chunks that differ from it: the
 * others are flagged "in the parent" in its chunk tables (snapmem.h). A
 * restore finds the parent next to the child (by the file name it had
 * when the child was saved) or in the cache ($CACHE/bundle-ID.smolmachine,
 * where a save puts a link to it), checks its identity, and links each
 * chunked section to the parent's. Parents may have parents, up to
 * LINEAGE_MAX generations.
 *
 * Section "parent" (type 9):
 *   "SPAR" u32 version(1) id[32] (the parent's identity: BLAKE2b of its
 *   TOC) u64 size (of the parent file) u32 name_len, name (its file name,
 *   no directory, 1..255 bytes, no '/') */
#ifndef SMOLVM_LINEAGE_H
#define SMOLVM_LINEAGE_H

#include <stdint.h>

#include "lib/err.h"
#include "snapshot/bundle.h"
#include "snapshot/snapmem.h"

#define LINEAGE_MAX 16
#define LINEAGE_NAME_MAX 255

struct parent_ref {
	uint8_t id[BUNDLE_HASH_SIZE];
	uint64_t size;
	char name[LINEAGE_NAME_MAX + 1];
};

/* The ancestors of a bundle, opened and checked: up[0] its parent. */
struct lineage {
	struct bundle up[LINEAGE_MAX];
	size_t n;
};

/* Reads b's parent section: 1 and *ref when it has one, 0 when not, or a
 * negative errno for a malformed one. */
int lineage_parent(const struct bundle *b, struct parent_ref *ref, struct err *e) WARN_UNUSED;
/* Opens every ancestor of b (none: n = 0); a missing or changed one is
 * refused, naming it and where it was looked for. */
int lineage_open(const struct bundle *b, struct lineage *l, struct err *e) WARN_UNUSED;
void lineage_close(struct lineage *l);

/* A chunked section (memory, disk.*) of b with the same section of each
 * ancestor it needs linked below it: v[0] is b's. */
struct chunked {
	struct snapmem_view v[LINEAGE_MAX + 1];
};
int lineage_view(const struct bundle *b, const struct lineage *l, const struct bundle_section *s,
		 struct chunked *c, struct err *e) WARN_UNUSED;

/* The same for section `name` of `which`: b itself or one of l's bundles;
 * -ENOENT (no message) when it has no such chunked section. */
int lineage_view_of(const struct bundle *b, const struct lineage *l, const struct bundle *which,
		    const char *name, struct chunked *c, struct err *e) WARN_UNUSED;

/* Where a chunked section's chunks are stored: per generation (0: the
 * bundle itself, k: its k-th ancestor, l->up[k - 1]), how many and their
 * stored bytes. */
struct chunk_costs {
	uint64_t zero;
	uint64_t chunks[LINEAGE_MAX + 1], bytes[LINEAGE_MAX + 1];
};
void lineage_costs(const struct chunked *c, struct chunk_costs *out);

/* Writes the "parent" section naming `ref`. */
int lineage_write(struct bundle_writer *w, const struct parent_ref *ref, struct err *e) WARN_UNUSED;
/* The parent_ref of an open bundle (its identity, size, file name). */
void lineage_ref_of(const struct bundle *b, struct parent_ref *ref);
/* Where the cache keeps ancestors: a link to b there, unless one is there
 * already; 0, or -errno when it cannot (another file system: then the
 * parent is found only next to its children). */
int lineage_keep(const struct bundle *b, struct err *e) WARN_UNUSED;

/* Writes `in` and its ancestors' chunks as one bundle without a parent,
 * atomically at `out` (which may be `in`): every chunk checked, frames
 * copied as they are (nothing compressed again). generations: how many
 * ancestors it took in. */
int lineage_flatten(const char *in, const char *out, size_t *generations,
		    struct snapmem_stats *st, struct err *e) WARN_UNUSED;

#endif
