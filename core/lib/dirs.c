#include "lib/dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* $ENV, else $XDG_VAR/smolvm, else ~/HOME_SUB; -ENOENT when none is set. */
static int xdg_dir(char *buf, size_t len, const char *env_name, const char *xdg_name,
		   const char *home_sub)
{
	const char *env = getenv(env_name), *xdg = getenv(xdg_name), *home = getenv("HOME");

	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/smolvm", xdg);
	else if (home && *home)
		snprintf(buf, len, "%s/%s", home, home_sub);
	else
		return -ENOENT;
	return 0;
}

int cache_dir(char *buf, size_t len)
{
	return xdg_dir(buf, len, "SMOLVM_CACHE_DIR", "XDG_CACHE_HOME", ".cache/smolvm");
}

int mkdirs(const char *path, mode_t mode)
{
	char tmp[4096];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, mode);
			*p = '/';
		}
	}
	return mkdir(tmp, mode) == 0 || errno == EEXIST ? 0 : -errno;
}

/* A directory of ours that nobody else may write into: what is in it was
 * put there by this user. One that others may read (older versions made
 * it 0755) is narrowed to 0700. */
static int check_private(const char *dir, struct err *e)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return err_set(e, -errno, "directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_set(e, -ENOTDIR, "%s is not a directory", dir);
	if (st.st_uid != geteuid())
		return err_set(e, -EPERM, "directory %s belongs to uid %u, not to you "
			       "(uid %u): use one of your own (docs/security.md)", dir,
			       (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 022)
		return err_set(e, -EPERM, "directory %s may be written by others (mode "
			       "%04o), so what is in it cannot be trusted: remove what you did "
			       "not put there and chmod 700 it", dir, (unsigned)(st.st_mode & 07777));
	if ((st.st_mode & 077) && chmod(dir, st.st_mode & 0700) < 0)
		return err_set(e, -errno, "directory %s: chmod: %s", dir, strerror(errno));
	return 0;
}

/* buf holds a directory: make it (and `sub` under it) private. */
static int make_private(char *buf, size_t len, const char *sub, struct err *e)
{
	size_t n;
	int rc = mkdirs(buf, 0700);

	if (rc)
		return err_set(e, rc, "directory %s: %s", buf, strerror(-rc));
	rc = check_private(buf, e);
	if (rc || !sub)
		return rc;
	n = strlen(buf);
	if (snprintf(buf + n, len - n, "/%s", sub) >= (int)(len - n))
		return err_set(e, -ENAMETOOLONG, "directory %s: path too long", buf);
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return err_set(e, -errno, "directory %s: %s", buf, strerror(errno));
	return check_private(buf, e);
}

int cache_dir_private(char *buf, size_t len, const char *sub, struct err *e)
{
	if (cache_dir(buf, len))
		return err_set(e, -ENOENT, "no cache directory: set SMOLVM_CACHE_DIR (or HOME)");
	return make_private(buf, len, sub, e);
}

int data_dir_private(char *buf, size_t len, const char *sub, struct err *e)
{
	if (xdg_dir(buf, len, "SMOLVM_DATA_DIR", "XDG_DATA_HOME", ".local/share/smolvm"))
		return err_set(e, -ENOENT, "no data directory: set SMOLVM_DATA_DIR (or HOME)");
	return make_private(buf, len, sub, e);
}

int config_dir_private(char *buf, size_t len, const char *sub, struct err *e)
{
	if (xdg_dir(buf, len, "SMOLVM_CONFIG_DIR", "XDG_CONFIG_HOME", ".config/smolvm"))
		return err_set(e, -ENOENT, "no configuration directory: set SMOLVM_CONFIG_DIR (or HOME)");
	return make_private(buf, len, sub, e);
}

int cache_file_open(const char *path, uint64_t size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 022) && (uint64_t)st.st_size == size)
		return fd;
	close(fd);
	return -ENOENT;
}

int tmp_finish(int fd, char *tmp, const char *path, int rc, int durable)
{
	if (!rc && durable && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

int tmp_beside(const char *path, char **tmp)
{
	int fd;

	if (asprintf(tmp, "%s.tmp-XXXXXX", path) < 0) {
		*tmp = NULL;
		return -ENOMEM;
	}
	/* mkostemp: O_EXCL, 0600, a name nobody could have planted a link at */
	fd = mkostemp(*tmp, O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		free(*tmp);
		*tmp = NULL;
	}
	return fd;
}
