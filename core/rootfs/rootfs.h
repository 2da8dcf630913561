/* Root filesystems from Debian packages, OCI images, directories,
 * tarballs or an ext4 image: built on the host with the tools made for
 * each step (mmdebstrap, umoci, skopeo, tar, bwrap, mke2fs), cached by a
 * hash of every input. See docs/rootfs.md. */
#ifndef SMOLVM_ROOTFS_H
#define SMOLVM_ROOTFS_H

#include <stddef.h>

#include "lib/err.h"
#include "machine/config.h"

struct rootfs_opts {
	int verbose;  /* the tools' output on stderr as it comes */
	int rebuild;  /* ignore a cached image */
};

/* The ext4 image for `r`, built unless the cache holds it (an `image`
 * source is copied in): *image is a malloc'd absolute path in the cache,
 * id its name there. Prints progress on stderr. Nothing half-built is ever
 * left in the cache. */
int rootfs_build(const struct rootfs_spec *r, const struct rootfs_opts *o, char **image,
		 char id[33], struct err *e) WARN_UNUSED;
/* Where the image of that id is in this host's cache (a bundle names its
 * image by id; anything but 32 hex digits is refused). */
int rootfs_image_path(const char *id, char *out, size_t len, struct err *e) WARN_UNUSED;

/* The cache key: a hex hash of every input (sources read from disk). */
int rootfs_id(const struct rootfs_spec *r, char id[33], struct err *e) WARN_UNUSED;

/* Copies host file or directory `from` to `to` inside the tree at
 * rootfd; paths inside resolve as in the guest (a symlink never leads
 * out). Parents are made as needed; files become root's when we are. */
int rootfs_copy_in(int rootfd, const char *from, const char *to, struct err *e) WARN_UNUSED;

/* openat2(RESOLVE_IN_ROOT): `path` as the tree's own /, links included. */
int rootfs_open_in_root(int rootfd, const char *path, int flags);

#endif
