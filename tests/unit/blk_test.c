/* plugins/virtio-blk: the copy-on-write overlay (cow.c) and request
 * execution (disk.c), on real files in a temporary directory.
 *
 * Both sources are compiled into this file, so the runner needs nothing
 * else linked (plugins/virtio-blk/blk.c, the plugin descriptor, is not
 * used: it would clash with the uart plugin's). Build it on its own with
 *   gcc -std=c11 -D_GNU_SOURCE -Isdk/include tests/unit/blk_test.c main.c \
 *       $(pkg-config --cflags --libs check)
 * where main.c runs blk_suite(). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/virtio-blk/cow.c" /* the tests reach its internals */
#include "../../plugins/virtio-blk/disk.c"

Suite *blk_suite(void);

#define CS 4096u                         /* cluster size of the test overlays */
#define NCL 10u                          /* full clusters in the base ... */
#define BASE_SIZE (NCL * CS + 1024u)     /* ... plus a short last one */

static char dir[64];
static char base_path[128], cow_path[128], other_path[128];
static uint8_t base_data[BASE_SIZE];
static uint64_t base_sum;
static struct stat base_st;
static char err[1024];

/* cow.c and disk.c report through the host's set_error: here into `err`. */
static void t_set_error(smolvm_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	(void)ctx;
	va_start(ap, fmt);
	vsnprintf(err, sizeof(err), fmt, ap);
	va_end(ap);
}

static const struct smolvm_host_api host = {
	.struct_size = sizeof(host),
	.set_error = t_set_error,
};

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

static uint64_t file_sum(const char *path, size_t *len)
{
	uint8_t buf[8192];
	uint64_t h = FNV_OFFSET;
	size_t total = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		h = fnv1a(h, buf, (size_t)n);
		total += (size_t)n;
	}
	close(fd);
	if (len)
		*len = total;
	return h;
}

static void setup(void)
{
	uint32_t x = 12345;

	strcpy(dir, "/tmp/blk-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(base_path, sizeof(base_path), "%s/base.img", dir);
	snprintf(cow_path, sizeof(cow_path), "%s/disk.cow", dir);
	snprintf(other_path, sizeof(other_path), "%s/other.img", dir);
	for (size_t i = 0; i < BASE_SIZE; i++) {
		x = x * 1103515245u + 12345u;
		base_data[i] = (uint8_t)(x >> 16);
	}
	write_file(base_path, base_data, BASE_SIZE);
	base_sum = file_sum(base_path, NULL);
	ck_assert_int_eq(stat(base_path, &base_st), 0);
	err[0] = 0;
}

/* Every test ends by checking that the base was never written. */
static void teardown(void)
{
	char cmd[128];
	struct stat st;
	size_t len;

	ck_assert_uint_eq(file_sum(base_path, &len), base_sum);
	ck_assert_uint_eq(len, BASE_SIZE);
	ck_assert_int_eq(stat(base_path, &st), 0);
	ck_assert_int_eq(st.st_mtim.tv_sec, base_st.st_mtim.tv_sec);
	ck_assert_int_eq(st.st_mtim.tv_nsec, base_st.st_mtim.tv_nsec);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct cow *open_cow(uint32_t cluster)
{
	struct cow_params p = { .cluster_size = cluster };
	struct cow *c = NULL;
	int rc = cow_open(&host, NULL, base_path, cow_path, &p, &c);

	ck_assert_msg(rc == 0, "cow_open: %d %s", rc, err);
	return c;
}

static void check_read_all(struct cow *c, const uint8_t *want)
{
	static uint8_t got[BASE_SIZE];

	memset(got, 0xee, sizeof(got));
	ck_assert_int_eq(cow_read(c, got, BASE_SIZE, 0), 0);
	for (size_t i = 0; i < BASE_SIZE; i++)
		ck_assert_msg(got[i] == want[i], "byte %zu: got %u, want %u", i, got[i], want[i]);
}

static void fill(uint8_t *buf, size_t len, uint8_t v)
{
	memset(buf, v, len);
}

/* The map byte `i` as it is on disk (not in memory). */
static int disk_map_byte(unsigned i)
{
	uint8_t b = 0;
	int fd = open(cow_path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, COW_HEADER_SIZE + i), 1);
	close(fd);
	return b;
}

static void poke(const char *path, off_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* ---- allocation map ------------------------------------------------------ */

START_TEST(fresh_overlay_reads_base)
{
	struct cow *c = open_cow(CS);
	struct stat st;

	ck_assert_uint_eq(cow_size(c), BASE_SIZE);
	ck_assert_uint_eq(cow_cluster_size(c), CS);
	ck_assert_uint_eq(cow_clusters(c), NCL + 1);
	ck_assert_uint_eq(cow_allocated_count(c), 0);
	ck_assert_ptr_null(cow_warning(c));
	check_read_all(c, base_data);
	ck_assert_int_eq(cow_close(c), 0);
	/* Header and map only: no data yet. */
	ck_assert_int_eq(stat(cow_path, &st), 0);
	ck_assert_int_eq(st.st_size, COW_HEADER_SIZE + 2);
}
END_TEST

START_TEST(map_tracks_written_clusters)
{
	struct cow *c = open_cow(CS);
	uint8_t buf[512];

	fill(buf, sizeof(buf), 0xaa);
	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), 3 * CS + 512), 0);
	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), NCL * CS), 0); /* the short one */
	for (uint64_t i = 0; i < NCL + 1; i++)
		ck_assert_int_eq(cow_allocated(c, i), (i == 3 || i == NCL));
	ck_assert_int_eq(cow_allocated(c, NCL + 1), 0); /* past the end */
	ck_assert_uint_eq(cow_allocated_count(c), 2);
	/* Reads of unwritten clusters still come from the base. */
	ck_assert_int_eq(cow_read(c, buf, sizeof(buf), 2 * CS), 0);
	ck_assert_mem_eq(buf, base_data + 2 * CS, sizeof(buf));
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

START_TEST(default_cluster_size)
{
	struct cow *c = open_cow(0);

	ck_assert_uint_eq(cow_cluster_size(c), COW_DEFAULT_CLUSTER);
	ck_assert_uint_eq(cow_clusters(c), 1);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

/* ---- copy-up and spanning writes ------------------------------------------ */

START_TEST(partial_cluster_copy_up)
{
	static uint8_t want[BASE_SIZE];
	struct cow *c = open_cow(CS);
	uint8_t buf[300];

	memcpy(want, base_data, BASE_SIZE);
	fill(buf, sizeof(buf), 0x5a);
	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), 2 * CS + 100), 0);
	memcpy(want + 2 * CS + 100, buf, sizeof(buf));
	check_read_all(c, want);
	/* The overlay's copy of the cluster holds the base's other bytes. */
	ck_assert_int_eq(cow_close(c), 0);
	c = open_cow(CS);
	check_read_all(c, want);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

START_TEST(write_spanning_clusters)
{
	static uint8_t want[BASE_SIZE], buf[3 * CS];
	struct cow *c = open_cow(CS);
	uint64_t off = 4 * CS + 4000, len = 2 * CS + 50; /* clusters 4, 5, 6 */

	memcpy(want, base_data, BASE_SIZE);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7);
	ck_assert_int_eq(cow_write(c, buf, len, off), 0);
	memcpy(want + off, buf, len);
	for (uint64_t i = 0; i < NCL + 1; i++)
		ck_assert_int_eq(cow_allocated(c, i), (i >= 4 && i <= 6));
	check_read_all(c, want);
	/* A read across allocated and unallocated clusters. */
	ck_assert_int_eq(cow_read(c, buf, 3 * CS, 3 * CS + 10), 0);
	ck_assert_mem_eq(buf, want + 3 * CS + 10, 3 * CS);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

START_TEST(whole_cluster_and_tail)
{
	static uint8_t want[BASE_SIZE], buf[CS];
	struct cow *c = open_cow(CS);

	memcpy(want, base_data, BASE_SIZE);
	fill(buf, CS, 0x11);
	ck_assert_int_eq(cow_write(c, buf, CS, 7 * CS), 0);
	memcpy(want + 7 * CS, buf, CS);
	/* The last, short cluster up to the very end. */
	fill(buf, 1024, 0x22);
	ck_assert_int_eq(cow_write(c, buf, 1024, NCL * CS), 0);
	memcpy(want + NCL * CS, buf, 1024);
	check_read_all(c, want);
	/* Out of range, even by one byte. */
	ck_assert_int_eq(cow_write(c, buf, 2, BASE_SIZE - 1), -EINVAL);
	ck_assert_int_eq(cow_read(c, buf, 1, BASE_SIZE), -EINVAL);
	ck_assert_int_eq(cow_read(c, buf, 0, BASE_SIZE), 0);
	ck_assert_int_eq(cow_read(c, buf, 16, UINT64_MAX - 8), -EINVAL);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

/* ---- flush and reopen ----------------------------------------------------- */

START_TEST(map_durable_only_after_flush)
{
	struct cow *c = open_cow(CS);
	uint8_t buf[512];

	fill(buf, sizeof(buf), 0x33);
	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), 9 * CS), 0);
	ck_assert_int_eq(cow_allocated(c, 9), 1);
	/* The data is written, the map on disk does not point at it yet. */
	ck_assert_int_eq(disk_map_byte(1), 0);
	ck_assert_int_eq(cow_flush(c), 0);
	ck_assert_int_eq(disk_map_byte(1), 1 << 1);
	ck_assert_int_eq(cow_flush(c), 0); /* nothing dirty: still fine */
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

START_TEST(reopen_keeps_data)
{
	static uint8_t want[BASE_SIZE];
	struct cow *c = open_cow(CS);
	uint8_t buf[1000];

	memcpy(want, base_data, BASE_SIZE);
	fill(buf, sizeof(buf), 0x44);
	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), 1 * CS + 3500), 0); /* 1 and 2 */
	memcpy(want + 1 * CS + 3500, buf, sizeof(buf));
	ck_assert_int_eq(cow_close(c), 0); /* close flushes */

	/* An existing overlay keeps its own cluster size. */
	c = open_cow(8192);
	ck_assert_uint_eq(cow_cluster_size(c), CS);
	ck_assert_uint_eq(cow_allocated_count(c), 2);
	ck_assert_int_eq(cow_allocated(c, 1), 1);
	ck_assert_int_eq(cow_allocated(c, 2), 1);
	check_read_all(c, want);
	ck_assert_int_eq(cow_close(c), 0);

	/* Readonly: same view, writes refused. */
	struct cow_params p = { .readonly = 1 };
	ck_assert_int_eq(cow_open(&host, NULL, base_path, cow_path, &p, &c), 0);
	check_read_all(c, want);
	ck_assert_int_eq(cow_write(c, buf, 512, 0), -EROFS);
	ck_assert_int_eq(cow_close(c), 0);

	/* Deleting the overlay resets the disk. */
	ck_assert_int_eq(unlink(cow_path), 0);
	c = open_cow(CS);
	check_read_all(c, base_data);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

/* Random writes against a model, closing and reopening along the way. */
START_TEST(random_writes_match_model)
{
	static uint8_t want[BASE_SIZE], buf[3 * CS];
	uint8_t touched[NCL + 1] = { 0 };
	struct cow *c = open_cow(CS);
	uint32_t x = 99;

	memcpy(want, base_data, BASE_SIZE);
	for (int round = 0; round < 300; round++) {
		x = x * 1664525u + 1013904223u;
		uint64_t off = (x >> 8) % BASE_SIZE;
		x = x * 1664525u + 1013904223u;
		uint64_t len = (x >> 8) % sizeof(buf);
		if (len > BASE_SIZE - off)
			len = BASE_SIZE - off;
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(round + i);
		ck_assert_int_eq(cow_write(c, buf, len, off), 0);
		memcpy(want + off, buf, len);
		for (uint64_t i = off / CS; len && i <= (off + len - 1) / CS; i++)
			touched[i] = 1;
		if (round % 50 == 49) {
			ck_assert_int_eq(cow_close(c), 0);
			c = open_cow(CS);
		} else if (round % 10 == 9) {
			ck_assert_int_eq(cow_flush(c), 0);
		}
	}
	check_read_all(c, want);
	for (uint64_t i = 0; i < NCL + 1; i++)
		ck_assert_int_eq(cow_allocated(c, i), touched[i]);
	ck_assert_int_eq(cow_close(c), 0);
}
END_TEST

/* ---- refusals -------------------------------------------------------------- */

static int reopen_fails(const char *needle)
{
	struct cow *c = (struct cow *)1;
	int rc = cow_open(&host, NULL, base_path, cow_path, NULL, &c);

	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err, needle), "expected \"%s\" in \"%s\"", needle, err);
	return rc;
}

/* A valid overlay with one written cluster, closed. */
static void make_overlay(void)
{
	struct cow *c = open_cow(CS);
	uint8_t buf[512] = { 1 };

	ck_assert_int_eq(cow_write(c, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(cow_close(c), 0);
}

START_TEST(refuse_bad_magic)
{
	make_overlay();
	poke(cow_path, 0, "NOTACOW!", 8);
	reopen_fails("not a smolvm overlay (bad magic)");
}
END_TEST

START_TEST(refuse_version)
{
	uint32_t v = htole32(2);

	make_overlay();
	poke(cow_path, H_VERSION, &v, 4);
	reopen_fails("format version 2, this build reads 1");
}
END_TEST

START_TEST(refuse_checksum)
{
	uint8_t b = 0x7f;

	make_overlay();
	poke(cow_path, H_VIRTUAL_SIZE + 3, &b, 1);
	reopen_fails("header checksum mismatch");
}
END_TEST

/* A header that is self-consistent (checksum fixed up) but wrong. */
START_TEST(refuse_bad_fields)
{
	uint8_t h[H_END];
	int fd;

	make_overlay();
	fd = open(cow_path, O_RDWR);
	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	put32(h, H_CLUSTER_SIZE, 3000);
	put64(h, H_CHECKSUM, fnv1a(FNV_OFFSET, h, H_CHECKSUM));
	ck_assert_int_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	reopen_fails("invalid header");

	ck_assert_int_eq(unlink(cow_path), 0);
	make_overlay();
	fd = open(cow_path, O_RDWR);
	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	put64(h, H_MAP_SIZE, 1);
	put64(h, H_CHECKSUM, fnv1a(FNV_OFFSET, h, H_CHECKSUM));
	ck_assert_int_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	reopen_fails("does not fit 11 clusters");
}
END_TEST

START_TEST(refuse_truncated)
{
	make_overlay();
	ck_assert_int_eq(truncate(cow_path, COW_HEADER_SIZE + 1), 0);
	reopen_fails("truncated: its map ends at byte 4098, the file has 4097");
	ck_assert_int_eq(truncate(cow_path, 100), 0);
	reopen_fails("100 bytes, too short");
}
END_TEST

START_TEST(refuse_map_past_end)
{
	uint8_t b = 0x80; /* cluster 15 of 11 */

	make_overlay();
	poke(cow_path, COW_HEADER_SIZE + 1, &b, 1);
	reopen_fails("map marks clusters past the end");
}
END_TEST

START_TEST(refuse_other_base_size)
{
	static uint8_t big[BASE_SIZE + 512];

	make_overlay();
	memcpy(big, base_data, BASE_SIZE);
	write_file(other_path, big, sizeof(big));
	struct cow *c;
	ck_assert_int_lt(cow_open(&host, NULL, other_path, cow_path, NULL, &c), 0);
	ck_assert_msg(strstr(err, "made for a base of 41984 bytes") &&
		      strstr(err, "other.img has 42496 bytes"), "%s", err);
}
END_TEST

START_TEST(refuse_other_base_content)
{
	static uint8_t other[BASE_SIZE];
	struct cow *c;

	make_overlay();
	memcpy(other, base_data, BASE_SIZE);
	other[1024] ^= 1; /* e.g. another file system's superblock */
	write_file(other_path, other, sizeof(other));
	ck_assert_int_lt(cow_open(&host, NULL, other_path, cow_path, NULL, &c), 0);
	ck_assert_msg(strstr(err, "made for a different base"), "%s", err);
}
END_TEST

START_TEST(warn_base_touched)
{
	struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };
	struct cow *c;

	make_overlay();
	/* Same content, other mtime: opens, with a warning. */
	ck_assert_int_eq(utimensat(AT_FDCWD, base_path, ts, 0), 0);
	c = open_cow(CS);
	ck_assert_ptr_nonnull(cow_warning(c));
	ck_assert_msg(strstr(cow_warning(c), "was modified after overlay"), "%s", cow_warning(c));
	ck_assert_int_eq(cow_close(c), 0);
	ck_assert_int_eq(stat(base_path, &base_st), 0); /* for teardown */
}
END_TEST

START_TEST(refuse_in_use_and_misc)
{
	struct cow *a = open_cow(CS), *b;
	struct cow_params p = { .readonly = 1 };
	static uint8_t odd[1000];

	ck_assert_int_lt(cow_open(&host, NULL, base_path, cow_path, NULL, &b), 0);
	ck_assert_msg(strstr(err, "in use by another process"), "%s", err);
	ck_assert_int_eq(cow_close(a), 0);

	ck_assert_int_lt(cow_open(&host, NULL, base_path, other_path, &p, &b), 0);
	ck_assert_msg(strstr(err, "No such file") && strstr(err, "readonly"), "%s", err);

	ck_assert_int_lt(cow_open(&host, NULL, other_path, cow_path, NULL, &b), 0);
	ck_assert_msg(strstr(err, "cannot open base image") && strstr(err, "other.img"), "%s", err);

	write_file(other_path, odd, sizeof(odd));
	ck_assert_int_lt(cow_open(&host, NULL, other_path, cow_path, NULL, &b), 0);
	ck_assert_msg(strstr(err, "1000 bytes, not a positive multiple of 512"), "%s", err);

	p.readonly = 0;
	p.cluster_size = 1000;
	ck_assert_int_eq(cow_open(&host, NULL, base_path, cow_path, &p, &b), -EINVAL);
	ck_assert_int_eq(cow_open(&host, NULL, base_path, base_path, NULL, &b), -EINVAL);
	ck_assert_msg(strstr(err, "same file"), "%s", err);
}
END_TEST

/* ---- requests (disk.c) ------------------------------------------------------ */

struct req {
	struct virtio_blk_outhdr h;
	struct iovec out[4], in[4];
	unsigned nout, nin;
	uint8_t status;
};

static void req_init(struct req *r, uint32_t type, uint64_t sector)
{
	memset(r, 0, sizeof(*r));
	r->h.type = htole32(type);
	r->h.sector = htole64(sector);
	r->out[r->nout++] = (struct iovec){ &r->h, sizeof(r->h) };
	r->status = 0xff;
}

static void req_out(struct req *r, void *buf, size_t len)
{
	r->out[r->nout++] = (struct iovec){ buf, len };
}

static void req_in(struct req *r, void *buf, size_t len)
{
	r->in[r->nin++] = (struct iovec){ buf, len };
}

static struct blk_req_result req_run(struct blk_disk *d, struct req *r, int with_status)
{
	if (with_status)
		req_in(r, &r->status, 1);
	return blk_disk_request(d, r->out, r->nout, r->in, r->nin, "test-serial", 0);
}

static void open_disk(struct blk_disk *d, int overlay, int readonly)
{
	struct blk_disk_opts o = { .path = base_path, .overlay = overlay ? cow_path : NULL,
				   .readonly = readonly, .cluster_size = CS };
	int rc = blk_disk_open(&host, NULL, d, &o);

	ck_assert_msg(rc == 0, "blk_disk_open: %s", err);
}

START_TEST(request_read_write_overlay)
{
	struct blk_disk d;
	struct req r;
	static uint8_t a[1024], b[512], got[1536];
	struct blk_req_result res;

	open_disk(&d, 1, 0);
	ck_assert_uint_eq(d.size, BASE_SIZE);
	fill(a, sizeof(a), 0xa1);
	fill(b, sizeof(b), 0xb2);
	/* A write from two buffers, sectors 7..9. */
	req_init(&r, VIRTIO_BLK_T_OUT, 7);
	req_out(&r, a, sizeof(a));
	req_out(&r, b, sizeof(b));
	res = req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(res.written, 1);
	/* Read it back into three buffers, the status sharing the last. */
	uint8_t tail[513];
	req_init(&r, VIRTIO_BLK_T_IN, 7);
	req_in(&r, got, 512);
	req_in(&r, got + 512, 512);
	req_in(&r, tail, sizeof(tail));
	res = req_run(&d, &r, 0);
	ck_assert_int_eq(res.status, VIRTIO_BLK_S_OK);
	ck_assert_int_eq(tail[512], VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(res.written, 1024 + 513);
	ck_assert_mem_eq(got, a, 1024);
	ck_assert_mem_eq(tail, b, 512);
	/* Sector 0 still comes from the base. */
	req_init(&r, VIRTIO_BLK_T_IN, 0);
	req_in(&r, got, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	ck_assert_mem_eq(got, base_data, 512);
	/* Flush makes the overlay's map durable. */
	req_init(&r, VIRTIO_BLK_T_FLUSH, 0);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	ck_assert_int_eq(disk_map_byte(0), 3); /* bytes 3584..5119: clusters 0, 1 */
	ck_assert_int_eq(blk_disk_close(&d), 0);
}
END_TEST

START_TEST(request_validation)
{
	struct blk_disk d;
	struct req r;
	static uint8_t buf[2048];
	struct blk_req_result res;
	uint64_t cap = BASE_SIZE / 512; /* 82 sectors */

	open_disk(&d, 1, 0);
	/* The last sector is fine, one past it is not. */
	req_init(&r, VIRTIO_BLK_T_IN, cap - 1);
	req_in(&r, buf, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	req_init(&r, VIRTIO_BLK_T_IN, cap - 1);
	req_in(&r, buf, 1024);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_OUT, UINT64_MAX / 512 + 1); /* overflows *512 */
	req_out(&r, buf, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_OUT, UINT64_MAX);
	req_out(&r, buf, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	/* Data not a multiple of 512. */
	req_init(&r, VIRTIO_BLK_T_IN, 0);
	req_in(&r, buf, 100);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_OUT, 0);
	req_out(&r, buf, 513);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	/* A short header, split or not. */
	req_init(&r, VIRTIO_BLK_T_IN, 0);
	r.out[0].iov_len = 15;
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_IN, 0);
	r.out[0].iov_len = 8;
	req_out(&r, (char *)&r.h + 8, 8);
	req_in(&r, buf, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK); /* split but whole: fine */
	/* A read with readable data, a write with writable data. */
	req_init(&r, VIRTIO_BLK_T_IN, 0);
	req_out(&r, buf, 512);
	req_in(&r, buf + 512, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_OUT, 0);
	req_out(&r, buf, 512);
	req_in(&r, buf + 512, 512);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	/* No writable byte for the status: given back untouched. */
	req_init(&r, VIRTIO_BLK_T_FLUSH, 0);
	res = req_run(&d, &r, 0);
	ck_assert_uint_eq(res.written, 0);
	/* Unknown types. */
	req_init(&r, VIRTIO_BLK_T_DISCARD, 0);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_UNSUPP);
	req_init(&r, VIRTIO_BLK_T_SCSI_CMD, 0);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_UNSUPP);
	/* Nothing of this reached the overlay. */
	ck_assert_uint_eq(cow_allocated_count(d.cow), 0);
	ck_assert_int_eq(blk_disk_close(&d), 0);
}
END_TEST

START_TEST(request_get_id)
{
	struct blk_disk d;
	struct req r;
	char id[VIRTIO_BLK_ID_BYTES + 4];
	struct blk_req_result res;

	open_disk(&d, 0, 1);
	memset(id, 'x', sizeof(id));
	req_init(&r, VIRTIO_BLK_T_GET_ID, 0);
	req_in(&r, id, VIRTIO_BLK_ID_BYTES);
	res = req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(res.written, VIRTIO_BLK_ID_BYTES + 1);
	ck_assert_str_eq(id, "test-serial");
	ck_assert_int_eq(id[VIRTIO_BLK_ID_BYTES], 'x');
	ck_assert_int_eq(blk_disk_close(&d), 0);
}
END_TEST

START_TEST(request_readonly_and_raw)
{
	struct blk_disk d, w;
	struct req r;
	static uint8_t buf[512];
	struct blk_disk_opts o = { .path = base_path };

	open_disk(&d, 0, 1);
	ck_assert_int_eq(d.readonly, 1);
	req_init(&r, VIRTIO_BLK_T_OUT, 0);
	req_out(&r, buf, sizeof(buf));
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_IOERR);
	req_init(&r, VIRTIO_BLK_T_FLUSH, 0);
	req_run(&d, &r, 1);
	ck_assert_int_eq(r.status, VIRTIO_BLK_S_OK);
	/* A reader holds the image: nobody may write it directly. */
	ck_assert_int_lt(blk_disk_open(&host, NULL, &w, &o), 0);
	ck_assert_msg(strstr(err, "in use by another process"), "%s", err);
	ck_assert_int_eq(blk_disk_close(&d), 0);

	/* A writable raw image, on a copy (the base stays untouched). */
	write_file(other_path, base_data, BASE_SIZE);
	o.path = other_path;
	ck_assert_int_eq(blk_disk_open(&host, NULL, &w, &o), 0);
	fill(buf, sizeof(buf), 0x77);
	req_init(&r, VIRTIO_BLK_T_OUT, 3);
	req_out(&r, buf, sizeof(buf));
	r.in[r.nin++] = (struct iovec){ &r.status, 1 };
	ck_assert_int_eq(blk_disk_request(&w, r.out, r.nout, r.in, r.nin, "", 1).status,
			 VIRTIO_BLK_S_OK); /* writethrough */
	ck_assert_int_eq(blk_disk_close(&w), 0);
	int fd = open(other_path, O_RDONLY);
	uint8_t got[512];
	ck_assert_int_eq(pread(fd, got, 512, 3 * 512), 512);
	close(fd);
	ck_assert_mem_eq(got, buf, 512);

	o.path = "/nonexistent/disk.img";
	ck_assert_int_eq(blk_disk_open(&host, NULL, &w, &o), -ENOENT);
	ck_assert_msg(strstr(err, "cannot open disk image /nonexistent/disk.img"), "%s", err);
}
END_TEST

/* A snapshot's overlay content: exported (map + allocated clusters) from
 * one overlay and imported into a private one, which reads the same and
 * leaves no file behind. */
START_TEST(private_overlay_import)
{
	struct cow *c = open_cow(CS), *p;
	uint8_t buf[CS], want[BASE_SIZE];
	uint64_t map_len;
	const uint8_t *map;
	struct stat st;

	memcpy(want, base_data, BASE_SIZE);
	fill(buf, 100, 0xaa);
	ck_assert_int_eq(cow_write(c, buf, 100, 3 * CS + 7), 0);
	memset(want + 3 * CS + 7, 0xaa, 100);
	fill(buf, 200, 0xbb);
	ck_assert_int_eq(cow_write(c, buf, 200, NCL * CS + 10), 0); /* short last cluster */
	memset(want + NCL * CS + 10, 0xbb, 200);
	ck_assert_uint_eq(cow_base_hash(c), fnv1a(FNV_OFFSET, base_data, BASE_SIZE));

	map = cow_map(c, &map_len);
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, map_len), 0);
	ck_assert_int_eq(cow_open_private(&host, NULL, base_path, CS, &p), 0);
	ck_assert_uint_eq(cow_base_hash(p), cow_base_hash(c));
	ck_assert_uint_eq(cow_allocated_count(p), 0);
	for (uint64_t i = 0; i < cow_clusters(c); i++) {
		uint32_t len = cow_cluster_len(c, i);
		if (!cow_allocated(c, i))
			continue;
		ck_assert_int_eq(cow_read(c, buf, len, i * CS), 0);
		ck_assert_int_eq(cow_import_cluster(p, i, buf, len + 1), -EINVAL);
		ck_assert_int_eq(cow_import_cluster(p, i, buf, len), 0);
	}
	ck_assert_int_eq(cow_import_cluster(p, NCL + 1, buf, CS), -EINVAL);
	ck_assert_uint_eq(cow_cluster_len(p, NCL), 1024);
	ck_assert_uint_eq(cow_allocated_count(p), 2);
	ck_assert_int_eq(cow_flush(p), 0);
	check_read_all(p, want);
	/* Writes go to the private overlay only. */
	fill(buf, 512, 0xcc);
	ck_assert_int_eq(cow_write(p, buf, 512, 0), 0);
	ck_assert_int_eq(cow_close(p), 0);
	check_read_all(c, want);
	ck_assert_int_eq(cow_close(c), 0);
	ck_assert_int_eq(stat(base_path, &st), 0);
	ck_assert_uint_eq(file_sum(base_path, NULL), base_sum);
}
END_TEST

START_TEST(check_map_hostile)
{
	uint8_t map[8] = { 0 };
	uint64_t h1, h2;
	int fd;

	/* 11 clusters of 4 KiB: 2 bytes, bits 0..10 only. */
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, 2), 0);
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, 3), -EINVAL);
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, 1), -EINVAL);
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, 3000, map, 2), -EINVAL);
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, 0, map, 2), -EINVAL);
	map[1] = 0x04;
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, 2), 0);
	map[1] = 0x08;
	ck_assert_int_eq(cow_check_map(&host, NULL, BASE_SIZE, CS, map, 2), -EINVAL);
	ck_assert_msg(strstr(err, "past the end"), "%s", err);
	/* The image hash is the one an overlay keeps for its base. */
	fd = open(base_path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cow_image_hash(fd, BASE_SIZE, &h1), 0);
	close(fd);
	h2 = fnv1a(FNV_OFFSET, base_data, BASE_SIZE);
	ck_assert_uint_eq(h1, h2);
}
END_TEST

Suite *blk_suite(void)
{
	Suite *s = suite_create("virtio-blk");
	struct {
		const char *name;
		const TTest *tests[8];
	} cases[] = {
		{ "map", { fresh_overlay_reads_base, map_tracks_written_clusters,
			   default_cluster_size } },
		{ "copy-up", { partial_cluster_copy_up, write_spanning_clusters,
			       whole_cluster_and_tail } },
		{ "flush-reopen", { map_durable_only_after_flush, reopen_keeps_data,
				    random_writes_match_model } },
		{ "refuse", { refuse_bad_magic, refuse_version, refuse_checksum,
			      refuse_bad_fields, refuse_truncated, refuse_map_past_end,
			      refuse_other_base_size, refuse_other_base_content } },
		{ "refuse-more", { warn_base_touched, refuse_in_use_and_misc } },
		{ "snapshot", { private_overlay_import, check_map_hostile } },
		{ "requests", { request_read_write_overlay, request_validation,
				request_get_id, request_readonly_and_raw } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		for (size_t j = 0; j < 8 && cases[i].tests[j]; j++)
			tcase_add_test(tc, cases[i].tests[j]);
		suite_add_tcase(s, tc);
	}
	return s;
}
