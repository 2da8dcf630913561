#include "rootfs/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int tree_lstat(int dirfd, const char *name, const char *shown, int depth, struct stat *st,
	       struct err *e)
{
	if (depth > TREE_MAX_DEPTH)
		return err_set(e, -ELOOP, "%s: nested too deep", shown);
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW))
		return err_set(e, -errno, "%s: %s", shown, strerror(errno));
	return 0;
}

int tree_readlink(int dirfd, const char *name, const char *shown, char *buf, size_t len,
		  struct err *e)
{
	ssize_t n = readlinkat(dirfd, name, buf, len - 1);

	if (n < 0)
		return err_set(e, -errno, "%s: %s", shown, strerror(errno));
	buf[n] = 0;
	return 0;
}
