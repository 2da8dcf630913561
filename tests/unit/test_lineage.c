/* core/snapshot/lineage.c and the child side of snapmem.c: chunk tables
 * version 3 (chunks flagged "in the parent"), linking a child's table to
 * its parent's, reading through generations, flattening; the "parent"
 * section, finding a parent next to its child or in the cache, refusing a
 * missing, changed or hostile one; snapshot_verify and lineage_flatten on
 * whole child bundles. No VM: the bundles are written here with
 * bundle_writer, snapmem_write_bytes and lineage_write, with only the
 * sections the code under test reads.
 *
 * The memory of every generation is SIZE bytes, NCH chunks, the last one
 * partial:
 *   chunk   A (base)   B (child of A)          C (child of B)
 *   0       random     changed: stored         changed again: stored
 *   1       zero       random: stored          clean: in B
 *   2       random     clean: in A             clean: in A (through B)
 *   3       random     dirty, same bytes: in A clean: in A
 *   4       random     zeroed                  clean: zero
 *   5 (12K) random     clean: in A             dirty, same bytes: in A
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/bundle.h"
#include "snapshot/lineage.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"
#include "unit.h"

#define MIB (1u << 20)
#define NCH 6
#define SIZE (5 * (uint64_t)MIB + 12 * 1024)
#define TABLE_LEN (SNAPMEM_HDR + NCH * SNAPMEM_ENTRY)
#define DISK_SIZE (2 * (uint64_t)MIB + 4096) /* 3 chunks */
#define PARENT_HEAD (4 + 4 + BUNDLE_HASH_SIZE + 8 + 4)
/* A struct snapmem_base: restored from v, clean chunks, parent. */
#define BASE(v_, clean_, parent_) { .v = (v_), .clean = (clean_), .parent = (parent_) }
#define NOT_OPEN "is in the parent bundle, which is not open"
#define NOT_AS_SAVED "is not in the parent as it was when this bundle was saved"
#define CORRUPT "does not match its hash (corrupt or modified)"

static char *dir, *cache, *saved_cache;
static uint8_t *mem_a, *mem_b, *mem_c, *disk_a, *disk_b;

static const uint8_t clean_b[NCH] = { 0, 0, 1, 0, 0, 1 };
static const uint8_t clean_c[NCH] = { 0, 1, 1, 1, 1, 0 };
static const uint8_t all_clean[NCH] = { 1, 1, 1, 1, 1, 1 };

static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static size_t clen(uint64_t size, int i)
{
	uint64_t at = (uint64_t)i * MIB;
	return size - at < MIB ? (size_t)(size - at) : MIB;
}

/* Bytes that compress a little (6 random bits in 8), from a seed. */
static void rnd(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x & 0x3f);
	}
}

static void rnd_chunk(uint8_t *m, uint64_t size, int i, uint64_t seed)
{
	rnd(m + (size_t)i * MIB, clen(size, i), seed);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(path);
}

static void setup(void)
{
	const char *old = getenv("SMOLVM_CACHE_DIR");

	dir = unit_tmpdir();
	saved_cache = old ? strdup(old) : NULL;
	ck_assert(asprintf(&cache, "%s/cache", dir) > 0);
	setenv("SMOLVM_CACHE_DIR", cache, 1);

	mem_a = calloc(1, SIZE);
	mem_b = malloc(SIZE);
	mem_c = malloc(SIZE);
	disk_a = malloc(DISK_SIZE);
	disk_b = malloc(DISK_SIZE);
	ck_assert(mem_a && mem_b && mem_c && disk_a && disk_b);
	for (int i = 0; i < NCH; i++)
		if (i != 1)
			rnd_chunk(mem_a, SIZE, i, 1 + (uint64_t)i);
	memcpy(mem_b, mem_a, SIZE);
	rnd_chunk(mem_b, SIZE, 0, 100);
	rnd_chunk(mem_b, SIZE, 1, 101);
	memset(mem_b + 4 * (size_t)MIB, 0, MIB);
	memcpy(mem_c, mem_b, SIZE);
	rnd_chunk(mem_c, SIZE, 0, 200);

	rnd(disk_a, DISK_SIZE, 50);
	memcpy(disk_b, disk_a, DISK_SIZE);
	rnd_chunk(disk_b, DISK_SIZE, 1, 51);
}

static void teardown(void)
{
	if (saved_cache)
		setenv("SMOLVM_CACHE_DIR", saved_cache, 1);
	else
		unsetenv("SMOLVM_CACHE_DIR");
	free(saved_cache);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	free(cache);
	free(mem_a);
	free(mem_b);
	free(mem_c);
	free(disk_a);
	free(disk_b);
}

static char *path_of(const char *name)
{
	char *p;

	ck_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

/* ---- writing and opening generations ------------------------------------ */

/* What one generation's bundle holds. */
struct gen {
	const uint8_t *mem;              /* NULL: no memory section */
	struct snapmem_base mbase;
	const uint8_t *disk;             /* NULL: no disk section */
	struct snapmem_base dbase;
	const struct parent_ref *parent; /* NULL: no parent section */
	int no_lua;
};

/* Writes g at dir/name: "lua", "memory", "disk.root", "parent" (each when
 * g has it); returns the path. */
static char *write_gen(const char *name, const struct gen *g, struct snapmem_stats *mst,
		       struct snapmem_stats *dst)
{
	struct snapmem_stats ignore;
	struct bundle_writer w;
	struct err e = { "" };
	char *path = path_of(name);

	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	if (!g->no_lua)
		ck_assert_msg(bundle_add(&w, "lua", SEC_LUA, "machine {}\n", 11, &e) == 0, "%s",
			      e.msg);
	if (g->mem)
		ck_assert_msg(snapmem_write_bytes(&w, "memory", SEC_MEMORY, g->mem, SIZE,
						  g->mbase.v || g->mbase.parent ? &g->mbase : NULL,
						  mst ? mst : &ignore, &e) == 0, "%s", e.msg);
	if (g->disk)
		ck_assert_msg(snapmem_write_bytes(&w, "disk.root", SEC_DISK, g->disk, DISK_SIZE,
						  g->dbase.v || g->dbase.parent ? &g->dbase : NULL,
						  dst ? dst : &ignore, &e) == 0, "%s", e.msg);
	if (g->parent)
		ck_assert_msg(lineage_write(&w, g->parent, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	return path;
}

static void open_b(struct bundle *b, const char *path)
{
	struct err e = { "" };

	ck_assert_msg(bundle_open(b, path, &e) == 0, "%s", e.msg);
}

/* Section `name` of b as a checked view (not linked). */
static void view_of(const struct bundle *b, const char *name, struct snapmem_view *v)
{
	const struct bundle_section *s = bundle_find(b, name);
	const uint8_t *p;
	struct err e = { "" };

	ck_assert_msg(s != NULL, "%s: no section %s", b->path, name);
	ck_assert_msg(bundle_section_data(b, s, &p, &e) == 0, "%s", e.msg);
	ck_assert_msg(snapmem_open(p, s->size, s->covered, v, &e) == 0, "%s", e.msg);
	v->name = s->name;
}

static const uint8_t *entry_at(const struct snapmem_view *v, int i)
{
	return v->sec + SNAPMEM_HDR + (size_t)i * v->entry;
}

/* The view reads exactly `want` (size bytes), with `threads` threads. */
static void expect_reads(const struct snapmem_view *v, const uint8_t *want, uint64_t size,
			 unsigned threads)
{
	uint8_t *got = calloc(1, size);
	struct err e = { "" };

	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(v->mem_size, size);
	ck_assert_msg(snapmem_read_view(v, got, threads, &e) == 0, "%s", e.msg);
	for (int i = 0; i < (int)((size + MIB - 1) / MIB); i++)
		ck_assert_msg(!memcmp(got + (size_t)i * MIB, want + (size_t)i * MIB, clen(size, i)),
			      "chunk %d differs", i);
	free(got);
}

/* Memory A (and disk A) with nothing in a parent: base.smolmachine. */
static char *write_a(const char *name, const uint8_t *mem, struct snapmem_stats *st)
{
	struct gen g = { .mem = mem, .disk = disk_a };

	return write_gen(name, &g, st, NULL);
}

/* ==== snapmem: version 3 tables ============================================ */

START_TEST(test_base_table)
{
	struct snapmem_stats st;
	struct snapmem_view va;
	struct bundle a;
	char *pa = write_a("base.smolmachine", mem_a, &st);

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	ck_assert_uint_eq(va.version, SNAPMEM_VERSION);
	ck_assert_uint_eq(va.in_parent, 0);
	ck_assert_uint_eq(va.nchunks, NCH);
	ck_assert_uint_eq(st.chunks, NCH);
	ck_assert_uint_eq(st.zero_chunks, 1);
	ck_assert_uint_eq(st.parent_chunks, 0);
	ck_assert_uint_eq(st.reused_chunks, 0);
	ck_assert_uint_eq(st.stored_bytes, bundle_find(&a, "memory")->size);
	ck_assert(snapmem_chunk_zero(&va, 1));
	for (int i = 0; i < NCH; i++)
		ck_assert_int_eq(snapmem_chunk_in_parent(&va, i), 0);
	expect_reads(&va, mem_a, SIZE, 1);
	bundle_close(&a);
	free(pa);
}
END_TEST

START_TEST(test_child_table)
{
	struct snapmem_stats st;
	struct snapmem_view va, vb;
	struct bundle a, b;
	struct err e = { "" };
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb;

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen g = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &g, &st, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);

	ck_assert_uint_eq(vb.version, SNAPMEM_VERSION_CHILD);
	ck_assert_uint_eq(get32(vb.sec + 4), 3);
	ck_assert_uint_eq(vb.in_parent, 3);
	ck_assert_uint_eq(st.chunks, NCH);
	ck_assert_uint_eq(st.zero_chunks, 1);
	ck_assert_uint_eq(st.parent_chunks, 3); /* 2 and 5 clean, 3 the same bytes */
	ck_assert_uint_eq(st.reused_chunks, 2);
	/* the table and chunks 0 and 1, nothing of the parent's */
	ck_assert_uint_eq(st.stored_bytes, bundle_find(&b, "memory")->size);
	ck_assert_uint_eq(st.stored_bytes,
			  TABLE_LEN + get32(entry_at(&vb, 0) + 8) + get32(entry_at(&vb, 1) + 8));

	for (int i = 0; i < NCH; i++) {
		const uint8_t *eb = entry_at(&vb, i), *ea = entry_at(&va, i);
		int in_a = i == 2 || i == 3 || i == 5;
		ck_assert_int_eq(snapmem_chunk_in_parent(&vb, i), in_a);
		ck_assert_int_eq(snapmem_chunk_zero(&vb, i), i == 4);
		if (in_a) {
			/* no bytes here: the parent's frame's size and hash */
			ck_assert_uint_eq(get64(eb), 0);
			ck_assert_uint_eq(get32(eb + 12), SNAPMEM_IN_PARENT);
			ck_assert_uint_eq(get32(eb + 8), get32(ea + 8));
			ck_assert_int_eq(memcmp(eb + 16, ea + 16, 32), 0);
		} else if (i != 4) {
			ck_assert_uint_ge(get64(eb), TABLE_LEN);
			ck_assert_uint_eq(get32(eb + 12), 0);
		}
	}

	/* Not linked: the parent's chunks do not read. */
	const uint8_t *f;
	uint32_t flen;
	uint8_t *buf = calloc(1, SIZE);
	snapmem_chunk_frame(&vb, 2, &f, &flen);
	ck_assert_ptr_null(f);
	ck_assert_uint_eq(flen, 0);
	ck_assert_int_eq(snapmem_read_view(&vb, buf, 1, &e), -ENOENT);
	ck_assert_str_eq(e.msg, "memory section: chunk 2 " NOT_OPEN);
	e.msg[0] = 0;
	ck_assert_int_eq(snapmem_verify_view(&vb, &e), -ENOENT);
	ck_assert_str_contains(e.msg, NOT_OPEN);

	/* Linked: exactly B's bytes, the parent's frames where they are. */
	ck_assert_msg(snapmem_link(&vb, &va, &e) == 0, "%s", e.msg);
	ck_assert_ptr_eq(vb.parent, &va);
	expect_reads(&vb, mem_b, SIZE, 1);
	expect_reads(&vb, mem_b, SIZE, 0);
	ck_assert_msg(snapmem_verify_view(&vb, &e) == 0, "%s", e.msg);
	for (int i = 2; i < NCH; i += 3) {
		const uint8_t *fa;
		uint32_t la;
		snapmem_chunk_frame(&vb, i, &f, &flen);
		snapmem_chunk_frame(&va, i, &fa, &la);
		ck_assert_ptr_nonnull(f);
		ck_assert_ptr_eq(f, fa);
		ck_assert_uint_eq(flen, la);
	}
	snapmem_chunk_frame(&vb, 4, &f, &flen);
	ck_assert_ptr_null(f);

	free(buf);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
}
END_TEST

/* A parent must hold each chunk the child says it holds, as it was. */
START_TEST(test_link_refused)
{
	struct snapmem_view va, vb, vx;
	struct bundle a, b, x;
	struct err e = { "" };
	uint8_t *other = malloc(SIZE);
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb, *px;

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen g = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);

	/* A' with chunk 3 (one the child has in the parent) changed. */
	memcpy(other, mem_a, SIZE);
	other[3 * (size_t)MIB + 77] ^= 1;
	px = write_a("other.smolmachine", other, NULL);
	open_b(&x, px);
	view_of(&x, "memory", &vx);
	ck_assert_int_eq(snapmem_link(&vb, &vx, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "chunk 3 " NOT_AS_SAVED);
	ck_assert_ptr_null(vb.parent);
	bundle_close(&x);
	free(px);

	/* The last, partial chunk. */
	memcpy(other, mem_a, SIZE);
	other[SIZE - 1] ^= 0x40;
	px = write_a("other.smolmachine", other, NULL);
	open_b(&x, px);
	view_of(&x, "memory", &vx);
	ck_assert_int_eq(snapmem_link(&vb, &vx, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "chunk 5 " NOT_AS_SAVED);
	bundle_close(&x);
	free(px);

	/* A parent where that chunk is zero now. */
	memcpy(other, mem_a, SIZE);
	memset(other + 2 * (size_t)MIB, 0, MIB);
	px = write_a("other.smolmachine", other, NULL);
	open_b(&x, px);
	view_of(&x, "memory", &vx);
	ck_assert_int_eq(snapmem_link(&vb, &vx, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "chunk 2 " NOT_AS_SAVED);
	bundle_close(&x);
	free(px);

	/* One changed only where the child has its own chunk: accepted, and
	 * the child reads as it was. */
	memcpy(other, mem_a, SIZE);
	other[5] ^= 1;
	px = write_a("other.smolmachine", other, NULL);
	open_b(&x, px);
	view_of(&x, "memory", &vx);
	ck_assert_msg(snapmem_link(&vb, &vx, &e) == 0, "%s", e.msg);
	expect_reads(&vb, mem_b, SIZE, 1);
	vb.parent = NULL;
	bundle_close(&x);
	free(px);

	/* Another size. */
	struct gen small = { .disk = disk_a };
	px = write_gen("small.smolmachine", &small, NULL, NULL);
	open_b(&x, px);
	view_of(&x, "disk.root", &vx);
	ck_assert_int_eq(snapmem_link(&vb, &vx, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "5255168 bytes here, 2101248 in the parent");
	ck_assert_ptr_null(vb.parent);
	bundle_close(&x);
	free(px);

	free(other);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
}
END_TEST

/* C, a child of B: its chunks are in C, in B, or in A through B. */
START_TEST(test_grandchild)
{
	struct snapmem_stats st;
	struct snapmem_view va, vb, vc, vb_alone;
	struct bundle a, b, c;
	struct err e = { "" };
	const uint8_t *f, *g_;
	uint32_t fl, gl;
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb, *pc;

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen gb = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &gb, NULL, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);
	ck_assert_msg(snapmem_link(&vb, &va, &e) == 0, "%s", e.msg);

	struct gen gc = { .mem = mem_c, .mbase = BASE(&vb, clean_c, &vb) };
	pc = write_gen("grandchild.smolmachine", &gc, &st, NULL);
	open_b(&c, pc);
	view_of(&c, "memory", &vc);
	ck_assert_uint_eq(vc.version, SNAPMEM_VERSION_CHILD);
	ck_assert_uint_eq(vc.in_parent, 4); /* 1, 2, 3, 5 */
	ck_assert_uint_eq(st.parent_chunks, 4);
	ck_assert_uint_eq(st.zero_chunks, 1);
	ck_assert_uint_eq(st.reused_chunks, 3);
	ck_assert_uint_eq(st.stored_bytes, TABLE_LEN + get32(entry_at(&vc, 0) + 8));
	for (int i = 1; i < NCH; i++)
		ck_assert_int_eq(snapmem_chunk_in_parent(&vc, i), i != 4);
	/* the hash of the frame that holds it, wherever that is */
	ck_assert_int_eq(memcmp(entry_at(&vc, 1) + 16, entry_at(&vb, 1) + 16, 32), 0);
	ck_assert_int_eq(memcmp(entry_at(&vc, 2) + 16, entry_at(&va, 2) + 16, 32), 0);
	ck_assert_int_eq(memcmp(entry_at(&vc, 5) + 16, entry_at(&va, 5) + 16, 32), 0);

	ck_assert_msg(snapmem_link(&vc, &vb, &e) == 0, "%s", e.msg);
	expect_reads(&vc, mem_c, SIZE, 1);
	expect_reads(&vc, mem_c, SIZE, 0);
	ck_assert_msg(snapmem_verify_view(&vc, &e) == 0, "%s", e.msg);
	snapmem_chunk_frame(&vc, 1, &f, &fl);
	snapmem_chunk_frame(&vb, 1, &g_, &gl);
	ck_assert_ptr_eq(f, g_);
	snapmem_chunk_frame(&vc, 3, &f, &fl);
	snapmem_chunk_frame(&va, 3, &g_, &gl);
	ck_assert_ptr_eq(f, g_);
	ck_assert_uint_eq(fl, gl);

	/* B not linked to A: C links to it (its table is as it was), but
	 * what B has in A does not read. */
	view_of(&b, "memory", &vb_alone);
	ck_assert_msg(snapmem_link(&vc, &vb_alone, &e) == 0, "%s", e.msg);
	uint8_t *buf = calloc(1, SIZE);
	ck_assert_int_eq(snapmem_read_view(&vc, buf, 1, &e), -ENOENT);
	ck_assert_str_eq(e.msg, "memory section: chunk 2 " NOT_OPEN);
	free(buf);

	/* C's table against A directly: chunk 1 is B's, not A's. */
	vc.parent = NULL;
	ck_assert_int_eq(snapmem_link(&vc, &va, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "chunk 1 " NOT_AS_SAVED);

	bundle_close(&c);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
	free(pc);
}
END_TEST

/* A save over its own bundle: restored from B, naming B's parent A. Clean
 * chunks B holds itself are copied; those in A stay there. */
START_TEST(test_sibling_of_base)
{
	struct snapmem_stats st;
	struct snapmem_view va, vb, vd;
	struct bundle a, b, d;
	struct err e = { "" };
	const uint8_t clean_d[NCH] = { 1, 1, 1, 0, 1, 1 };
	uint8_t *mem_d = malloc(SIZE);
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb, *pd;

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen gb = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &gb, NULL, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);
	ck_assert_msg(snapmem_link(&vb, &va, &e) == 0, "%s", e.msg);

	memcpy(mem_d, mem_b, SIZE);
	rnd_chunk(mem_d, SIZE, 3, 300);
	struct gen gd = { .mem = mem_d, .mbase = BASE(&vb, clean_d, &va) };
	pd = write_gen("again.smolmachine", &gd, &st, NULL);
	open_b(&d, pd);
	view_of(&d, "memory", &vd);
	ck_assert_uint_eq(st.parent_chunks, 2); /* 2 and 5 */
	ck_assert_uint_eq(st.reused_chunks, 4); /* 0 and 1 copied, 2 and 5 left */
	ck_assert_uint_eq(st.zero_chunks, 1);
	for (int i = 0; i < NCH; i++)
		ck_assert_int_eq(snapmem_chunk_in_parent(&vd, i), i == 2 || i == 5);
	/* B's frames of chunks 0 and 1, as they were */
	for (int i = 0; i < 2; i++) {
		const uint8_t *fd, *fb;
		uint32_t ld, lb;
		snapmem_chunk_frame(&vd, i, &fd, &ld);
		snapmem_chunk_frame(&vb, i, &fb, &lb);
		ck_assert_uint_eq(ld, lb);
		ck_assert_int_eq(memcmp(fd, fb, ld), 0);
	}
	ck_assert_msg(snapmem_link(&vd, &va, &e) == 0, "%s", e.msg);
	expect_reads(&vd, mem_d, SIZE, 0);

	free(mem_d);
	bundle_close(&d);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
	free(pd);
}
END_TEST

/* A corrupt frame in the parent is caught when the child reads it, and
 * only then. */
START_TEST(test_corrupt_parent_frame)
{
	struct snapmem_view va, vb, vbad;
	struct bundle a, b;
	struct err e = { "" };
	const struct bundle_section *s;
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb;

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen gb = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &gb, NULL, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);

	s = bundle_find(&a, "memory");
	uint8_t *copy = malloc(s->size);
	uint8_t *buf = calloc(1, SIZE);
	char want[128];
	for (int chunk = 0; chunk < NCH; chunk++) {
		if (chunk == 1)
			continue; /* zero in A */
		memcpy(copy, va.sec, s->size);
		copy[get64(entry_at(&va, chunk)) + get32(entry_at(&va, chunk) + 8) / 2] ^= 0x10;
		ck_assert_msg(snapmem_open(copy, s->size, s->covered, &vbad, &e) == 0, "%s", e.msg);
		/* the tables are as they were */
		ck_assert_msg(snapmem_link(&vb, &vbad, &e) == 0, "%s", e.msg);
		if (chunk == 0 || chunk == 4) {
			/* one the child has of its own, or zeroed */
			expect_reads(&vb, mem_b, SIZE, 1);
			ck_assert_msg(snapmem_verify_view(&vb, &e) == 0, "%s", e.msg);
		} else {
			snprintf(want, sizeof(want), "memory section: chunk %d does not match its "
				 "hash (corrupt or modified)", chunk);
			ck_assert_int_eq(snapmem_read_view(&vb, buf, 1, &e), -EBADMSG);
			ck_assert_str_eq(e.msg, want);
			e.msg[0] = 0;
			ck_assert_int_eq(snapmem_verify_view(&vb, &e), -EBADMSG);
			ck_assert_str_eq(e.msg, want);
		}
		vb.parent = NULL;
	}
	free(buf);
	free(copy);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
}
END_TEST

/* Flattening a section: every frame copied as it is, a version 2 table
 * that reads alone. */
START_TEST(test_flatten_section)
{
	struct snapmem_stats st;
	struct snapmem_view va, vb, vc, vf;
	struct bundle a, b, c, f;
	struct bundle_writer w;
	struct err e = { "" };
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb, *pc, *pf = path_of("flat");

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	struct gen gb = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("child.smolmachine", &gb, NULL, NULL);
	open_b(&b, pb);
	view_of(&b, "memory", &vb);
	ck_assert_msg(snapmem_link(&vb, &va, &e) == 0, "%s", e.msg);
	struct gen gc = { .mem = mem_c, .mbase = BASE(&vb, clean_c, &vb) };
	pc = write_gen("grandchild.smolmachine", &gc, NULL, NULL);
	open_b(&c, pc);
	view_of(&c, "memory", &vc);

	/* Not linked: the chunks in the parents cannot be copied. */
	struct snapmem_base base = BASE(&vc, all_clean, NULL);
	ck_assert_int_eq(bundle_writer_open(&w, pf, &e), 0);
	ck_assert_int_eq(snapmem_write_bytes(&w, "memory", SEC_MEMORY, NULL, SIZE, &base, &st, &e),
			 -ENOENT);
	ck_assert_str_contains(e.msg, "memory: compression failed");
	bundle_writer_abort(&w);
	ck_assert_int_eq(access(pf, F_OK), -1);

	ck_assert_msg(snapmem_link(&vc, &vb, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_writer_open(&w, pf, &e), 0);
	ck_assert_msg(snapmem_write_bytes(&w, "memory", SEC_MEMORY, NULL, SIZE, &base, &st,
					  &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st.chunks, NCH);
	ck_assert_uint_eq(st.zero_chunks, 1);
	ck_assert_uint_eq(st.parent_chunks, 0);
	ck_assert_uint_eq(st.reused_chunks, NCH - 1);

	open_b(&f, pf);
	view_of(&f, "memory", &vf);
	ck_assert_uint_eq(vf.version, SNAPMEM_VERSION);
	ck_assert_uint_eq(vf.in_parent, 0);
	ck_assert_uint_eq(st.stored_bytes, bundle_find(&f, "memory")->size);
	for (int i = 0; i < NCH; i++) {
		const uint8_t *p, *q;
		uint32_t lp, lq;
		ck_assert_int_eq(snapmem_chunk_in_parent(&vf, i), 0);
		ck_assert_int_eq(snapmem_chunk_zero(&vf, i), i == 4);
		ck_assert_int_eq(memcmp(entry_at(&vf, i) + 16, entry_at(&vc, i) + 16, 32), 0);
		snapmem_chunk_frame(&vf, i, &p, &lp);
		snapmem_chunk_frame(&vc, i, &q, &lq);
		ck_assert_uint_eq(lp, lq);
		ck_assert(i == 4 ? !p && !q : !memcmp(p, q, lp));
	}
	expect_reads(&vf, mem_c, SIZE, 0);
	ck_assert_msg(snapmem_verify_view(&vf, &e) == 0, "%s", e.msg);

	bundle_close(&f);
	bundle_close(&c);
	bundle_close(&b);
	bundle_close(&a);
	free(pa);
	free(pb);
	free(pc);
	free(pf);
}
END_TEST

/* ==== the "parent" section ================================================ */

static void some_ref(struct parent_ref *ref, const char *name)
{
	memset(ref, 0, sizeof(*ref));
	for (int i = 0; i < BUNDLE_HASH_SIZE; i++)
		ref->id[i] = (uint8_t)(0xa0 + i);
	ref->size = 0x123456789ull;
	snprintf(ref->name, sizeof(ref->name), "%s", name);
}

START_TEST(test_parent_round_trip)
{
	struct parent_ref ref, got;
	struct bundle b;
	struct err e = { "" };
	const struct bundle_section *s;
	const uint8_t *p;
	char long_name[LINEAGE_NAME_MAX + 1];
	char *pb;

	/* Without one. */
	struct gen none = { 0 };
	pb = write_gen("plain.smolmachine", &none, NULL, NULL);
	open_b(&b, pb);
	memset(&got, 0x55, sizeof(got));
	ck_assert_int_eq(lineage_parent(&b, &got, &e), 0);
	ck_assert_uint_eq(got.name[0], 0);
	bundle_close(&b);
	free(pb);

	some_ref(&ref, "base.smolmachine");
	struct gen g = { .parent = &ref };
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	ck_assert_int_eq(lineage_parent(&b, &got, &e), 1);
	ck_assert_int_eq(memcmp(&got, &ref, sizeof(ref)), 0);
	/* the layout of lineage.h */
	s = bundle_find(&b, "parent");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->type, SEC_PARENT);
	ck_assert_uint_eq(s->size, PARENT_HEAD + 16);
	ck_assert_int_eq(bundle_section_data(&b, s, &p, &e), 0);
	ck_assert_int_eq(memcmp(p, "SPAR", 4), 0);
	ck_assert_uint_eq(get32(p + 4), 1);
	ck_assert_int_eq(memcmp(p + 8, ref.id, 32), 0);
	ck_assert_uint_eq(get64(p + 40), 0x123456789ull);
	ck_assert_uint_eq(get32(p + 48), 16);
	ck_assert_int_eq(memcmp(p + 52, "base.smolmachine", 16), 0);
	bundle_close(&b);
	free(pb);

	/* The longest name, and odd ones that are still file names. */
	memset(long_name, 'n', LINEAGE_NAME_MAX);
	long_name[LINEAGE_NAME_MAX] = 0;
	const char *odd[] = { long_name, "...", "-", ".hidden", "a b\tc", "\xc3\xa9t\xc3\xa9" };
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		some_ref(&ref, odd[i]);
		pb = write_gen("child.smolmachine", &g, NULL, NULL);
		open_b(&b, pb);
		ck_assert_msg(lineage_parent(&b, &got, &e) == 1, "%s: %s", odd[i], e.msg);
		ck_assert_str_eq(got.name, odd[i]);
		bundle_close(&b);
		free(pb);
	}

	/* lineage_ref_of: what a child of b records. */
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	lineage_ref_of(&b, &got);
	ck_assert_int_eq(memcmp(got.id, b.id, BUNDLE_HASH_SIZE), 0);
	ck_assert_uint_eq(got.size, b.size);
	ck_assert_str_eq(got.name, "child.smolmachine");
	bundle_close(&b);
	free(pb);
}
END_TEST

START_TEST(test_parent_write_refused)
{
	const char *bad[] = { "", ".", "..", "a/b", "/abs", "dir/" };
	struct bundle_writer w;
	struct parent_ref ref;
	struct err e = { "" };
	char *pb = path_of("child.smolmachine"), want[400];

	ck_assert_int_eq(bundle_writer_open(&w, pb, &e), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		some_ref(&ref, bad[i]);
		ck_assert_int_eq(lineage_write(&w, &ref, &e), -EINVAL);
		snprintf(want, sizeof(want), "parent file name %s cannot be recorded", bad[i]);
		ck_assert_str_eq(e.msg, want);
	}
	/* nothing was written: the bundle has no parent section */
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
	struct bundle b;
	open_b(&b, pb);
	ck_assert_uint_eq(b.n, 0);
	bundle_close(&b);
	free(pb);
}
END_TEST

/* A "parent" section as hostile bytes: each refusal, its message. */
struct bad_parent {
	const char *what;
	void (*make)(uint8_t *p, size_t *len);
	uint32_t type;
	const char *msg; /* after "PATH: " */
};

static void valid(uint8_t *p, size_t *len)
{
	memcpy(p, "SPAR", 4);
	put32(p + 4, 1);
	memset(p + 8, 0x11, 32);
	put64(p + 40, 4096);
	put32(p + 48, 4);
	memcpy(p + 52, "base", 4);
	*len = PARENT_HEAD + 4;
}

static void with_name(uint8_t *p, size_t *len, const char *name, size_t n)
{
	valid(p, len);
	put32(p + 48, (uint32_t)n);
	memcpy(p + 52, name, n);
	*len = PARENT_HEAD + n;
}

static void p_magic(uint8_t *p, size_t *len) { valid(p, len); p[3] = 'X'; }
static void p_magic_case(uint8_t *p, size_t *len) { valid(p, len); memcpy(p, "spar", 4); }
static void p_empty(uint8_t *p, size_t *len) { valid(p, len); *len = 0; }
static void p_head_short(uint8_t *p, size_t *len) { valid(p, len); *len = PARENT_HEAD - 1; }
static void p_version0(uint8_t *p, size_t *len) { valid(p, len); put32(p + 4, 0); }
static void p_version2(uint8_t *p, size_t *len) { valid(p, len); put32(p + 4, 2); }
static void p_version_be(uint8_t *p, size_t *len) { valid(p, len); put32(p + 4, 1u << 24); }
static void p_slash(uint8_t *p, size_t *len) { with_name(p, len, "a/b", 3); }
static void p_slash_end(uint8_t *p, size_t *len) { with_name(p, len, "base/", 5); }
static void p_dotdot(uint8_t *p, size_t *len) { with_name(p, len, "..", 2); }
static void p_dot(uint8_t *p, size_t *len) { with_name(p, len, ".", 1); }
static void p_name_empty(uint8_t *p, size_t *len) { with_name(p, len, "", 0); }
static void p_nul(uint8_t *p, size_t *len) { with_name(p, len, "a\0b", 3); }
static void p_nul_end(uint8_t *p, size_t *len) { with_name(p, len, "base\0", 5); }
static void p_len_over(uint8_t *p, size_t *len) { valid(p, len); put32(p + 48, 5); }
static void p_len_under(uint8_t *p, size_t *len) { valid(p, len); put32(p + 48, 3); }
static void p_len_huge(uint8_t *p, size_t *len) { valid(p, len); put32(p + 48, UINT32_MAX); }
static void p_len_2g(uint8_t *p, size_t *len) { valid(p, len); put32(p + 48, 1u << 31); }
static void p_long(uint8_t *p, size_t *len)
{
	char n[LINEAGE_NAME_MAX + 1];
	memset(n, 'n', sizeof(n));
	with_name(p, len, n, sizeof(n));
}

static const struct bad_parent bad_parents[] = {
	{ "magic", p_magic, SEC_PARENT, "section parent: bad header" },
	{ "magic, lower case", p_magic_case, SEC_PARENT, "section parent: bad header" },
	{ "empty", p_empty, SEC_PARENT, "section parent: bad header" },
	{ "51 bytes", p_head_short, SEC_PARENT, "section parent: bad header" },
	{ "version 0", p_version0, SEC_PARENT, "section parent: version 0, this build reads 1" },
	{ "version 2", p_version2, SEC_PARENT, "section parent: version 2, this build reads 1" },
	{ "version big-endian", p_version_be, SEC_PARENT,
	  "section parent: version 16777216, this build reads 1" },
	{ "name a/b", p_slash, SEC_PARENT, "section parent: bad file name" },
	{ "name base/", p_slash_end, SEC_PARENT, "section parent: bad file name" },
	{ "name ..", p_dotdot, SEC_PARENT, "section parent: bad file name" },
	{ "name .", p_dot, SEC_PARENT, "section parent: bad file name" },
	{ "empty name", p_name_empty, SEC_PARENT, "section parent: bad file name" },
	{ "NUL inside", p_nul, SEC_PARENT, "section parent: bad file name" },
	{ "NUL at the end", p_nul_end, SEC_PARENT, "section parent: bad file name" },
	{ "length one more", p_len_over, SEC_PARENT, "section parent: bad file name" },
	{ "length one less", p_len_under, SEC_PARENT, "section parent: bad file name" },
	{ "length 2^32-1", p_len_huge, SEC_PARENT, "section parent: bad file name" },
	{ "length 2^31", p_len_2g, SEC_PARENT, "section parent: bad file name" },
	{ "256-byte name", p_long, SEC_PARENT, "section parent: bad file name" },
	{ "type kept", valid, SEC_KEPT, "section parent is not a parent reference" },
	{ "type memory", valid, SEC_MEMORY, "section parent is not a parent reference" },
};

START_TEST(test_parent_refused)
{
	const struct bad_parent *c = &bad_parents[_i];
	uint8_t sec[PARENT_HEAD + 512] = { 0 };
	size_t len = 0;
	struct bundle_writer w;
	struct parent_ref ref;
	struct bundle b;
	struct lineage l;
	struct err e = { "" };
	char *pb = path_of("child.smolmachine"), want[4400];

	c->make(sec, &len);
	ck_assert_int_eq(bundle_writer_open(&w, pb, &e), 0);
	ck_assert_int_eq(bundle_add(&w, "lua", SEC_LUA, "x", 1, &e), 0);
	ck_assert_int_eq(bundle_add(&w, "parent", c->type, sec, len, &e), 0);
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
	open_b(&b, pb);
	snprintf(want, sizeof(want), "%s: %s", pb, c->msg);
	ck_assert_msg(lineage_parent(&b, &ref, &e) == -EBADMSG, "%s: accepted", c->what);
	ck_assert_str_eq(e.msg, want);
	/* what restore and verify do with it */
	e.msg[0] = 0;
	ck_assert_int_eq(lineage_open(&b, &l, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, want);
	ck_assert_uint_eq(l.n, 0);
	e.msg[0] = 0;
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, want);
	bundle_close(&b);
	free(pb);
}
END_TEST

/* Bytes of the section changed after it was written: its hash. */
START_TEST(test_parent_corrupt)
{
	struct parent_ref ref;
	struct bundle b;
	struct err e = { "" };
	char *pb;
	int fd;

	some_ref(&ref, "base.smolmachine");
	struct gen g = { .parent = &ref };
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	uint64_t at = bundle_find(&b, "parent")->offset + PARENT_HEAD;
	bundle_close(&b);
	fd = open(pb, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "c", 1, (off_t)at), 1); /* "case.smolmachine" */
	close(fd);
	open_b(&b, pb);
	ck_assert_int_eq(lineage_parent(&b, &ref, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section parent " CORRUPT);
	bundle_close(&b);
	free(pb);
}
END_TEST

/* ==== finding parents ====================================================== */

/* base.smolmachine (A, memory and disk) and child.smolmachine (B) naming
 * it, in dir. */
static void write_family(char **pa, char **pb)
{
	struct parent_ref ref;
	struct snapmem_view va, da;
	struct bundle a;

	*pa = write_a("base.smolmachine", mem_a, NULL);
	open_b(&a, *pa);
	view_of(&a, "memory", &va);
	view_of(&a, "disk.root", &da);
	lineage_ref_of(&a, &ref);
	struct gen g = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va), .disk = disk_b,
			 .dbase = BASE(&da, NULL, &da), .parent = &ref };
	*pb = write_gen("child.smolmachine", &g, NULL, NULL);
	bundle_close(&a);
}

static char *cached_path(const struct bundle *b)
{
	char hex[2 * BUNDLE_HASH_SIZE + 1], *p;

	sodium_bin2hex(hex, sizeof(hex), b->id, BUNDLE_HASH_SIZE);
	ck_assert(asprintf(&p, "%s/bundle-%s.smolmachine", cache, hex) > 0);
	return p;
}

START_TEST(test_open_beside)
{
	struct bundle a, b;
	struct lineage l;
	struct err e = { "" };
	char *pa, *pb;

	write_family(&pa, &pb);
	open_b(&a, pa);
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.up[0].path, pa);
	ck_assert_int_eq(memcmp(l.up[0].id, a.id, BUNDLE_HASH_SIZE), 0);
	lineage_close(&l);
	ck_assert_uint_eq(l.n, 0);
	/* a bundle without a parent has no lineage */
	ck_assert_msg(lineage_open(&a, &l, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(l.n, 0);
	/* found beside it: the cache was not even made */
	ck_assert_int_eq(access(cache, F_OK), -1);
	bundle_close(&b);
	bundle_close(&a);

	/* A relative path: beside it is the working directory's. */
	int here = open(".", O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(here, 0);
	ck_assert_int_eq(chdir(dir), 0);
	open_b(&b, "child.smolmachine");
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(l.up[0].path, "base.smolmachine");
	lineage_close(&l);
	bundle_close(&b);
	ck_assert_int_eq(fchdir(here), 0);
	close(here);
	free(pa);
	free(pb);
}
END_TEST

START_TEST(test_open_missing_and_cached)
{
	struct bundle a, b, x;
	struct lineage l;
	struct err e = { "" };
	struct stat s1, s2;
	char *pa, *pb, *moved = path_of("moved.smolmachine"), *pc, hex[2 * BUNDLE_HASH_SIZE + 1];

	write_family(&pa, &pb);
	ck_assert_int_eq(rename(pa, moved), 0);
	open_b(&b, pb);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ENOENT);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_contains(e.msg, pb);
	ck_assert_str_contains(e.msg, "its parent base.smolmachine (identity ");
	ck_assert_str_contains(e.msg, "is neither next to it nor in the cache");
	ck_assert_str_contains(e.msg, "--flat");
	ck_assert_str_contains(e.msg, "smolvm flatten");
	e.msg[0] = 0;
	ck_assert_int_eq(snapshot_verify(&b, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "is neither next to it nor in the cache");

	/* Kept in the cache: a link to the very file. */
	open_b(&a, moved);
	pc = cached_path(&a);
	sodium_bin2hex(hex, sizeof(hex), a.id, BUNDLE_HASH_SIZE);
	hex[16] = 0; /* as much of it as messages show */
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ENOENT);
	ck_assert_str_contains(e.msg, pc); /* where it was looked for */
	ck_assert_msg(lineage_keep(&a, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(stat(pc, &s1), 0);
	ck_assert_int_eq(stat(moved, &s2), 0);
	ck_assert_uint_eq(s1.st_ino, s2.st_ino);
	ck_assert_msg(lineage_keep(&a, &e) == 0, "%s", e.msg); /* there already */
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.up[0].path, pc);
	lineage_close(&l);

	/* A different bundle under the recorded name: the cache's copy is
	 * taken; without it, refused as changed. */
	struct gen other = { .mem = mem_c };
	free(write_gen("base.smolmachine", &other, NULL, NULL));
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(l.up[0].path, pc);
	lineage_close(&l);
	ck_assert_int_eq(unlink(pc), 0);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ESTALE);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_contains(e.msg, pb);
	ck_assert_str_contains(e.msg, "its parent ");
	ck_assert_str_contains(e.msg, pa);
	ck_assert_str_contains(e.msg, "changed since it was saved");
	ck_assert_str_contains(e.msg, hex);
	ck_assert_str_contains(e.msg, "the cache does not hold it");
	ck_assert_str_contains(e.msg, "--flat");

	/* Not a bundle at all under that name. */
	unlink(pa);
	free(unit_write_file(dir, "base.smolmachine", "not a bundle", 12));
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ESTALE);
	ck_assert_str_contains(e.msg, "changed since it was saved");
	/* A directory under that name. */
	unlink(pa);
	ck_assert_int_eq(mkdir(pa, 0700), 0);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ESTALE);
	rmdir(pa);

	/* The child elsewhere, the parent only in the cache. */
	ck_assert_msg(lineage_keep(&a, &e) == 0, "%s", e.msg);
	char *sub = path_of("sub"), *moved_child;
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	ck_assert(asprintf(&moved_child, "%s/child.smolmachine", sub) > 0);
	ck_assert_int_eq(rename(pb, moved_child), 0);
	open_b(&x, moved_child);
	ck_assert_msg(lineage_open(&x, &l, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(l.up[0].path, pc);
	lineage_close(&l);
	bundle_close(&x);

	bundle_close(&a);
	bundle_close(&b);
	free(sub);
	free(moved_child);
	free(pc);
	free(moved);
	free(pa);
	free(pb);
}
END_TEST

/* Without a cache directory: looked for next to the child only. */
START_TEST(test_open_no_cache_dir)
{
	struct bundle b;
	struct lineage l;
	struct err e = { "" };
	char *pa, *pb;

	const char *names[] = { "XDG_CACHE_HOME", "HOME" };
	char *saved[2];

	for (int i = 0; i < 2; i++)
		saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;
	write_family(&pa, &pb);
	ck_assert_int_eq(unlink(pa), 0);
	unsetenv("SMOLVM_CACHE_DIR");
	unsetenv("XDG_CACHE_HOME");
	unsetenv("HOME");
	open_b(&b, pb);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "is neither next to it nor in the cache:");
	ck_assert_str_contains(e.msg, "--flat");
	for (int i = 0; i < 2; i++) {
		if (saved[i])
			setenv(names[i], saved[i], 1);
		free(saved[i]);
	}
	bundle_close(&b);
	free(pa);
	free(pb);
}
END_TEST

/* A bundle read from memory has no directory: its parent is not looked
 * for (not in the working directory, not in the cache). */
START_TEST(test_open_from_memory)
{
	struct bundle b;
	struct lineage l;
	struct parent_ref ref;
	struct err e = { "" };
	char *pa, *pb, *bytes, *never = path_of("never");
	size_t len;

	write_family(&pa, &pb);
	bytes = unit_read_file(pb, &len);
	setenv("SMOLVM_CACHE_DIR", never, 1);
	int here = open(".", O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(here, 0);
	ck_assert_int_eq(chdir(dir), 0); /* where base.smolmachine is */
	ck_assert_int_eq(bundle_open_mem(&b, bytes, len, &e), 0);
	ck_assert_int_eq(lineage_parent(&b, &ref, &e), 1);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ENOENT);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_contains(e.msg, "its parent base.smolmachine");
	ck_assert_str_contains(e.msg, "not read from a file");
	ck_assert_int_eq(snapshot_verify(&b, &e), -ENOENT);
	ck_assert_int_eq(fchdir(here), 0);
	close(here);
	ck_assert_int_eq(access(never, F_OK), -1);
	bundle_close(&b);
	free(bytes);
	free(never);
	free(pa);
	free(pb);
}
END_TEST

/* g00 ... g17, each naming the one before: 16 ancestors are allowed, 17
 * are refused. An ancestor with a broken parent section fails the whole
 * lineage. */
START_TEST(test_generations)
{
	struct parent_ref ref;
	struct bundle b;
	struct lineage l;
	struct err e = { "" };
	char name[32], *paths[LINEAGE_MAX + 2];

	for (int i = 0; i < LINEAGE_MAX + 2; i++) {
		struct gen g = { .parent = i ? &ref : NULL };
		snprintf(name, sizeof(name), "g%02d.smolmachine", i);
		paths[i] = write_gen(name, &g, NULL, NULL);
		open_b(&b, paths[i]);
		lineage_ref_of(&b, &ref);
		bundle_close(&b);
	}
	open_b(&b, paths[LINEAGE_MAX]);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(l.n, LINEAGE_MAX);
	for (int k = 0; k < LINEAGE_MAX; k++)
		ck_assert_str_eq(l.up[k].path, paths[LINEAGE_MAX - 1 - k]);
	lineage_close(&l);
	bundle_close(&b);

	open_b(&b, paths[LINEAGE_MAX + 1]);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ELOOP);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_contains(e.msg, paths[LINEAGE_MAX + 1]);
	ck_assert_str_contains(e.msg, "more than 16 generations of parents");
	ck_assert_str_contains(e.msg, "smolvm flatten");
	bundle_close(&b);

	/* An ancestor replaced (g01 by another bundle): g03 finds g02, whose
	 * parent is refused as changed. */
	struct gen other = { 0 };
	unlink(paths[1]);
	free(write_gen("g01.smolmachine", &other, NULL, NULL));
	open_b(&b, paths[3]);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -ESTALE);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_contains(e.msg, paths[2]); /* whose parent it is */
	bundle_close(&b);

	for (int i = 0; i < LINEAGE_MAX + 2; i++)
		free(paths[i]);
}
END_TEST

START_TEST(test_ancestor_bad_parent_section)
{
	uint8_t sec[PARENT_HEAD + 8];
	size_t len;
	struct bundle_writer w;
	struct parent_ref ref;
	struct bundle b;
	struct lineage l;
	struct err e = { "" };
	char *pp = path_of("base.smolmachine"), *pb;

	p_version2(sec, &len);
	ck_assert_int_eq(bundle_writer_open(&w, pp, &e), 0);
	ck_assert_int_eq(bundle_add(&w, "parent", SEC_PARENT, sec, len, &e), 0);
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
	open_b(&b, pp);
	lineage_ref_of(&b, &ref);
	bundle_close(&b);
	struct gen g = { .parent = &ref };
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	ck_assert_int_eq(lineage_open(&b, &l, &e), -EBADMSG);
	ck_assert_uint_eq(l.n, 0);
	char want[4200];
	snprintf(want, sizeof(want), "%s: section parent: version 2, this build reads 1", pp);
	ck_assert_str_eq(e.msg, want);
	bundle_close(&b);
	free(pp);
	free(pb);
}
END_TEST

/* ==== whole child bundles ================================================== */

START_TEST(test_view)
{
	struct bundle a, b, c;
	struct lineage l;
	struct chunked *ch = malloc(sizeof(*ch)), *dch = malloc(sizeof(*dch));
	struct chunk_costs cc;
	struct parent_ref ref;
	struct err e = { "" };
	char *pa, *pb, *pc;

	write_family(&pa, &pb);
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_msg(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ch->v[0].version, SNAPMEM_VERSION_CHILD);
	ck_assert_ptr_eq(ch->v[0].parent, &ch->v[1]);
	ck_assert_ptr_null(ch->v[1].parent);
	ck_assert_str_eq(ch->v[0].name, "memory");
	expect_reads(&ch->v[0], mem_b, SIZE, 0);
	ck_assert_msg(lineage_view(&b, &l, bundle_find(&b, "disk.root"), ch, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ch->v[0].in_parent, 2); /* chunks 0 and 2 of the disk */
	expect_reads(&ch->v[0], disk_b, DISK_SIZE, 0);
	lineage_costs(ch, &cc);
	ck_assert_uint_eq(cc.zero, 0);
	ck_assert_uint_eq(cc.chunks[0], 1);
	ck_assert_uint_eq(cc.chunks[1], 2);

	/* C, a child of B (restored from B: its views, linked), with its
	 * disk all in B and A. */
	ck_assert_msg(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e) == 0, "%s", e.msg);
	lineage_ref_of(&b, &ref);
	ck_assert_msg(lineage_view(&b, &l, bundle_find(&b, "disk.root"), dch, &e) == 0, "%s",
		      e.msg);
	struct gen g = { .mem = mem_c, .mbase = BASE(&ch->v[0], clean_c, &ch->v[0]),
			 .disk = disk_b, .dbase = BASE(&dch->v[0], all_clean, &dch->v[0]),
			 .parent = &ref };
	pc = write_gen("grandchild.smolmachine", &g, NULL, NULL);
	lineage_close(&l);
	bundle_close(&b);

	open_b(&c, pc);
	ck_assert_msg(lineage_open(&c, &l, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_msg(lineage_view(&c, &l, bundle_find(&c, "memory"), ch, &e) == 0, "%s", e.msg);
	ck_assert_ptr_eq(ch->v[0].parent, &ch->v[1]);
	ck_assert_ptr_eq(ch->v[1].parent, &ch->v[2]);
	ck_assert_ptr_null(ch->v[2].parent);
	expect_reads(&ch->v[0], mem_c, SIZE, 0);
	lineage_costs(ch, &cc);
	ck_assert_uint_eq(cc.zero, 1);
	ck_assert_uint_eq(cc.chunks[0], 1); /* chunk 0 */
	ck_assert_uint_eq(cc.chunks[1], 1); /* chunk 1, B's */
	ck_assert_uint_eq(cc.chunks[2], 3); /* 2, 3, 5: A's */
	ck_assert_uint_eq(cc.bytes[0], get32(entry_at(&ch->v[0], 0) + 8));
	ck_assert_uint_eq(cc.bytes[1], get32(entry_at(&ch->v[1], 1) + 8));
	ck_assert_uint_eq(cc.bytes[2], get32(entry_at(&ch->v[2], 2) + 8) +
					       get32(entry_at(&ch->v[2], 3) + 8) +
					       get32(entry_at(&ch->v[2], 5) + 8));
	ck_assert_msg(lineage_view(&c, &l, bundle_find(&c, "disk.root"), ch, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ch->v[0].in_parent, 3);
	expect_reads(&ch->v[0], disk_b, DISK_SIZE, 0);

	/* The same section of an ancestor, linked to its own ancestors. */
	ck_assert_msg(lineage_view_of(&c, &l, &l.up[0], "memory", ch, &e) == 0, "%s", e.msg);
	ck_assert_ptr_eq(ch->v[0].parent, &ch->v[1]);
	expect_reads(&ch->v[0], mem_b, SIZE, 0);
	ck_assert_msg(lineage_view_of(&c, &l, &l.up[1], "memory", ch, &e) == 0, "%s", e.msg);
	ck_assert_ptr_null(ch->v[0].parent);
	expect_reads(&ch->v[0], mem_a, SIZE, 0);
	ck_assert_msg(lineage_view_of(&c, &l, &c, "memory", ch, &e) == 0, "%s", e.msg);
	expect_reads(&ch->v[0], mem_c, SIZE, 0);
	ck_assert_int_eq(lineage_view_of(&c, &l, &c, "disk.none", ch, &e), -ENOENT);
	ck_assert_int_eq(lineage_view_of(&c, &l, &c, "lua", ch, &e), -ENOENT);
	open_b(&a, pa);
	ck_assert_int_eq(lineage_view_of(&c, &l, &a, "memory", ch, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "is not an ancestor of");
	bundle_close(&a);

	ck_assert_msg(snapshot_verify(&c, &e) == 0, "%s", e.msg);
	lineage_close(&l);
	bundle_close(&c);
	free(dch);
	free(ch);
	free(pa);
	free(pb);
	free(pc);
}
END_TEST

START_TEST(test_view_refused)
{
	struct snapmem_view va;
	struct bundle a, b, x;
	struct lineage l;
	struct chunked *ch = malloc(sizeof(*ch));
	struct parent_ref ref;
	struct err e = { "" };
	uint8_t *other = malloc(SIZE);
	char *pa = write_a("base.smolmachine", mem_a, NULL), *pb, *px, want[4400];

	open_b(&a, pa);
	view_of(&a, "memory", &va);

	/* In-parent chunks, but no parent named. */
	struct gen g = { .mem = mem_b, .mbase = BASE(&va, clean_b, &va) };
	pb = write_gen("orphan.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e), -EBADMSG);
	snprintf(want, sizeof(want), "%s: section memory has chunks in a parent bundle, but it "
		 "names none", pb);
	ck_assert_str_eq(e.msg, want);
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, want);
	bundle_close(&b);
	free(pb);

	/* Naming a parent whose memory is not the one it was saved from
	 * (the same identity cannot differ: a child saved against A but
	 * naming A'). */
	memcpy(other, mem_a, SIZE);
	other[3 * (size_t)MIB] ^= 1;
	px = write_a("other.smolmachine", other, NULL);
	open_b(&x, px);
	lineage_ref_of(&x, &ref);
	g.parent = &ref;
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e), -EBADMSG);
	snprintf(want, sizeof(want), "%s: section memory: chunk 3 is not in the parent as it was "
		 "when this bundle was saved", pb);
	ck_assert_str_eq(e.msg, want);
	lineage_close(&l);
	bundle_close(&b);
	bundle_close(&x);
	free(pb);
	free(px);

	/* A parent without the section. */
	struct gen nomem = { .disk = disk_a };
	px = write_gen("nomem.smolmachine", &nomem, NULL, NULL);
	open_b(&x, px);
	lineage_ref_of(&x, &ref);
	pb = write_gen("child.smolmachine", &g, NULL, NULL);
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e), -EBADMSG);
	snprintf(want, sizeof(want), "%s: its parent %s has no section memory", pb, px);
	ck_assert_str_eq(e.msg, want);
	lineage_close(&l);
	bundle_close(&b);
	bundle_close(&x);
	free(pb);
	free(px);

	bundle_close(&a);
	free(other);
	free(ch);
	free(pa);
}
END_TEST

/* A chunk of the parent's corrupt (its bytes, not its table): the child's
 * verification reads it and fails; the parent's own does too. */
START_TEST(test_verify_corrupt_parent)
{
	struct bundle a, b;
	struct snapmem_view va;
	struct err e = { "" };
	char *pa, *pb;
	int fd;

	write_family(&pa, &pb);
	open_b(&b, pb);
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	bundle_close(&b);

	open_b(&a, pa);
	view_of(&a, "memory", &va);
	uint64_t at = bundle_find(&a, "memory")->offset + get64(entry_at(&va, 3)) + 100;
	bundle_close(&a);
	fd = open(pa, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t byte;
	ck_assert_int_eq(pread(fd, &byte, 1, (off_t)at), 1);
	byte ^= 0x04;
	ck_assert_int_eq(pwrite(fd, &byte, 1, (off_t)at), 1);
	close(fd);

	open_b(&b, pb);
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "chunk 3 does not match its hash (corrupt or modified)");
	bundle_close(&b);
	open_b(&a, pa);
	ck_assert_int_eq(snapshot_verify(&a, &e), -EBADMSG);
	bundle_close(&a);
	free(pa);
	free(pb);
}
END_TEST

START_TEST(test_flatten)
{
	struct bundle b, f;
	struct lineage l;
	struct chunked *ch = malloc(sizeof(*ch));
	struct parent_ref ref;
	struct snapmem_stats st;
	struct snapmem_view v;
	struct err e = { "" };
	size_t gens = 99;
	char *pa, *pb, *pf = path_of("flat.smolmachine");

	write_family(&pa, &pb);
	ck_assert_msg(lineage_flatten(pb, pf, &gens, &st, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(gens, 1);
	ck_assert_uint_eq(st.chunks, NCH + 3);
	ck_assert_uint_eq(st.zero_chunks, 1);
	ck_assert_uint_eq(st.parent_chunks, 0);
	ck_assert_uint_eq(st.reused_chunks, NCH - 1 + 3);

	open_b(&f, pf);
	open_b(&b, pb);
	ck_assert_ptr_null(bundle_find(&f, "parent"));
	ck_assert_int_eq(lineage_parent(&f, &ref, &e), 0);
	ck_assert_uint_eq(f.n, b.n - 1);
	for (size_t i = 0; i < f.n; i++) {
		ck_assert_str_eq(f.secs[i].name, b.secs[i].name);
		ck_assert_uint_eq(f.secs[i].type, b.secs[i].type);
	}
	ck_assert_uint_eq(bundle_find(&f, "lua")->size, 11);
	ck_assert_int_eq(memcmp(f.map + bundle_find(&f, "lua")->offset, "machine {}\n", 11), 0);
	ck_assert_uint_eq(st.stored_bytes,
			  bundle_find(&f, "memory")->size + bundle_find(&f, "disk.root")->size);
	view_of(&f, "memory", &v);
	ck_assert_uint_eq(v.version, SNAPMEM_VERSION);
	ck_assert_uint_eq(v.in_parent, 0);
	expect_reads(&v, mem_b, SIZE, 0);
	view_of(&f, "disk.root", &v);
	ck_assert_uint_eq(v.in_parent, 0);
	expect_reads(&v, disk_b, DISK_SIZE, 0);
	ck_assert_msg(snapshot_verify(&f, &e) == 0, "%s", e.msg);
	bundle_close(&b);
	bundle_close(&f);

	/* A grandchild, flattened over itself. */
	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_msg(lineage_view(&b, &l, bundle_find(&b, "memory"), ch, &e) == 0, "%s", e.msg);
	lineage_ref_of(&b, &ref);
	struct gen g = { .mem = mem_c, .mbase = BASE(&ch->v[0], clean_c, &ch->v[0]),
			 .parent = &ref };
	char *pc = write_gen("grandchild.smolmachine", &g, NULL, NULL);
	lineage_close(&l);
	bundle_close(&b);
	ck_assert_msg(lineage_flatten(pc, pc, &gens, &st, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(gens, 2);
	open_b(&f, pc);
	ck_assert_ptr_null(bundle_find(&f, "parent"));
	view_of(&f, "memory", &v);
	expect_reads(&v, mem_c, SIZE, 0);
	bundle_close(&f);
	/* now a bundle of its own: no parent needed */
	ck_assert_int_eq(unlink(pa), 0);
	ck_assert_int_eq(unlink(pb), 0);
	open_b(&f, pc);
	ck_assert_msg(snapshot_verify(&f, &e) == 0, "%s", e.msg);
	bundle_close(&f);

	free(pc);
	free(ch);
	free(pa);
	free(pb);
	free(pf);
}
END_TEST

/* Refused flattening leaves the target as it was. */
START_TEST(test_flatten_refused)
{
	struct snapmem_stats st;
	struct snapmem_view va;
	struct bundle a;
	struct err e = { "" };
	size_t gens, len;
	char *pa, *pb, *pf = path_of("flat.smolmachine"), *got;
	int fd;

	write_family(&pa, &pb);
	free(unit_write_file(dir, "flat.smolmachine", "keep me", 7));

	/* a corrupt chunk in the parent */
	open_b(&a, pa);
	view_of(&a, "memory", &va);
	uint64_t at = bundle_find(&a, "memory")->offset + get64(entry_at(&va, 5)) + 1;
	bundle_close(&a);
	fd = open(pa, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "\xff\xff", 2, (off_t)at), 2);
	close(fd);
	ck_assert_int_eq(lineage_flatten(pb, pf, &gens, &st, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, pb);
	ck_assert_str_contains(e.msg, "chunk 5 does not match its hash");
	got = unit_read_file(pf, &len);
	ck_assert_str_eq(got, "keep me");
	free(got);

	/* the parent gone */
	ck_assert_int_eq(unlink(pa), 0);
	ck_assert_int_eq(lineage_flatten(pb, pf, &gens, &st, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "is neither next to it nor in the cache");
	got = unit_read_file(pf, &len);
	ck_assert_str_eq(got, "keep me");
	free(got);
	/* over itself: the child is kept too */
	ck_assert_int_eq(lineage_flatten(pb, pb, &gens, &st, &e), -ENOENT);
	struct bundle b;
	struct parent_ref ref;
	open_b(&b, pb);
	ck_assert_int_eq(lineage_parent(&b, &ref, &e), 1);
	bundle_close(&b);

	/* no temporary file left beside them */
	DIR *d = opendir(dir);
	struct dirent *de;
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		ck_assert_msg(!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
			      !strcmp(de->d_name, "cache") ||
			      !strcmp(de->d_name, "child.smolmachine") ||
			      !strcmp(de->d_name, "flat.smolmachine"),
			      "left behind: %s", de->d_name);
	closedir(d);
	free(pa);
	free(pb);
	free(pf);
}
END_TEST

/* A device's image (SEC_IMAGE, chunked as memory) is a child's like its
 * memory: in the parent where unchanged, read through it, flattened. */
START_TEST(test_image_section)
{
	struct bundle_writer w;
	struct snapmem_stats st;
	struct snapmem_view va;
	struct bundle a, b, f;
	struct lineage l;
	struct chunked *ch = malloc(sizeof(*ch));
	struct parent_ref ref;
	struct err e = { "" };
	size_t gens;
	char *pa = path_of("base.smolmachine"), *pb = path_of("child.smolmachine");
	char *pf = path_of("flat.smolmachine");

	ck_assert_int_eq(bundle_writer_open(&w, pa, &e), 0);
	ck_assert_msg(snapmem_write_bytes(&w, "image.blk.overlay", SEC_IMAGE, disk_a, DISK_SIZE,
					  NULL, &st, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
	open_b(&a, pa);
	view_of(&a, "image.blk.overlay", &va);
	lineage_ref_of(&a, &ref);
	struct snapmem_base base = BASE(&va, NULL, &va);
	ck_assert_int_eq(bundle_writer_open(&w, pb, &e), 0);
	ck_assert_msg(snapmem_write_bytes(&w, "image.blk.overlay", SEC_IMAGE, disk_b, DISK_SIZE,
					  &base, &st, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(lineage_write(&w, &ref, &e), 0);
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
	ck_assert_uint_eq(st.parent_chunks, 2);
	bundle_close(&a);

	open_b(&b, pb);
	ck_assert_msg(lineage_open(&b, &l, &e) == 0, "%s", e.msg);
	ck_assert_msg(lineage_view_of(&b, &l, &b, "image.blk.overlay", ch, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(ch->v[0].in_parent, 2);
	expect_reads(&ch->v[0], disk_b, DISK_SIZE, 0);
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	lineage_close(&l);
	bundle_close(&b);

	ck_assert_msg(lineage_flatten(pb, pf, &gens, &st, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(gens, 1);
	open_b(&f, pf);
	ck_assert_uint_eq(f.n, 1);
	ck_assert_uint_eq(f.secs[0].type, SEC_IMAGE);
	view_of(&f, "image.blk.overlay", &va);
	ck_assert_uint_eq(va.version, SNAPMEM_VERSION);
	expect_reads(&va, disk_b, DISK_SIZE, 0);
	bundle_close(&f);
	free(ch);
	free(pa);
	free(pb);
	free(pf);
}
END_TEST

/* A format 1 bundle (tests/golden: chunk tables without hashes) flattens
 * to format 2, the same sections, its memory the same bytes, each frame
 * now with its hash. */
START_TEST(test_flatten_format1)
{
	struct bundle g, f;
	struct snapmem_view vg, vf;
	struct snapmem_stats st;
	struct err e = { "" };
	size_t gens = 99;
	char *pf = path_of("flat.smolmachine");
	const uint8_t *p, *q;

	open_b(&g, GOLDEN_DIR "/ticker-v1.smolmachine");
	ck_assert_uint_eq(g.version, 1);
	ck_assert_msg(lineage_flatten(g.path, pf, &gens, &st, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(gens, 0);
	ck_assert_uint_eq(st.parent_chunks, 0);
	ck_assert_uint_eq(st.reused_chunks, st.chunks - st.zero_chunks);
	open_b(&f, pf);
	ck_assert_uint_eq(f.version, BUNDLE_VERSION);
	ck_assert_uint_eq(f.n, g.n);
	for (size_t i = 0; i < g.n; i++) {
		ck_assert_str_eq(f.secs[i].name, g.secs[i].name);
		ck_assert_uint_eq(f.secs[i].type, g.secs[i].type);
		if (g.secs[i].type == SEC_MEMORY)
			continue;
		ck_assert_int_eq(bundle_section_data(&g, &g.secs[i], &p, &e), 0);
		ck_assert_int_eq(bundle_section_data(&f, &f.secs[i], &q, &e), 0);
		ck_assert_uint_eq(f.secs[i].size, g.secs[i].size);
		ck_assert_int_eq(memcmp(p, q, g.secs[i].size), 0);
	}
	view_of(&g, "memory", &vg);
	view_of(&f, "memory", &vf);
	ck_assert_uint_eq(vg.version, 1);
	ck_assert_uint_eq(vf.version, SNAPMEM_VERSION);
	uint8_t *want = calloc(1, vg.mem_size);
	struct err e2 = { "" };
	ck_assert_msg(snapmem_read_view(&vg, want, 0, &e2) == 0, "%s", e2.msg);
	expect_reads(&vf, want, vg.mem_size, 0);
	ck_assert_msg(snapshot_verify(&f, &e) == 0, "%s", e.msg);
	free(want);
	bundle_close(&f);
	bundle_close(&g);
	free(pf);
}
END_TEST

Suite *lineage_suite(void)
{
	Suite *s = suite_create("lineage");
	TCase *tc;

	tc = tcase_create("snapmem");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_base_table);
	tcase_add_test(tc, test_child_table);
	tcase_add_test(tc, test_link_refused);
	tcase_add_test(tc, test_grandchild);
	tcase_add_test(tc, test_sibling_of_base);
	tcase_add_test(tc, test_corrupt_parent_frame);
	tcase_add_test(tc, test_flatten_section);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("parent section");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_parent_round_trip);
	tcase_add_test(tc, test_parent_write_refused);
	tcase_add_loop_test(tc, test_parent_refused, 0,
			    (int)(sizeof(bad_parents) / sizeof(bad_parents[0])));
	tcase_add_test(tc, test_parent_corrupt);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("finding parents");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_beside);
	tcase_add_test(tc, test_open_missing_and_cached);
	tcase_add_test(tc, test_open_no_cache_dir);
	tcase_add_test(tc, test_open_from_memory);
	tcase_add_test(tc, test_generations);
	tcase_add_test(tc, test_ancestor_bad_parent_section);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("child bundles");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_view);
	tcase_add_test(tc, test_view_refused);
	tcase_add_test(tc, test_verify_corrupt_parent);
	tcase_add_test(tc, test_flatten);
	tcase_add_test(tc, test_flatten_refused);
	tcase_add_test(tc, test_flatten_format1);
	tcase_add_test(tc, test_image_section);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}
