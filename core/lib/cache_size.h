/* The cache's size: what it holds, least recently used first, and a
 * quota ($SMOLVM_CACHE_MAX, default CACHE_MAX_DEFAULT) kept by removing
 * the least recently used entries when a new one is added. Entries are
 * memory images (mem-HASH-SIZE.raw) and root filesystem images (rootfs/ID.ext4,
 * with their .log and .lock), bundles pulled for run and exec
 * (pulled/DIGEST.smolmachine) and the blobs pulls fetched (blobs/sha256/HEX); "used" is the access time, which a cache hit
 * sets (cache_touch), so it holds whatever the mount options say. */
#ifndef SMOLVM_CACHE_SIZE_H
#define SMOLVM_CACHE_SIZE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/err.h"

#define CACHE_MAX_DEFAULT (20ull << 30)

struct cache_entry {
	char *path;
	const char *kind; /* "memory", "disk", "parent", "rootfs", "pulled", "blob" */
	uint64_t bytes;   /* on disk (allocated blocks: images are sparse) */
	struct timespec used;
};

/* Every entry of the user's cache, least recently used first; *total is
 * their bytes. An empty or missing cache is 0 entries. */
int cache_list(struct cache_entry **out, size_t *n, uint64_t *total, struct err *e) WARN_UNUSED;
void cache_list_free(struct cache_entry *v, size_t n);
/* The quota: $SMOLVM_CACHE_MAX (a size, as for memory), else the default;
 * -EINVAL (e says why) when the variable is not a size. */
int cache_max(uint64_t *max, struct err *e) WARN_UNUSED;
/* Removes least recently used entries, never `keep` (a path, may be NULL),
 * until the cache holds at most max bytes; counts what went. */
int cache_trim(uint64_t max, const char *keep, unsigned *removed, uint64_t *freed,
	       struct err *e) WARN_UNUSED;
/* After adding `path`: trims to the quota, saying on stderr what went
 * (errors are only reported: a cache that stays too big still works). */
void cache_added(const char *path);
/* A hit: the entry was used now. */
void cache_touch(int fd);
void cache_touch_path(const char *path);

#endif
