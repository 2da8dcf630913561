/* The cache key of a root filesystem: every input that changes its bytes,
 * the contents of host files included, hashed with XXH3-128 (a cache key,
 * not a signature: a collision would only reuse an image). */
#include "rootfs/rootfs.h"
#include "rootfs/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Bump when a change to the builder changes the images it makes. */
#define ROOTFS_BUILDER_VERSION "smolvm-rootfs 1"

static void feed(XXH3_state_t *h, const void *p, size_t n)
{
	XXH3_128bits_update(h, p, n);
}

/* Length-prefixed, so that ("ab","c") and ("a","bc") differ. */
static void feed_str(XXH3_state_t *h, const char *s)
{
	uint64_t n = s ? strlen(s) + 1 : 0;

	feed(h, &n, sizeof(n));
	if (s)
		feed(h, s, n);
}

static void feed_u64(XXH3_state_t *h, uint64_t v)
{
	feed(h, &v, sizeof(v));
}

static int feed_file(XXH3_state_t *h, int dirfd, const char *name, const char *shown,
		     struct err *e)
{
	char buf[1 << 16];
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return err_set(e, -errno, "%s: %s", shown, strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		feed(h, buf, (size_t)n);
	close(fd);
	return n < 0 ? err_set(e, -errno, "%s: %s", shown, strerror(errno)) : 0;
}

/* A file or a tree: names, types, modes, owners, link targets and the
 * bytes of every regular file, in name order. */
static int feed_path(XXH3_state_t *h, int dirfd, const char *name, const char *shown, int depth,
		     struct err *e)
{
	struct stat st;
	int rc = tree_lstat(dirfd, name, shown, depth, &st, e);

	if (rc)
		return rc;
	feed_str(h, name);
	feed_u64(h, st.st_mode);
	feed_u64(h, ((uint64_t)st.st_uid << 32) | st.st_gid);
	if (S_ISREG(st.st_mode)) {
		feed_u64(h, (uint64_t)st.st_size);
		return feed_file(h, dirfd, name, shown, e);
	}
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		if ((rc = tree_readlink(dirfd, name, shown, target, sizeof(target), e)))
			return rc;
		feed_str(h, target);
		return 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		feed_u64(h, st.st_rdev);
		return 0;
	}
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent **list;
	int n;
	if (fd < 0)
		return err_set(e, -errno, "%s: %s", shown, strerror(errno));
	/* scandir takes a path; /proc/self/fd/N keeps us on the fd we hold */
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	n = scandir(self, &list, NULL, alphasort);
	if (n < 0) {
		rc = err_set(e, -errno, "%s: %s", shown, strerror(errno));
		close(fd);
		return rc;
	}
	for (int i = 0; i < n; i++) {
		const char *d = list[i]->d_name;
		if (!rc && strcmp(d, ".") && strcmp(d, "..")) {
			char sub[4096];
			snprintf(sub, sizeof(sub), "%s/%s", shown, d);
			rc = feed_path(h, fd, d, sub, depth + 1, e);
		}
		free(list[i]);
	}
	free(list);
	close(fd);
	feed_str(h, "end of directory");
	return rc;
}

static int feed_host(XXH3_state_t *h, const char *path, const char *what, struct err *e)
{
	int rc = feed_path(h, AT_FDCWD, path, path, 0, e);

	return rc ? err_wrap(e, rc, "%s", what) : 0;
}

int rootfs_id(const struct rootfs_spec *r, char id[33], struct err *e)
{
	XXH3_state_t *h = XXH3_createState();
	int rc = 0;

	if (!h)
		return err_set(e, -ENOMEM, "out of memory");
	XXH3_128bits_reset(h);
	feed_str(h, ROOTFS_BUILDER_VERSION);
	feed_u64(h, r->kind);
	feed_u64(h, r->size);
	feed_str(h, r->mirror);
	feed_u64(h, r->npackages);
	for (size_t i = 0; i < r->npackages; i++)
		feed_str(h, r->packages[i]);
	switch (r->kind) {
	case ROOTFS_DEBIAN:
		feed_str(h, r->source);
		break;
	case ROOTFS_OCI: {
		/* "layout:tag": the layout directory's contents, and the tag */
		char *path = strdup(r->source), *colon = path ? strrchr(path, ':') : NULL;
		if (!path) {
			rc = err_set(e, -ENOMEM, "out of memory");
			break;
		}
		if (colon && !strchr(colon, '/'))
			*colon = 0;
		feed_str(h, r->source);
		rc = feed_host(h, path, "rootfs.oci", e);
		free(path);
		break;
	}
	default:
		feed_str(h, r->source);
		rc = feed_host(h, r->source, "rootfs source", e);
		break;
	}
	feed_u64(h, r->ncopy);
	for (size_t i = 0; !rc && i < r->ncopy; i++) {
		feed_str(h, r->copy[i].to);
		rc = feed_host(h, r->copy[i].from, "rootfs.copy", e);
	}
	feed_u64(h, r->nrun);
	for (size_t i = 0; i < r->nrun; i++)
		feed_str(h, r->run[i]);
	if (!rc) {
		XXH128_hash_t d = XXH3_128bits_digest(h);
		snprintf(id, 33, "%016llx%016llx", (unsigned long long)d.high64,
			 (unsigned long long)d.low64);
	}
	XXH3_freeState(h);
	return rc;
}
