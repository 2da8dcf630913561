/* copy = { ... }: host files into the tree being built. Every path inside
 * is resolved with openat2(RESOLVE_IN_ROOT), as the guest would resolve
 * it, so a symbolic link in an image (/etc -> /host/etc, ../../x) never
 * leads a copy out of the tree; the last component is never followed. */
#include "rootfs/rootfs.h"
#include "rootfs/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int rootfs_open_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = { .flags = (uint64_t)flags | O_CLOEXEC,
				.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };

	return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* The directory `path` (relative) inside the root, made (0755) with its
 * parents if missing; an fd or -errno with the message. */
static int dir_in_root(int rootfd, const char *path, struct err *e)
{
	char buf[4096];
	int fd = rootfs_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY);

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return err_set(e, -ENAMETOOLONG, "%s: path too long", path);
	for (char *comp = buf, *end; fd >= 0 && *comp; comp = end) {
		end = comp + strcspn(comp, "/");
		char c = *end;
		*end = 0;
		int next = strcmp(comp, ".") ? rootfs_open_in_root(rootfd, buf, O_PATH | O_DIRECTORY) : dup(fd);
		/* missing: made in its parent as resolved so far */
		if (next < 0 && errno == ENOENT && (!mkdirat(fd, comp, 0755) || errno == EEXIST))
			next = rootfs_open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
		if (next < 0) {
			int rc = -errno;
			close(fd);
			return err_set(e, rc, "/%s: %s", buf, strerror(-rc));
		}
		close(fd);
		fd = next;
		*end = c;
		while (*end == '/')
			end++;
	}
	return fd >= 0 ? fd : err_set(e, -errno, "the root directory: %s", strerror(errno));
}

static int copy_bytes(int in, int out)
{
	for (;;) {
		ssize_t n = sendfile(out, in, NULL, 1 << 20);
		if (n == 0)
			return 0;
		if (n < 0)
			return -errno;
	}
}

static void own(int fd, const struct stat *st)
{
	/* like a Dockerfile COPY: root's, with the source's permissions */
	if (geteuid() == 0 && fchown(fd, 0, 0))
		return;
	fchmod(fd, st->st_mode & 07777);
}

/* Entry `sname` of host directory fd `sdir` as `name` in dir fd `ddir`. */
static int copy_entry(int sdir, const char *sname, int ddir, const char *name,
		      const char *shown, int depth, struct err *e)
{
	struct stat st;
	int rc = tree_lstat(sdir, sname, shown, depth, &st, e);

	if (rc)
		return rc;
	/* what is there is replaced, never followed (a directory merges) */
	struct stat old;
	if (!fstatat(ddir, name, &old, AT_SYMLINK_NOFOLLOW) &&
	    !(S_ISDIR(old.st_mode) && S_ISDIR(st.st_mode)) &&
	    unlinkat(ddir, name, S_ISDIR(old.st_mode) ? AT_REMOVEDIR : 0))
		return err_set(e, -errno, "%s: cannot replace what is there: %s", shown,
			       strerror(errno));
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		if ((rc = tree_readlink(sdir, sname, shown, target, sizeof(target), e)))
			return rc;
		if (symlinkat(target, ddir, name))
			return err_set(e, -errno, "%s: %s", shown, strerror(errno));
		if (geteuid() == 0)
			(void)fchownat(ddir, name, 0, 0, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	if (S_ISREG(st.st_mode)) {
		int in = openat(sdir, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		int out = in < 0 ? -1
				 : openat(ddir, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
					  0600);
		if (in < 0 || out < 0)
			rc = err_set(e, -errno, "%s: %s", shown, strerror(errno));
		else if ((rc = copy_bytes(in, out)))
			err_set(e, rc, "%s: %s", shown, strerror(-rc));
		else
			own(out, &st);
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
		return rc;
	}
	if (!S_ISDIR(st.st_mode))
		return err_set(e, -EINVAL, "%s: only files, directories and symbolic links are copied",
			       shown);
	if (mkdirat(ddir, name, 0700) && errno != EEXIST)
		return err_set(e, -errno, "%s: %s", shown, strerror(errno));
	int s = openat(sdir, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir = s >= 0 && d >= 0 ? fdopendir(s) : NULL;
	if (!dir) {
		rc = err_set(e, -errno, "%s: %s", shown, strerror(errno));
		if (s >= 0)
			close(s);
		if (d >= 0)
			close(d);
		return rc;
	}
	struct dirent *de;
	while (!rc && (de = readdir(dir))) {
		char sub[4096];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", shown, de->d_name);
		rc = copy_entry(dirfd(dir), de->d_name, d, de->d_name, sub, depth + 1, e);
	}
	if (!rc)
		own(d, &st);
	closedir(dir);
	close(d);
	return rc;
}

int rootfs_copy_in(int rootfd, const char *from, const char *to, struct err *e)
{
	char parent[4096], *slash;
	const char *base;
	int pfd, rc;

	if (to[0] != '/' || snprintf(parent, sizeof(parent), "%s", to) >= (int)sizeof(parent))
		return err_set(e, -EINVAL, "%s: expected an absolute path in the root filesystem", to);
	/* "/etc/app/" means into that directory, under the source's name */
	while (strlen(parent) > 1 && parent[strlen(parent) - 1] == '/')
		parent[strlen(parent) - 1] = 0;
	if (!strcmp(parent, "/") || to[strlen(to) - 1] == '/') {
		const char *b = strrchr(from, '/');
		size_t l = strlen(parent);
		snprintf(parent + l, sizeof(parent) - l, "%s%s", l > 1 ? "/" : "", b ? b + 1 : from);
	}
	slash = strrchr(parent, '/');
	*slash = 0;
	base = slash + 1;
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return err_set(e, -EINVAL, "%s: names no file", to);
	pfd = dir_in_root(rootfd, *parent ? parent + 1 : ".", e);
	if (pfd < 0)
		return pfd;
	rc = copy_entry(AT_FDCWD, from, pfd, base, from, 0, e);
	close(pfd);
	return rc;
}
