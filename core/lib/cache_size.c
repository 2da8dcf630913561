#include "lib/cache_size.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/dirs.h"
#include "lib/size.h"

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static int add(struct cache_entry **v, size_t *n, size_t *cap, const char *dir,
	       const char *name, const char *kind, uint64_t *total, struct err *e)
{
	struct stat st;
	char *path;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return err_set(e, -ENOMEM, "out of memory");
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(path); /* gone meanwhile, or not ours to count */
		return 0;
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct cache_entry *p = realloc(*v, c * sizeof(*p));
		if (!p) {
			free(path);
			return err_set(e, -ENOMEM, "out of memory");
		}
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = (struct cache_entry){ path, kind, (uint64_t)st.st_blocks * 512,
					     st.st_atim };
	*total += (uint64_t)st.st_blocks * 512;
	return 0;
}

/* The entries of one directory whose names end in `suffix`. */
static int scan(const char *dir, const char *prefix, const char *suffix, const char *kind,
		struct cache_entry **v, size_t *n, size_t *cap, uint64_t *total, struct err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : err_set(e, -errno, "%s: %s", dir, strerror(errno));
	while (!rc && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)) && ends_with(de->d_name, suffix) &&
		    de->d_name[0] != '.' && (*suffix || strlen(de->d_name) == 64))
			rc = add(v, n, cap, dir, de->d_name, kind, total, e);
	closedir(d);
	return rc;
}

static int older(const void *a, const void *b)
{
	const struct timespec *x = &((const struct cache_entry *)a)->used;
	const struct timespec *y = &((const struct cache_entry *)b)->used;

	if (x->tv_sec != y->tv_sec)
		return x->tv_sec < y->tv_sec ? -1 : 1;
	return x->tv_nsec < y->tv_nsec ? -1 : x->tv_nsec > y->tv_nsec;
}

int cache_list(struct cache_entry **out, size_t *n, uint64_t *total, struct err *e)
{
	char dir[4096], sub[4200];
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	*total = 0;
	if (cache_dir(dir, sizeof(dir)))
		return 0;
	snprintf(sub, sizeof(sub), "%s/rootfs", dir);
	rc = scan(dir, "mem-", ".raw", "memory", out, n, &cap, total, e);
	if (!rc)
		rc = scan(dir, "disk-", ".raw", "disk", out, n, &cap, total, e);
	if (!rc)
		rc = scan(dir, "image-", ".raw", "image", out, n, &cap, total, e);
	/* links to the parents of child bundles saved here (lineage.h) */
	if (!rc)
		rc = scan(dir, "bundle-", ".smolmachine", "parent", out, n, &cap, total, e);
	if (!rc)
		rc = scan(sub, "", ".ext4", "rootfs", out, n, &cap, total, e);
	/* bundles pulled for run/exec, and the blobs pulls fetched
	 * (registry/registry.h): named by a 64-digit sha256 */
	snprintf(sub, sizeof(sub), "%s/pulled", dir);
	if (!rc)
		rc = scan(sub, "", ".smolmachine", "pulled", out, n, &cap, total, e);
	snprintf(sub, sizeof(sub), "%s/blobs/sha256", dir);
	if (!rc)
		rc = scan(sub, "", "", "blob", out, n, &cap, total, e);
	if (rc) {
		cache_list_free(*out, *n);
		*out = NULL;
		*n = 0;
		return rc;
	}
	qsort(*out, *n, sizeof(**out), older);
	return 0;
}

void cache_list_free(struct cache_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

int cache_max(uint64_t *max, struct err *e)
{
	const char *s = getenv("SMOLVM_CACHE_MAX");

	*max = CACHE_MAX_DEFAULT;
	if (!s || !*s)
		return 0;
	if (parse_size(s, max))
		return err_set(e, -EINVAL, "SMOLVM_CACHE_MAX=\"%s\" is not a size (MiB, or with "
			       "B, K, M or G)", s);
	return 0;
}

/* An image and what belongs to it (a root filesystem's log and lock). */
static void remove_entry(const char *path)
{
	char other[4200];
	size_t n = strlen(path);

	unlink(path);
	if (ends_with(path, ".ext4") && n - 5 < sizeof(other) - 8) {
		memcpy(other, path, n - 5);
		strcpy(other + n - 5, ".log");
		unlink(other);
		strcpy(other + n - 5, ".lock");
		unlink(other);
	}
}

int cache_trim(uint64_t max, const char *keep, unsigned *removed, uint64_t *freed,
	       struct err *e)
{
	struct cache_entry *v;
	uint64_t total;
	size_t n;
	int rc = cache_list(&v, &n, &total, e);

	*removed = 0;
	*freed = 0;
	if (rc)
		return rc;
	for (size_t i = 0; i < n && total > max; i++) {
		if (keep && !strcmp(v[i].path, keep))
			continue;
		remove_entry(v[i].path);
		total -= v[i].bytes;
		*freed += v[i].bytes;
		(*removed)++;
	}
	cache_list_free(v, n);
	return 0;
}

void cache_added(const char *path)
{
	struct err e = { "" };
	uint64_t max, freed;
	unsigned removed;

	if (cache_max(&max, &e) || cache_trim(max, path, &removed, &freed, &e)) {
		fprintf(stderr, "smolvm: cache: %s\n", e.msg);
		return;
	}
	if (removed)
		fprintf(stderr, "smolvm: cache: %u least recently used entr%s removed (%.1f MiB) "
			"to stay within %.1f GiB (SMOLVM_CACHE_MAX)\n", removed,
			removed == 1 ? "y" : "ies", freed / 1048576.0, max / 1073741824.0);
}

/* The access time only: a root filesystem's mtime is its identity to
 * the overlays made over it. */
static const struct timespec used_now[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_OMIT } };

void cache_touch(int fd)
{
	(void)futimens(fd, used_now);
}

void cache_touch_path(const char *path)
{
	(void)utimensat(AT_FDCWD, path, used_now, 0);
}
