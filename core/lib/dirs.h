/* Where smolvm keeps things on the host, and files made there safely. */
#ifndef SMOLVM_DIRS_H
#define SMOLVM_DIRS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/err.h"

/* $SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else ~/.cache/smolvm;
 * -ENOENT when none can be named. */
int cache_dir(char *buf, size_t len);
/* The cache directory, and `sub` under it when not NULL: made 0700 when
 * missing; refused (e says why and what to do) when it belongs to another
 * user or others may write it, narrowed to 0700 when others may read it. */
int cache_dir_private(char *buf, size_t len, const char *sub, struct err *e) WARN_UNUSED;
/* The same for smolvm's data ($SMOLVM_DATA_DIR, else $XDG_DATA_HOME/smolvm,
 * else ~/.local/share/smolvm): what this user trusts. */
int data_dir_private(char *buf, size_t len, const char *sub, struct err *e) WARN_UNUSED;
/* The same for smolvm's configuration ($SMOLVM_CONFIG_DIR, else
 * $XDG_CONFIG_HOME/smolvm, else ~/.config/smolvm): keys, trusted keys. */
int config_dir_private(char *buf, size_t len, const char *sub, struct err *e) WARN_UNUSED;
/* Opens a cache entry for reading: a regular file of this user's that
 * others cannot write, `size` bytes long (never through a link); an fd,
 * or -ENOENT for anything else. */
int cache_file_open(const char *path, uint64_t size);
/* Creates PATH.tmp-XXXXXX (O_EXCL, mode 0600) for a file to be renamed
 * over path once whole; returns the fd and *tmp (free it), or -errno. */
int tmp_beside(const char *path, char **tmp);
/* Ends a file made with tmp_beside: with rc 0 it is made durable (when
 * `durable`) and renamed over path; otherwise, or when that fails, it is
 * removed. Closes fd and frees tmp; returns rc, or the failure's -errno. */
int tmp_finish(int fd, char *tmp, const char *path, int rc, int durable);
/* mkdir -p; 0 or -errno. */
int mkdirs(const char *path, mode_t mode);

#endif
