/* Walking host trees without ever following a link: the steps the cache
 * key (id.c) and the copies (copy.c) share. Inside rootfs/. */
#ifndef SMOLVM_ROOTFS_TREE_H
#define SMOLVM_ROOTFS_TREE_H

#include <stddef.h>
#include <sys/stat.h>

#include "lib/err.h"

#define TREE_MAX_DEPTH 64

/* lstat of `name` in dirfd, refused past TREE_MAX_DEPTH; messages name
 * `shown`. */
int tree_lstat(int dirfd, const char *name, const char *shown, int depth, struct stat *st,
	       struct err *e);
/* The link's target, NUL-terminated. */
int tree_readlink(int dirfd, const char *name, const char *shown, char *buf, size_t len,
		  struct err *e);

#endif
