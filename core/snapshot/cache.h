/* The local cache of decompressed memory images, keyed by the memory
 * section's hash (format 1: its checksum): $SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else
 * ~/.cache/smolvm. A restore maps the image MAP_PRIVATE, so the second and
 * later restores of a bundle decompress nothing and share page cache. */
#ifndef SMOLVM_CACHE_H
#define SMOLVM_CACHE_H

#include <stdint.h>

#include "snapshot/bundle.h"
#include "snapshot/snapmem.h"

struct cache_result {
	int fd;      /* read-only image of guest RAM (-1: filled lazily) */
	int hit;     /* 1: found in the cache; 0: decompressed now */
	int lazy;    /* 1: guest memory is filled on demand (snapshot/lazy.h) */
	char why_eager[256]; /* why not lazily, on a first restore */
	double ms;   /* time spent */
};

/* Where the image of this section lives in the cache; -ENOENT without a
 * usable cache directory (created here if missing). */
int cache_image_path(const struct bundle_section *s, const struct snapmem_view *v,
		     uint64_t mem_size, char *path, size_t len);
/* The cached image at path, read-only, or -errno (-ENOENT: not there). */
int cache_image_open(const char *path, uint64_t mem_size);

/* A file descriptor holding the section's decompressed memory. Without a
 * usable cache directory it falls back to a memfd (nothing persists). */
/* v: the section's view, linked to its parents' (lineage.h), or NULL for
 * a section with no chunks in a parent. */
int cache_memory(const struct bundle *b, const struct bundle_section *s,
		 const struct snapmem_view *v, uint64_t mem_size, struct cache_result *r,
		 struct err *e) WARN_UNUSED;
/* The same for a section of another kind ("disk": KIND-HASH-SIZE.raw);
 * `where` gets the cached file's path ("" for a memfd). */
int cache_kind_path(const char *kind, const struct bundle_section *s,
		    const struct snapmem_view *v, uint64_t size, char *path, size_t len);
int cache_image(const struct bundle *b, const struct bundle_section *s,
		const struct snapmem_view *v, const char *kind, uint64_t size, struct cache_result *r, char *where, size_t wlen,
		struct err *e) WARN_UNUSED;

#endif
