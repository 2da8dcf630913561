/* Where smolvm keeps things on the host. */
#ifndef SMOLVM_DIRS_H
#define SMOLVM_DIRS_H

#include <stddef.h>
#include <sys/types.h>

/* $SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else ~/.cache/smolvm;
 * -ENOENT when none can be named. */
int cache_dir(char *buf, size_t len);
/* mkdir -p; 0 or -errno. */
int mkdirs(const char *path, mode_t mode);

#endif
