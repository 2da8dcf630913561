/* Copy-on-write overlay over a read-only base image.
 *
 * The base is opened read-only (and share-locked) and never modified; many
 * machines may use one base at once, each with its own overlay. The overlay
 * holds only what was written, in a sparse file:
 *
 *   [0, 4096)            header (little-endian, see cow.c)
 *   [4096, +map_size)    allocation map, one bit per cluster (LSB first)
 *   [data_offset, ...)   cluster i at data_offset + i * cluster_size
 *
 * Reads of unwritten clusters come from the base; the first write to a
 * cluster copies the rest of it from the base (copy-up). The on-disk map
 * only changes in cow_flush(), after the data it points to is durable, so a
 * crash never exposes a cluster whose copy-up did not reach the disk.
 * Deleting the overlay resets the disk to the base.
 *
 * Not thread-safe: one caller at a time per struct cow.
 *
 * Errors: a call that can fail for a reason the user must hear returns
 * -errno after api->set_error(ctx, ...), the plugins' one convention (the
 * message names the files); the I/O calls return -errno alone.
 */
#ifndef BLK_COW_H
#define BLK_COW_H

#include <stddef.h>
#include <stdint.h>

#include <smolvm/plugin.h>

#define COW_MAGIC "SMOLCOW\0"
#define COW_VERSION 1
#define COW_HEADER_SIZE 4096u
#define COW_DEFAULT_CLUSTER (64u * 1024)
#define COW_MIN_CLUSTER 512u
#define COW_MAX_CLUSTER (2u * 1024 * 1024)
/* How much of the base goes into the identity hash kept in the header. */
#define COW_HASH_BYTES (64u * 1024)

struct cow;

struct cow_params {
	uint32_t cluster_size; /* for a new overlay (power of two); 0: default */
	int readonly;          /* open an existing overlay without writing it */
};

/* Opens `base` read-only and `overlay`, creating and initialising the
 * overlay when it does not exist or is empty (unless readonly). An existing
 * overlay is validated: magic, version, header checksum, sizes, map, and
 * that it was made for this base (size and a hash of its first 64 KiB).
 * Returns 0, or -errno after set_error() naming the files. */
__attribute__((warn_unused_result))
int cow_open(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *base,
	     const char *overlay, const struct cow_params *p, struct cow **out);
/* Flushes (see cow_flush) and frees; returns the flush result. */
int cow_close(struct cow *c);

/* Byte-granular I/O inside [0, cow_size()): 0 or -errno (-EINVAL out of
 * range, -EROFS for a write to a readonly overlay, -EIO for a base that
 * shrank). */
__attribute__((warn_unused_result))
int cow_read(struct cow *c, void *buf, size_t len, uint64_t off);
__attribute__((warn_unused_result))
int cow_write(struct cow *c, const void *buf, size_t len, uint64_t off);
/* Makes every completed write durable: data, then the map, then data
 * again (fdatasync). 0 or -errno. */
__attribute__((warn_unused_result))
int cow_flush(struct cow *c);

/* A private overlay over `base`: an unlinked temporary file in $TMPDIR
 * (or /tmp) that vanishes when the process exits. Same errors as cow_open. */
__attribute__((warn_unused_result))
int cow_open_private(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *base,
		     uint32_t cluster_size, struct cow **out);

/* Snapshots. The identity hash of an image (FNV-1a of its first
 * COW_HASH_BYTES), as overlays keep it for their base: 0 or -errno. */
__attribute__((warn_unused_result))
int cow_image_hash(int fd, uint64_t size, uint64_t *out);
/* pwrite() until all of buf is written: 0 or -errno (-EIO on a zero write). */
int cow_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
uint64_t cow_base_hash(const struct cow *c);
/* The overlay file and where cluster 0 is in it (cluster i at
 * cow_data_offset() + i * cluster size; unwritten ones are holes, or past
 * the end of the file): for saving its content as an image. */
int cow_fd(const struct cow *c);
uint64_t cow_data_offset(const struct cow *c);
/* The in-memory allocation map (current, flushed or not). */
const uint8_t *cow_map(const struct cow *c, uint64_t *len);
/* Checks a map from a snapshot for a disk of `size` bytes: cluster size
 * valid, length ceil(clusters / 8), no bit past the last cluster. 0, or
 * -EINVAL after set_error() ("snapshot: bad overlay map: ..."). */
__attribute__((warn_unused_result))
int cow_check_map(const struct smolvm_host_api *api, smolvm_ctx *ctx, uint64_t size,
		  uint32_t cluster_size, const uint8_t *map, uint64_t map_len);
/* Stores a whole cluster (exactly cow_cluster_len bytes) and marks it
 * allocated; durable after cow_flush. 0 or -errno (-EINVAL: bad index or
 * length). */
__attribute__((warn_unused_result))
int cow_import_cluster(struct cow *c, uint64_t i, const void *data, uint32_t len);
uint32_t cow_cluster_len(const struct cow *c, uint64_t i); /* last may be short */

uint64_t cow_size(const struct cow *c); /* the virtual size, = the base's */
uint32_t cow_cluster_size(const struct cow *c);
uint64_t cow_clusters(const struct cow *c);
int cow_allocated(const struct cow *c, uint64_t cluster);
uint64_t cow_allocated_count(const struct cow *c);
/* A non-fatal note from cow_open (the base's mtime changed since the
 * overlay was made), or NULL. */
const char *cow_warning(const struct cow *c);

#endif
