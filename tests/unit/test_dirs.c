/* The private cache directory and its files (core/lib/dirs.c): what another
 * local user could plant or leave open is not trusted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/cache_size.h"
#include "lib/dirs.h"
#include "unit.h"

static char *dir;
static char cache[4096];

static void setup(void)
{
	dir = unit_tmpdir();
	snprintf(cache, sizeof(cache), "%s/c", dir);
	setenv("SMOLVM_CACHE_DIR", cache, 1);
}

static void teardown(void)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(dir);
}

static mode_t mode_of(const char *p)
{
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_mode & 07777;
}

START_TEST(test_made_private)
{
	char buf[4096];
	struct err e = { "" };

	ck_assert_msg(cache_dir_private(buf, sizeof(buf), "rootfs", &e) == 0, "%s", e.msg);
	ck_assert_str_eq(strrchr(buf, '/'), "/rootfs");
	ck_assert_uint_eq(mode_of(cache), 0700);
	ck_assert_uint_eq(mode_of(buf), 0700);
	/* one an older version left readable by all is narrowed */
	ck_assert_int_eq(chmod(cache, 0755), 0);
	ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), NULL, &e), 0);
	ck_assert_uint_eq(mode_of(cache), 0700);
}
END_TEST

START_TEST(test_refused)
{
	char buf[4096];
	struct err e = { "" };

	ck_assert_int_eq(mkdir(cache, 0700), 0);
	ck_assert_int_eq(chmod(cache, 0777), 0);
	ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), NULL, &e), -EPERM);
	ck_assert_str_contains(e.msg, "may be written by others (mode 0777)");
	ck_assert_str_contains(e.msg, "chmod 700");
	ck_assert_uint_eq(mode_of(cache), 0777); /* left as it was */
	ck_assert_int_eq(chmod(cache, 0700), 0);
	if (geteuid() == 0) {
		/* another user's directory (root can make one) */
		ck_assert_int_eq(chown(cache, 65534, 65534), 0);
		ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), NULL, &e), -EPERM);
		ck_assert_str_contains(e.msg, "belongs to uid 65534, not to you");
		ck_assert_str_contains(e.msg, "use one of your own");
	}
	/* a file where the directory should be */
	ck_assert_int_eq(rmdir(cache), 0);
	close(open(cache, O_CREAT | O_WRONLY, 0600));
	ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), NULL, &e), -ENOTDIR);
}
END_TEST

START_TEST(test_file_open)
{
	char buf[4096], f[4200], l[4200], *tmp;
	struct err e = { "" };
	int fd;

	ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), NULL, &e), 0);
	snprintf(f, sizeof(f), "%s/mem-x.raw", buf);
	fd = tmp_beside(f, &tmp);
	ck_assert_int_ge(fd, 0);
	ck_assert_uint_eq(mode_of(tmp), 0600);
	ck_assert_int_eq(ftruncate(fd, 8192), 0);
	ck_assert_int_eq(rename(tmp, f), 0);
	close(fd);
	free(tmp);
	fd = cache_file_open(f, 8192);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(cache_file_open(f, 4096), -ENOENT); /* another size */
	ck_assert_int_eq(chmod(f, 0666), 0);
	ck_assert_int_eq(cache_file_open(f, 8192), -ENOENT); /* others may write it */
	ck_assert_int_eq(chmod(f, 0600), 0);
	snprintf(l, sizeof(l), "%s/mem-y.raw", buf);
	ck_assert_int_eq(symlink(f, l), 0);
	ck_assert_int_eq(cache_file_open(l, 8192), -ELOOP); /* never through a link */
	/* a temporary name is fresh every time: none can be planted ahead */
	ck_assert_int_eq(tmp_beside("/nonexistent-dir/x", &tmp), -ENOENT);
	ck_assert_ptr_null(tmp);
}
END_TEST

/* A file of `kib` KiB of real blocks, last used `age` seconds ago. */
static void entry(const char *path, int kib, int age)
{
	char block[1024];
	struct timespec t[2];
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	memset(block, 0x5a, sizeof(block));
	for (int i = 0; i < kib; i++)
		ck_assert_int_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age;
	t[1] = t[0];
	ck_assert_int_eq(futimens(fd, t), 0);
	close(fd);
}

START_TEST(test_trim_lru)
{
	char buf[4096], a[4200], b[4200], r[4200], log[4200], c[4200];
	struct err e = { "" };
	struct cache_entry *v;
	uint64_t total, freed, max;
	unsigned removed;
	size_t n;

	ck_assert_int_eq(cache_dir_private(buf, sizeof(buf), "rootfs", &e), 0);
	snprintf(r, sizeof(r), "%s/0123.ext4", buf);
	snprintf(log, sizeof(log), "%s/0123.log", buf);
	entry(r, 64, 300);  /* the oldest */
	entry(log, 1, 300);
	*strrchr(buf, '/') = 0;
	snprintf(a, sizeof(a), "%s/mem-a-1.raw", buf);
	snprintf(b, sizeof(b), "%s/mem-b-1.raw", buf);
	snprintf(c, sizeof(c), "%s/notes.txt", buf);
	entry(a, 64, 200);
	entry(b, 64, 100);  /* the newest */
	entry(c, 64, 1000); /* not an entry: never counted, never removed */

	ck_assert_int_eq(cache_list(&v, &n, &total, &e), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(v[0].path, r);
	ck_assert_str_eq(v[0].kind, "rootfs");
	ck_assert_str_eq(v[2].path, b);
	ck_assert_uint_ge(total, 3 * 64 * 1024);
	cache_list_free(v, n);

	/* room for one: the oldest go first, but never the one just added */
	ck_assert_int_eq(cache_trim(100 * 1024, r, &removed, &freed, &e), 0);
	ck_assert_uint_eq(removed, 2);
	ck_assert_int_eq(access(r, F_OK), 0);
	ck_assert_int_eq(access(a, F_OK), -1);
	ck_assert_int_eq(access(b, F_OK), -1);
	ck_assert_int_eq(access(c, F_OK), 0);
	/* a root filesystem goes with its log */
	ck_assert_int_eq(cache_trim(0, NULL, &removed, &freed, &e), 0);
	ck_assert_uint_eq(removed, 1);
	ck_assert_int_eq(access(r, F_OK), -1);
	ck_assert_int_eq(access(log, F_OK), -1);

	setenv("SMOLVM_CACHE_MAX", "2G", 1);
	ck_assert_int_eq(cache_max(&max, &e), 0);
	ck_assert_uint_eq(max, 2ull << 30);
	setenv("SMOLVM_CACHE_MAX", "lots", 1);
	ck_assert_int_eq(cache_max(&max, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "SMOLVM_CACHE_MAX=\"lots\" is not a size");
	unsetenv("SMOLVM_CACHE_MAX");
}
END_TEST

Suite *dirs_suite(void)
{
	Suite *s = suite_create("dirs");
	TCase *t = tcase_create("private cache");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_made_private);
	tcase_add_test(t, test_refused);
	tcase_add_test(t, test_file_open);
	tcase_add_test(t, test_trim_lru);
	suite_add_tcase(s, t);
	return s;
}
