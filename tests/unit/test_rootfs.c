/* core/rootfs: copying host files into a tree never leaves it (links in
 * the tree resolve as in the guest), and the cache key follows every
 * input. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rootfs/rootfs.h"
#include "unit.h"

static char dir[64];

static void put(const char *rel, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int exists(const char *rel)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return lstat(p, &st) == 0;
}

static void setup(void)
{
	char p[256];

	snprintf(dir, sizeof(dir), "/tmp/smolvm-rootfs-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/root", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/outside", dir);
	mkdir(p, 0755);
	put("src.txt", "payload\n");
	/* links in the tree that point out of it, as a hostile image has */
	snprintf(p, sizeof(p), "%s/root/abs", dir);
	ck_assert_int_eq(symlink(dir, p), 0); /* -> the host's directory */
	snprintf(p, sizeof(p), "%s/root/up", dir);
	ck_assert_int_eq(symlink("../../../../../..", p), 0);
	snprintf(p, sizeof(p), "%s/root/file-link", dir);
	char target[128];
	snprintf(target, sizeof(target), "%s/outside/victim", dir);
	ck_assert_int_eq(symlink(target, p), 0);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static int copy(const char *to)
{
	char root[128], from[128];
	struct err e;
	int fd, rc;

	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(from, sizeof(from), "%s/src.txt", dir);
	fd = open(root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	rc = rootfs_copy_in(fd, from, to, &e);
	close(fd);
	return rc;
}

START_TEST(test_copy_plain)
{
	ck_assert_int_eq(copy("/etc/app/conf.txt"), 0);
	ck_assert(exists("root/etc/app/conf.txt"));
	ck_assert_int_eq(copy("/etc/app/"), 0);
	ck_assert(exists("root/etc/app/src.txt"));
}
END_TEST

START_TEST(test_copy_through_links_stays_inside)
{
	char rel[256];

	/* /abs/x: "abs" points at the host's dir, read as the tree's own:
	 * while the tree has no such directory, the copy fails */
	ck_assert_int_eq(copy("/abs/outside/x"), -ENOENT);
	ck_assert(!exists("outside/x"));
	snprintf(rel, sizeof(rel), "mkdir -p %s/root%s/outside", dir, dir);
	ck_assert_int_eq(system(rel), 0);
	ck_assert_int_eq(copy("/abs/outside/x"), 0);
	ck_assert(!exists("outside/x"));
	snprintf(rel, sizeof(rel), "root%s/outside/x", dir);
	ck_assert_msg(exists(rel), "the copy should land at %s", rel);
	/* /up/x: ".." above the root stays at the root */
	ck_assert_int_eq(copy("/up/etc/y"), 0);
	ck_assert(exists("root/etc/y"));
	/* a link as the last component is replaced, never written through */
	ck_assert_int_eq(copy("/file-link"), 0);
	ck_assert(!exists("outside/victim"));
	struct stat st;
	char p[128];
	snprintf(p, sizeof(p), "%s/root/file-link", dir);
	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
}
END_TEST

START_TEST(test_copy_refuses)
{
	ck_assert_int_eq(copy("relative"), -EINVAL);
	ck_assert_int_eq(copy("/x/.."), -EINVAL);
}
END_TEST

START_TEST(test_id_follows_inputs)
{
	char src[128], id1[33], id2[33], id3[33];
	char *run[] = { "echo a" };
	struct rootfs_copy c = { src, "/seed" };
	struct rootfs_spec r = { .kind = ROOTFS_DEBIAN, .source = "bookworm", .copy = &c,
				 .ncopy = 1, .run = run, .nrun = 1 };
	struct err e;

	snprintf(src, sizeof(src), "%s/src.txt", dir);
	ck_assert_int_eq(rootfs_id(&r, id1, &e), 0);
	ck_assert_int_eq(rootfs_id(&r, id2, &e), 0);
	ck_assert_str_eq(id1, id2);
	put("src.txt", "payload changed\n"); /* the bytes of a copied file */
	ck_assert_int_eq(rootfs_id(&r, id2, &e), 0);
	ck_assert_str_ne(id1, id2);
	run[0] = "echo b";
	ck_assert_int_eq(rootfs_id(&r, id3, &e), 0);
	ck_assert_str_ne(id2, id3);
	c.from = "/nonexistent/smolvm";
	ck_assert_int_eq(rootfs_id(&r, id3, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "rootfs.copy");
}
END_TEST

/* A bundle names its image by id: only 32 hex digits, always in the cache. */
START_TEST(test_image_path_from_id)
{
	char out[512];
	struct err e;

	setenv("SMOLVM_CACHE_DIR", "/var/cache/x", 1);
	ck_assert_int_eq(rootfs_image_path("2c199eaff446e6d57d36b46939b74f70", out, sizeof(out), &e), 0);
	ck_assert_str_eq(out, "/var/cache/x/rootfs/2c199eaff446e6d57d36b46939b74f70.ext4");
	ck_assert_int_eq(rootfs_image_path("/etc/shadow", out, sizeof(out), &e), -EINVAL);
	ck_assert_int_eq(rootfs_image_path("../../../../etc/passwd0000000000", out, sizeof(out), &e), -EINVAL);
	ck_assert_int_eq(rootfs_image_path("2C199EAFF446E6D57D36B46939B74F70", out, sizeof(out), &e), -EINVAL);
	ck_assert_int_eq(rootfs_image_path("2c199eaff446e6d57d36b46939b74f7", out, sizeof(out), &e), -EINVAL);
	unsetenv("SMOLVM_CACHE_DIR");
}
END_TEST

Suite *rootfs_suite(void)
{
	Suite *s = suite_create("rootfs");
	TCase *tc = tcase_create("copy");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_copy_plain);
	tcase_add_test(tc, test_copy_through_links_stays_inside);
	tcase_add_test(tc, test_copy_refuses);
	tcase_add_test(tc, test_id_follows_inputs);
	tcase_add_test(tc, test_image_path_from_id);
	suite_add_tcase(s, tc);
	return s;
}
