/* core/snapshot/bundle.c, sign.c, manifest.c, snapmem.c and cache.c: every
 * way reading a bundle can be refused, without KVM. Bundles are made by
 * hand (bytes with their checksums and hashes recomputed, so a test reaches
 * the check behind them) or with bundle_writer into a temporary directory.
 * Format 1 images are made by hand only (it is still read, no longer
 * written); format 2 both ways. Each refusal is checked for its return code
 * and its message. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include <xxhash.h>
#include <zstd.h>

#include "snapshot/bundle.h"
#include "snapshot/cache.h"
#include "snapshot/manifest.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"
#include "unit.h"

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static void blake2b(uint8_t out[BUNDLE_HASH_SIZE], const void *p, size_t len)
{
	ck_assert_int_eq(crypto_generichash(out, BUNDLE_HASH_SIZE, p, len, NULL, 0), 0);
}

/* ==== the container ====================================================== */

/* A bundle image in memory, laid out as bundle_writer lays it out:
 * header, the sections in order, the TOC, (format 2) the signatures. */
struct img {
	uint8_t *d;
	size_t len;
	uint64_t toc;
	uint32_t n;
	uint32_t version, es; /* format, and its TOC entry size */
	size_t sig;           /* bytes of signature block after the TOC */
};

struct spec {
	const char *name;
	uint32_t type;
	const char *data;
	size_t len;
};

static const char sample_manifest[] = "[bundle]\nformat = 1\n";
static const char sample_lua[] = "machine { kernel = \"k\" }\n";
static const char sample_vm[] = "\x01\x01\x01\x00\x01\x00\x00\x00x\x07"; /* u8 x = 7 */

static const struct spec sample[] = {
	{ "manifest", SEC_MANIFEST, sample_manifest, sizeof(sample_manifest) - 1 },
	{ "lua", SEC_LUA, sample_lua, sizeof(sample_lua) - 1 },
	{ "vm", SEC_VM, sample_vm, sizeof(sample_vm) - 1 },
};
#define NSAMPLE (sizeof(sample) / sizeof(sample[0]))

/* Room after an image for a test that appends (a byte, signatures). */
#define IMG_SLACK (16 + 8 + 96 * (BUNDLE_SIG_MAX + 1))

static uint8_t *entry(const struct img *im, uint32_t i)
{
	return im->d + im->toc + (uint64_t)i * im->es;
}

static uint8_t *section(const struct img *im, uint32_t i)
{
	return im->d + get64(entry(im, i) + 72);
}

/* The header's own checksum. */
static void seal_header(struct img *im)
{
	put64(im->d + 56, XXH3_64bits(im->d, 56));
}

/* The TOC's checksum (over the real TOC), then the header's. */
static void seal(struct img *im)
{
	put64(im->d + 40, XXH3_64bits(im->d + im->toc, im->len - im->sig - im->toc));
	seal_header(im);
}

/* Section i's XXH3 and (format 2) hash, as its bytes now are, and the
 * checksums above them: what an attacker who changed the bytes redoes. */
static void rehash(struct img *im, uint32_t i, int with_hash)
{
	uint8_t *e = entry(im, i);

	put64(e + 96, XXH3_64bits(section(im, i), get64(e + 80)));
	if (with_hash && im->version >= 2)
		blake2b(e + 128, section(im, i), get64(e + 112));
	seal(im);
}

/* The identity: the BLAKE2b of the TOC. */
static void img_id(const struct img *im, uint8_t id[BUNDLE_HASH_SIZE])
{
	blake2b(id, im->d + im->toc, (size_t)im->n * im->es);
}

static void build_v(struct img *im, const struct spec *s, size_t n, uint32_t version)
{
	size_t body = 0;
	uint64_t off = BUNDLE_HEADER_SIZE;

	memset(im, 0, sizeof(*im));
	im->version = version;
	im->es = version == 1 ? BUNDLE_TOC_ENTRY_SIZE_V1 : BUNDLE_TOC_ENTRY_SIZE;
	for (size_t i = 0; i < n; i++)
		body += s[i].len;
	im->n = (uint32_t)n;
	im->toc = BUNDLE_HEADER_SIZE + body;
	im->len = BUNDLE_HEADER_SIZE + body + n * im->es;
	im->d = calloc(1, im->len + IMG_SLACK);
	ck_assert_ptr_nonnull(im->d);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = entry(im, (uint32_t)i);
		memcpy(im->d + off, s[i].data, s[i].len);
		memcpy(e, s[i].name, strlen(s[i].name));
		put32(e + 64, s[i].type);
		put32(e + 68, COMP_NONE);
		put64(e + 72, off);
		put64(e + 80, s[i].len);
		put64(e + 88, s[i].len);
		put64(e + 96, XXH3_64bits(s[i].data, s[i].len));
		if (version >= 2) {
			put64(e + 112, s[i].len);
			blake2b(e + 128, s[i].data, s[i].len);
		}
		off += s[i].len;
	}
	memcpy(im->d, BUNDLE_MAGIC, 8);
	put32(im->d + 8, version);
	put32(im->d + 12, BUNDLE_HEADER_SIZE);
	put64(im->d + 16, im->toc);
	put32(im->d + 24, im->n);
	put32(im->d + 28, im->es);
	put64(im->d + 32, im->len);
	seal(im);
}

/* A format 1 image (the hand-made tests of the container below are
 * format 1 unless they say otherwise). */
static void build(struct img *im, const struct spec *s, size_t n)
{
	build_v(im, s, n, 1);
}

/* Appends `len` bytes as the signature block, with the header's sizes. */
static void set_sigblock(struct img *im, const void *block, size_t len)
{
	ck_assert_uint_le(len, IMG_SLACK);
	im->len -= im->sig;
	memcpy(im->d + im->len, block, len);
	im->len += len;
	im->sig = len;
	put64(im->d + 32, im->len);
	put64(im->d + 48, len);
	seal_header(im);
}

static void add_sigs(struct img *im, const struct bundle_signature *v, size_t n)
{
	uint8_t block[8 + 96 * (BUNDLE_SIG_MAX + 1)];

	ck_assert_uint_le(n, BUNDLE_SIG_MAX + 1);
	set_sigblock(im, block, bundle_sigblock_encode(block, v, n));
}

/* n empty sections named s0, s1, ... */
static void build_empty(struct img *im, size_t n, uint32_t version)
{
	struct spec *s = calloc(n, sizeof(*s));
	char (*names)[16] = calloc(n, sizeof(*names));

	ck_assert(s && names);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "s%zu", i);
		s[i] = (struct spec){ names[i], SEC_DEVICE, "", 0 };
	}
	build_v(im, s, n, version);
	free(s);
	free(names);
}

static void expect_refused(const char *what, const struct img *im, int want_rc,
			   const char *want_msg)
{
	struct bundle b;
	struct err e = { "" };
	int rc;

	memset(&b, 0x5a, sizeof(b));
	rc = bundle_open_mem(&b, im->d, im->len, &e);
	ck_assert_msg(rc == want_rc, "%s: rc %d, expected %d (%s)", what, rc, want_rc, e.msg);
	ck_assert_msg(strstr(e.msg, want_msg) != NULL, "%s: expected \"%s\" in \"%s\"", what,
		      want_msg, e.msg);
	/* Nothing is left half-open. */
	ck_assert_ptr_null(b.secs);
	ck_assert_ptr_null(b.sigs);
	ck_assert_ptr_null(b.path);
	ck_assert_ptr_null(b.map);
}

/* Format 1 and 2 (_i is the version). */
START_TEST(test_sample_opens)
{
	struct img im;
	struct bundle b;
	struct err e = { "" };
	const struct bundle_section *s;
	const uint8_t *p;
	uint8_t id[BUNDLE_HASH_SIZE], d[BUNDLE_HASH_SIZE];
	static const uint8_t zero[BUNDLE_HASH_SIZE];

	build_v(&im, sample, NSAMPLE, (uint32_t)_i);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.version, _i);
	ck_assert_uint_eq(b.n, NSAMPLE);
	ck_assert_uint_eq(b.toc_offset, im.toc);
	ck_assert_uint_eq(b.toc_size, NSAMPLE * im.es);
	ck_assert_uint_eq(b.nsigs, 0);
	ck_assert_ptr_null(b.sigs);
	img_id(&im, id);
	ck_assert_mem_eq(b.id, _i == 1 ? zero : id, BUNDLE_HASH_SIZE); /* format 1: none */
	for (size_t i = 0; i < NSAMPLE; i++) {
		s = bundle_find(&b, sample[i].name);
		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(s->type, sample[i].type);
		ck_assert_uint_eq(s->size, sample[i].len);
		ck_assert_uint_eq(s->covered, sample[i].len);
		blake2b(d, sample[i].data, sample[i].len);
		ck_assert_mem_eq(s->digest, _i == 1 ? zero : d, BUNDLE_HASH_SIZE);
		ck_assert_int_eq(bundle_section_data(&b, s, &p, &e), 0);
		ck_assert_mem_eq(p, sample[i].data, sample[i].len);
	}
	ck_assert_ptr_null(bundle_find(&b, "memory"));
	ck_assert_ptr_null(bundle_find(&b, "man")); /* whole names only */
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	ck_assert_int_eq(snapshot_verify(&b, &e), 0);
	ck_assert_int_eq(bundle_signature_valid(&b, 0), 0); /* there is none */
	ck_assert_str_eq(bundle_type_name(SEC_MEMORY), "memory");
	ck_assert_str_eq(bundle_type_name(99), "unknown");
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* What the format 2 images made here stand for: bundle_writer's output,
 * byte for byte; it reads back with its identity and hashes. */
START_TEST(test_writer_matches_format)
{
	char *dir = unit_tmpdir(), *path, *data;
	struct bundle_writer w;
	struct bundle b;
	struct err e = { "" };
	struct img im;
	uint8_t id[BUNDLE_HASH_SIZE];
	size_t len;

	ck_assert(asprintf(&path, "%s/w.smolmachine", dir) > 0);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < NSAMPLE; i++)
		ck_assert_int_eq(bundle_add(&w, sample[i].name, sample[i].type, sample[i].data,
					    sample[i].len, &e), 0);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	data = unit_read_file(path, &len);
	build_v(&im, sample, NSAMPLE, BUNDLE_VERSION);
	ck_assert_uint_eq(BUNDLE_VERSION, 2);
	ck_assert_uint_eq(len, im.len);
	ck_assert_mem_eq(data, im.d, len);

	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.version, 2);
	img_id(&im, id);
	ck_assert_mem_eq(b.id, id, sizeof(id));
	ck_assert_uint_eq(b.nsigs, 0);
	for (size_t i = 0; i < b.n; i++) {
		uint8_t d[BUNDLE_HASH_SIZE];
		ck_assert_uint_eq(b.secs[i].covered, b.secs[i].size); /* ordinary: all of it */
		blake2b(d, sample[i].data, sample[i].len);
		ck_assert_mem_eq(b.secs[i].digest, d, sizeof(d));
	}
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	bundle_close(&b);
	free(data);
	free(im.d);
	unlink(path);
	free(path);
	unit_rmdir(dir);
}
END_TEST

START_TEST(test_no_sections_opens)
{
	struct img im;
	struct bundle b;
	struct err e = { "" };
	uint8_t id[BUNDLE_HASH_SIZE];

	build_v(&im, NULL, 0, (uint32_t)_i);
	ck_assert_uint_eq(im.len, BUNDLE_HEADER_SIZE);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.n, 0);
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	if (_i == 2) {
		blake2b(id, "", 0); /* of an empty TOC */
		ck_assert_mem_eq(b.id, id, sizeof(id));
	}
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* Sections tile the file in any TOC order; empty ones are fine. */
START_TEST(test_toc_order_free)
{
	struct spec s[NSAMPLE + 1];
	uint8_t tmp[BUNDLE_TOC_ENTRY_SIZE];
	struct img im;
	struct bundle b;
	struct err e = { "" };
	const uint8_t *p;

	memcpy(s, sample, sizeof(sample));
	s[NSAMPLE] = (struct spec){ "dev.empty", SEC_DEVICE, "", 0 };
	build_v(&im, s, NSAMPLE + 1, (uint32_t)_i);
	memcpy(tmp, entry(&im, 0), im.es);
	memcpy(entry(&im, 0), entry(&im, 2), im.es);
	memcpy(entry(&im, 2), tmp, im.es);
	seal(&im);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(b.secs[0].name, "vm");
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "manifest"), &p, &e), 0);
	ck_assert_mem_eq(p, sample_manifest, sizeof(sample_manifest) - 1);
	ck_assert_uint_eq(bundle_find(&b, "dev.empty")->size, 0);
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* One way to break a well-formed image, and what the reader must say. */
enum { V1 = 1, V2 = 2, ALL = V1 | V2 };

struct breakage {
	const char *what;
	void (*apply)(struct img *im);
	int rc;
	const char *msg;
	unsigned versions; /* the formats it applies to */
};

/* A section's size, and (format 2) what its hash covers with it (only
 * the memory section's may cover less: the reader refuses the others). */
static void set_size(struct img *im, uint32_t i, uint64_t size)
{
	put64(entry(im, i) + 80, size);
	if (im->version >= 2)
		put64(entry(im, i) + 112, size);
	seal(im);
}

/* One signature (of nothing: the reader does not check them). */
static void one_sig(struct img *im)
{
	struct bundle_signature s;

	memset(&s, 0x33, sizeof(s));
	add_sigs(im, &s, 1);
}

static uint8_t *sigblock(struct img *im) { return im->d + im->len - im->sig; }

static void b_empty(struct img *im) { im->len = 0; }
static void b_short(struct img *im) { im->len = BUNDLE_HEADER_SIZE - 1; }
static void b_magic(struct img *im) { im->d[1] = 's'; seal_header(im); }
/* Text-mode damage: the newline of the magic became CR LF. */
static void b_magic_crlf(struct img *im) { im->d[7] = '\r'; }
static void b_magic_high_bit(struct img *im) { im->d[0] &= 0x7f; }
static void b_header_sum(struct img *im) { im->d[48] ^= 1; /* v1 reserved, v2 signature size */ }
static void b_header_sum_field(struct img *im) { im->d[60] ^= 0x80; }
/* The other format's version with this one's TOC entries. */
static void b_other_version(struct img *im) { put32(im->d + 8, im->version == 1 ? 2 : 1); seal_header(im); }
static void b_version3(struct img *im) { put32(im->d + 8, 3); seal_header(im); }
static void b_version0(struct img *im) { put32(im->d + 8, 0); seal_header(im); }
static void b_header_size(struct img *im) { put32(im->d + 12, 128); seal_header(im); }
static void b_entry_size(struct img *im) { put32(im->d + 28, 64); seal_header(im); }
/* The other format's entry size with this one's version. */
static void b_other_entry_size(struct img *im)
{
	put32(im->d + 28, im->version == 1 ? BUNDLE_TOC_ENTRY_SIZE : BUNDLE_TOC_ENTRY_SIZE_V1);
	seal_header(im);
}
static void b_count_limit(struct img *im) { put32(im->d + 24, BUNDLE_MAX_SECTIONS + 1); seal_header(im); }
static void b_count_huge(struct img *im) { put32(im->d + 24, UINT32_MAX); seal_header(im); }
static void b_truncated(struct img *im) { im->len -= 1; }
static void b_truncated_toc(struct img *im) { im->len -= im->es; }
static void b_trailing(struct img *im) { im->d[im->len++] = 0; }
static void b_size_field(struct img *im) { put64(im->d + 32, im->len + 4096); seal_header(im); }
static void b_toc_in_header(struct img *im) { put64(im->d + 16, 32); seal_header(im); }
static void b_toc_past_end(struct img *im) { put64(im->d + 16, im->len + 1); seal_header(im); }
static void b_toc_huge(struct img *im) { put64(im->d + 16, UINT64_MAX); seal_header(im); }
static void b_toc_one_more(struct img *im) { put32(im->d + 24, im->n + 1); seal_header(im); }
static void b_toc_one_less(struct img *im) { put32(im->d + 24, im->n - 1); seal_header(im); }
static void b_toc_moved(struct img *im) { put64(im->d + 16, im->toc - 1); seal_header(im); }
static void b_toc_sum(struct img *im) { entry(im, 1)[0] ^= 0x20; /* "Lua" */ }
static void b_toc_sum_field(struct img *im) { im->d[41] ^= 1; seal_header(im); }
static void b_name_empty(struct img *im) { memset(entry(im, 0), 0, 64); seal(im); }
static void b_name_unterminated(struct img *im) { memset(entry(im, 1), 'a', 64); seal(im); }
static void b_name_junk(struct img *im) { entry(im, 2)[40] = 'x'; seal(im); /* "vm\0...x" */ }
static void b_name_junk_last(struct img *im) { entry(im, 2)[63] = 1; seal(im); }
static void b_compression(struct img *im) { put32(entry(im, 1) + 68, 2); seal(im); }
static void b_duplicate(struct img *im) { memcpy(entry(im, 2), "lua", 4); seal(im); }
static void b_overlap(struct img *im) { put64(entry(im, 1) + 72, get64(entry(im, 1) + 72) - 1); seal(im); }
static void b_gap(struct img *im) { put64(entry(im, 1) + 72, get64(entry(im, 1) + 72) + 1); seal(im); }
static void b_in_header(struct img *im) { put64(entry(im, 0) + 72, 0); seal(im); }
static void b_offset_huge(struct img *im) { put64(entry(im, 2) + 72, UINT64_MAX); seal(im); }
static void b_into_toc(struct img *im) { set_size(im, 2, get64(entry(im, 2) + 80) + 1); }
static void b_size_huge(struct img *im) { set_size(im, 0, UINT64_MAX); }
static void b_unaccounted(struct img *im) { set_size(im, 2, get64(entry(im, 2) + 80) - 1); }
/* No sections at all, but bytes between the header and the TOC. */
static void b_no_sections(struct img *im)
{
	put64(im->d + 16, im->len);
	put32(im->d + 24, 0);
	im->toc = im->len;
	seal(im);
}
/* Format 1 has no signature block: bytes after its TOC are not one. */
static void b_v1_sigblock(struct img *im) { one_sig(im); seal(im); }
/* Format 2 TOC entries: reserved fields, what the hash covers. */
static void b_reserved108(struct img *im) { put32(entry(im, 1) + 108, 1); seal(im); }
static void b_reserved120(struct img *im) { entry(im, 2)[127] = 0x80; seal(im); }
static void b_covered_over(struct img *im) { put64(entry(im, 0) + 112, get64(entry(im, 0) + 80) + 1); seal(im); }
static void b_covered_huge(struct img *im) { put64(entry(im, 1) + 112, UINT64_MAX); seal(im); }
/* The signature block. */
static void b_sig_magic(struct img *im) { one_sig(im); sigblock(im)[3] = 'g'; }
static void b_sig_count0(struct img *im) { set_sigblock(im, "SSIG\0\0\0\0", 8); }
static void b_sig_count0_room(struct img *im) { one_sig(im); put32(sigblock(im) + 4, 0); }
static void b_sig_count2(struct img *im) { one_sig(im); put32(sigblock(im) + 4, 2); }
static void b_sig_count17(struct img *im) { one_sig(im); put32(sigblock(im) + 4, 17); }
static void b_sig_count_huge(struct img *im) { one_sig(im); put32(sigblock(im) + 4, UINT32_MAX); }
static void b_sig_short(struct img *im) { set_sigblock(im, "SSIG", 4); }
static void b_sig_odd_size(struct img *im)
{
	uint8_t block[8 + 96 + 1];
	struct bundle_signature s;

	memset(&s, 0x44, sizeof(s));
	bundle_sigblock_encode(block, &s, 1);
	block[sizeof(block) - 1] = 0;
	set_sigblock(im, block, sizeof(block));
}
static void b_sig_17(struct img *im)
{
	struct bundle_signature s[BUNDLE_SIG_MAX + 1];

	memset(s, 0x55, sizeof(s));
	add_sigs(im, s, BUNDLE_SIG_MAX + 1);
}
static void b_sig_size_more(struct img *im) { one_sig(im); put64(im->d + 48, im->sig + 96); seal_header(im); }
static void b_sig_size_less(struct img *im) { one_sig(im); put64(im->d + 48, im->sig - 1); seal_header(im); }
static void b_sig_size_zero(struct img *im) { one_sig(im); put64(im->d + 48, 0); seal_header(im); }
static void b_sig_size_huge(struct img *im) { one_sig(im); put64(im->d + 48, UINT64_MAX); seal_header(im); }
static void b_sig_size_file(struct img *im) { put64(im->d + 48, 8 + 96); seal_header(im); }
static void b_sig_no_file_size(struct img *im) { one_sig(im); put64(im->d + 32, im->len - im->sig); seal_header(im); }
static void b_sig_cut(struct img *im) { one_sig(im); im->len -= 1; }

static const struct breakage breakages[] = {
	{ "empty file", b_empty, -EBADMSG, "(memory): 0 bytes, too short to be a bundle", ALL },
	{ "63 bytes", b_short, -EBADMSG, "63 bytes, too short to be a bundle", ALL },
	{ "magic", b_magic, -EBADMSG, "not a smolvm bundle (bad magic)", ALL },
	{ "magic CR LF", b_magic_crlf, -EBADMSG, "not a smolvm bundle (bad magic)", ALL },
	{ "magic high bit", b_magic_high_bit, -EBADMSG, "not a smolvm bundle (bad magic)", ALL },
	{ "header checksum", b_header_sum, -EBADMSG, "header checksum mismatch (corrupt header)", ALL },
	{ "header checksum field", b_header_sum_field, -EBADMSG, "header checksum mismatch", ALL },
	{ "the other format version", b_other_version, -EBADMSG, "(memory): malformed header", ALL },
	{ "format version 3", b_version3, -EPROTO, "bundle format version 3, this smolvm reads 1 to 2", ALL },
	{ "format version 0", b_version0, -EPROTO, "bundle format version 0, this smolvm reads 1 to 2", ALL },
	{ "header size", b_header_size, -EBADMSG, "malformed header", ALL },
	{ "TOC entry size", b_entry_size, -EBADMSG, "malformed header", ALL },
	{ "the other format's entry size", b_other_entry_size, -EBADMSG, "malformed header", ALL },
	{ "4097 sections", b_count_limit, -EBADMSG, "malformed header", ALL },
	{ "2^32-1 sections", b_count_huge, -EBADMSG, "malformed header", ALL },
	{ "one byte short", b_truncated, -EBADMSG, "the header says", ALL },
	{ "TOC entry short", b_truncated_toc, -EBADMSG, "(truncated?)", ALL },
	{ "trailing byte", b_trailing, -EBADMSG, "the header says", ALL },
	{ "file size field", b_size_field, -EBADMSG, "(truncated?)", ALL },
	{ "TOC inside the header", b_toc_in_header, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC past the end", b_toc_past_end, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC at 2^64-1", b_toc_huge, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC count + 1", b_toc_one_more, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC count - 1", b_toc_one_less, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC offset - 1", b_toc_moved, -EBADMSG, "table of contents out of range", ALL },
	{ "TOC checksum", b_toc_sum, -EBADMSG, "table of contents checksum mismatch", ALL },
	{ "TOC checksum field", b_toc_sum_field, -EBADMSG, "table of contents checksum mismatch", ALL },
	{ "empty name", b_name_empty, -EBADMSG, "section 0 has a bad name", ALL },
	{ "64-byte name", b_name_unterminated, -EBADMSG, "section 1 has a bad name", ALL },
	{ "bytes after the name", b_name_junk, -EBADMSG, "section 2 has a bad name", ALL },
	{ "last name byte", b_name_junk_last, -EBADMSG, "section 2 has a bad name", ALL },
	{ "compression 2", b_compression, -EBADMSG, "section lua: unknown compression 2", ALL },
	{ "duplicate name", b_duplicate, -EBADMSG, "section lua appears twice", ALL },
	{ "overlap", b_overlap, -EBADMSG, "overlaps or leaves a gap", ALL },
	{ "gap", b_gap, -EBADMSG, "overlaps or leaves a gap", ALL },
	{ "section over the header", b_in_header, -EBADMSG, "section manifest at 0+", ALL },
	{ "offset 2^64-1", b_offset_huge, -EBADMSG, "overlaps or leaves a gap", ALL },
	{ "section into the TOC", b_into_toc, -EBADMSG, "section vm at ", ALL },
	{ "size 2^64-1", b_size_huge, -EBADMSG, "overlaps or leaves a gap", ALL },
	{ "bytes nobody owns", b_unaccounted, -EBADMSG, "unaccounted bytes before the table of contents", ALL },
	{ "no sections, some bytes", b_no_sections, -EBADMSG, "unaccounted bytes before the table of contents", ALL },
	{ "format 1 with a signature block", b_v1_sigblock, -EBADMSG, "table of contents out of range", V1 },
	{ "entry reserved u32", b_reserved108, -EBADMSG, "(memory): section lua: malformed entry", V2 },
	{ "entry reserved u64", b_reserved120, -EBADMSG, "(memory): section vm: malformed entry", V2 },
	{ "covered > size", b_covered_over, -EBADMSG, "(memory): section manifest: malformed entry", V2 },
	{ "covered 2^64-1", b_covered_huge, -EBADMSG, "(memory): section lua: malformed entry", V2 },
	{ "signature block magic", b_sig_magic, -EBADMSG, "(memory): malformed signature block", V2 },
	{ "0 signatures", b_sig_count0, -EBADMSG, "(memory): malformed signature block", V2 },
	{ "0 signatures, room for 1", b_sig_count0_room, -EBADMSG, "malformed signature block", V2 },
	{ "2 signatures, room for 1", b_sig_count2, -EBADMSG, "malformed signature block", V2 },
	{ "17 signatures, room for 1", b_sig_count17, -EBADMSG, "malformed signature block", V2 },
	{ "2^32-1 signatures", b_sig_count_huge, -EBADMSG, "malformed signature block", V2 },
	{ "4-byte signature block", b_sig_short, -EBADMSG, "malformed signature block", V2 },
	{ "8 + 96 + 1 bytes", b_sig_odd_size, -EBADMSG, "malformed signature block", V2 },
	{ "17 signatures", b_sig_17, -EBADMSG, "(memory): malformed header", V2 },
	{ "signature size + 96", b_sig_size_more, -EBADMSG, "table of contents out of range", V2 },
	{ "signature size - 1", b_sig_size_less, -EBADMSG, "table of contents out of range", V2 },
	{ "signature size 0, a block", b_sig_size_zero, -EBADMSG, "table of contents out of range", V2 },
	{ "signature size 2^64-1", b_sig_size_huge, -EBADMSG, "malformed header", V2 },
	{ "signature size, no block", b_sig_size_file, -EBADMSG, "table of contents out of range", V2 },
	{ "a block the file size leaves out", b_sig_no_file_size, -EBADMSG, "the header says", V2 },
	{ "signature block cut", b_sig_cut, -EBADMSG, "(truncated?)", V2 },
};
#define NBREAKAGES (int)(sizeof(breakages) / sizeof(breakages[0]))

static void broken_refused(const struct breakage *t, uint32_t version)
{
	struct img im;
	char what[128];

	if (!(t->versions & version))
		return;
	build_v(&im, sample, NSAMPLE, version);
	t->apply(&im);
	snprintf(what, sizeof(what), "format %u: %s", version, t->what);
	expect_refused(what, &im, t->rc, t->msg);
	free(im.d);
}

START_TEST(test_broken_refused) { broken_refused(&breakages[_i], 1); }
END_TEST

START_TEST(test_broken_refused_v2) { broken_refused(&breakages[_i], 2); }
END_TEST

/* BUNDLE_MAX_SECTIONS exactly is fine; one more, otherwise consistent, is
 * not. Likewise BUNDLE_SIG_MAX signatures. */
START_TEST(test_section_limit)
{
	struct bundle_signature sigs[BUNDLE_SIG_MAX];
	struct img im;
	struct bundle b;
	struct err e = { "" };

	build_empty(&im, BUNDLE_MAX_SECTIONS, (uint32_t)_i);
	if (_i == 2) {
		for (int i = 0; i < BUNDLE_SIG_MAX; i++)
			memset(&sigs[i], i + 1, sizeof(sigs[i]));
		add_sigs(&im, sigs, BUNDLE_SIG_MAX);
	}
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.n, BUNDLE_MAX_SECTIONS);
	ck_assert_ptr_nonnull(bundle_find(&b, "s4095"));
	if (_i == 2) {
		ck_assert_uint_eq(b.nsigs, BUNDLE_SIG_MAX);
		ck_assert_mem_eq(b.sigs, sigs, sizeof(sigs)); /* in order */
		ck_assert_int_eq(bundle_signature_valid(&b, BUNDLE_SIG_MAX - 1), 0);
	}
	bundle_close(&b);
	free(im.d);

	build_empty(&im, BUNDLE_MAX_SECTIONS + 1, (uint32_t)_i);
	expect_refused("4097 sections", &im, -EBADMSG, "malformed header");
	free(im.d);
}
END_TEST

/* Header and TOC are fine; a section's bytes are not. Found when the
 * section is read, not when the bundle is opened. Format 1: its XXH3. */
START_TEST(test_section_checksum)
{
	struct img im;
	struct bundle b;
	struct err e = { "" };
	const uint8_t *p = NULL;

	build(&im, sample, NSAMPLE);
	im.d[get64(entry(&im, 1) + 72) + 3] ^= 0x01; /* a byte of "lua" */
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "manifest"), &p, &e), 0);
	p = NULL;
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "lua"), &p, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section lua checksum mismatch (corrupt)");
	ck_assert_ptr_null(p);
	e.msg[0] = 0;
	ck_assert_int_eq(bundle_verify_all(&b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section lua checksum mismatch");
	bundle_close(&b);

	/* The same with the bytes intact and the TOC's checksum of them wrong. */
	im.d[get64(entry(&im, 1) + 72) + 3] ^= 0x01;
	entry(&im, 2)[96] ^= 0x04;
	seal(&im);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_verify_all(&b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section vm checksum mismatch (corrupt)");
	bundle_close(&b);

	/* Format 1 knows no attacker: with its XXH3 recomputed, a changed
	 * section reads as good. */
	im.d[get64(entry(&im, 1) + 72) + 3] ^= 0x01;
	rehash(&im, 1, 0);
	rehash(&im, 2, 0);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "lua"), &p, &e), 0);
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* Format 2: a section is read against its hash (BLAKE2b), which an
 * attacker cannot make match; the checksums that can be recomputed do not
 * make it pass, and whatever passes changes the bundle's identity. */
START_TEST(test_section_hash)
{
	uint8_t id0[BUNDLE_HASH_SIZE], id1[BUNDLE_HASH_SIZE];
	struct img im;
	struct bundle b;
	struct err e = { "" };
	const uint8_t *p = NULL;

	build_v(&im, sample, NSAMPLE, 2);
	img_id(&im, id0);

	/* A byte changed, nothing recomputed: the identity is the same (a
	 * signature of it stays valid) but the section is refused. */
	section(&im, 1)[3] ^= 0x01;
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(b.id, id0, sizeof(id0));
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "manifest"), &p, &e), 0);
	p = NULL;
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "lua"), &p, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section lua does not match its hash (corrupt or modified)");
	ck_assert_ptr_null(p);
	e.msg[0] = 0;
	ck_assert_int_eq(bundle_verify_all(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section lua does not match its hash (corrupt or modified)");
	e.msg[0] = 0;
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section lua does not match its hash");
	bundle_close(&b);

	/* Its XXH3, the TOC's and the header's recomputed: still refused,
	 * and the identity has changed (the XXH3 is in the TOC). */
	rehash(&im, 1, 0);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_ne(memcmp(b.id, id0, sizeof(id0)), 0);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "lua"), &p, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section lua does not match its hash (corrupt or modified)");
	ck_assert_int_eq(bundle_verify_all(&b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section lua does not match its hash");
	memcpy(id1, b.id, sizeof(id1));
	bundle_close(&b);

	/* Its hash recomputed too: it reads, as another bundle. */
	rehash(&im, 1, 1);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "lua"), &p, &e), 0);
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	ck_assert_int_ne(memcmp(b.id, id0, sizeof(id0)), 0);
	ck_assert_int_ne(memcmp(b.id, id1, sizeof(id1)), 0);
	img_id(&im, id1);
	ck_assert_mem_eq(b.id, id1, sizeof(id1));
	bundle_close(&b);

	/* The hash right and the XXH3 wrong: the section reads (its hash is
	 * what a read checks), a full verification refuses it. */
	entry(&im, 2)[96] ^= 0x04;
	seal(&im);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "vm"), &p, &e), 0);
	ck_assert_int_eq(bundle_verify_all(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section vm checksum mismatch (corrupt)");
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section vm checksum mismatch (corrupt)");
	bundle_close(&b);

	/* A hash byte changed (and the checksums redone): refused. */
	entry(&im, 2)[96] ^= 0x04;
	entry(&im, 0)[128 + 31] ^= 0x80;
	seal(&im);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&b, bundle_find(&b, "manifest"), &p, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "(memory): section manifest does not match its hash "
			 "(corrupt or modified)");
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* A hash that covers only the head of a section: what the memory section
 * uses (its chunks carry their own hashes). Any other section read
 * whole is verified only as far as its entry says. */
START_TEST(test_section_covered)
{
	struct img im;
	struct bundle b;
	struct err e = { "" };

	/* Only the memory section may have a hash that covers less than all
	 * of it (its chunks carry their own): any other section is read
	 * whole, so bytes past a shorter head could change under a signature
	 * of the identity. Such an entry is refused. */
	build_v(&im, sample, NSAMPLE, 2);
	put64(entry(&im, 1) + 112, 7); /* lua: "machine" only */
	blake2b(entry(&im, 1) + 128, section(&im, 1), 7);
	seal(&im);
	ck_assert_int_eq(bundle_open_mem(&b, im.d, im.len, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section lua: malformed entry");
	/* ... also as a section of another type named "memory" */
	memset(entry(&im, 1), 0, 64);
	memcpy(entry(&im, 1), "memory", 6);
	seal(&im);
	ck_assert_int_eq(bundle_open_mem(&b, im.d, im.len, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section memory: malformed entry");
	/* a disk's section may (its chunks carry their hashes); not under
	 * another name or of another type */
	memset(entry(&im, 1), 0, 64);
	memcpy(entry(&im, 1), "disk.vdb", 8);
	put32(entry(&im, 1) + 64, SEC_DISK);
	seal(&im);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	bundle_close(&b);
	put32(entry(&im, 1) + 64, SEC_DEVICE);
	seal(&im);
	ck_assert_int_eq(bundle_open_mem(&b, im.d, im.len, &e), -EBADMSG);
	memset(entry(&im, 1), 0, 64);
	memcpy(entry(&im, 1), "diskvdb", 7);
	put32(entry(&im, 1) + 64, SEC_DISK);
	seal(&im);
	ck_assert_int_eq(bundle_open_mem(&b, im.d, im.len, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section diskvdb: malformed entry");
	free(im.d);
}
END_TEST

/* ---- signatures ---------------------------------------------------------- */

static void make_key(uint8_t pk[32], uint8_t sk[64])
{
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(crypto_sign_keypair(pk, sk), 0);
}

/* A signature of identity `id` by key (pk, sk). */
static void sign_id(struct bundle_signature *s, const uint8_t id[BUNDLE_HASH_SIZE],
		    const uint8_t pk[32], const uint8_t sk[64])
{
	uint8_t msg[BUNDLE_SIGNED_SIZE];

	bundle_signed_message(id, msg);
	memcpy(s->key, pk, 32);
	ck_assert_int_eq(crypto_sign_detached(s->sig, NULL, msg, sizeof(msg), sk), 0);
}

/* Whether signature i of the image is valid, as bundle_signature_valid
 * says, and the identity it opened with. */
static int sig_valid(const struct img *im, size_t i, uint8_t id[BUNDLE_HASH_SIZE])
{
	struct bundle b;
	struct err e = { "" };
	int v;

	ck_assert_msg(bundle_open_mem(&b, im->d, im->len, &e) == 0, "%s", e.msg);
	v = bundle_signature_valid(&b, i);
	if (id)
		memcpy(id, b.id, BUNDLE_HASH_SIZE);
	bundle_close(&b);
	return v;
}

START_TEST(test_signed_message)
{
	uint8_t id[BUNDLE_HASH_SIZE], msg[BUNDLE_SIGNED_SIZE];

	for (int i = 0; i < BUNDLE_HASH_SIZE; i++)
		id[i] = (uint8_t)(i * 37 + 1);
	bundle_signed_message(id, msg);
	ck_assert_uint_eq(BUNDLE_SIGNED_SIZE, 48);
	ck_assert_mem_eq(msg, "smolvm-bundle-2\n", 16);
	ck_assert_mem_eq(msg + 16, id, sizeof(id));
}
END_TEST

START_TEST(test_signature_valid)
{
	uint8_t pk[32], sk[64], pk2[32], sk2[64], id[BUNDLE_HASH_SIZE], got[BUNDLE_HASH_SIZE];
	struct bundle_signature s[3];
	struct img im;
	struct bundle b;
	struct err e = { "" };
	size_t at;

	make_key(pk, sk);
	make_key(pk2, sk2);
	build_v(&im, sample, NSAMPLE, 2);
	img_id(&im, id);
	sign_id(&s[0], id, pk, sk);
	add_sigs(&im, s, 1);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.nsigs, 1);
	ck_assert_mem_eq(b.sigs[0].key, pk, 32);
	ck_assert_mem_eq(b.sigs[0].sig, s[0].sig, 64);
	ck_assert_mem_eq(b.id, id, sizeof(id)); /* the block is not part of it */
	ck_assert_int_eq(bundle_signature_valid(&b, 0), 1);
	ck_assert_int_eq(bundle_signature_valid(&b, 1), 0); /* there is no second */
	ck_assert_int_eq(bundle_signature_valid(&b, SIZE_MAX), 0);
	ck_assert_int_eq(snapshot_verify(&b, &e), 0);
	bundle_close(&b);

	/* One byte of the signature, of the key. */
	at = im.len - 64 + 17;
	im.d[at] ^= 0x01;
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 0);
	im.d[at] ^= 0x01;
	at = im.len - 96 + 5;
	im.d[at] ^= 0x20;
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 0);
	im.d[at] ^= 0x20;
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 1);

	/* One byte of the TOC (a field the reader takes as it is), its
	 * checksums recomputed: another identity, no longer signed. */
	entry(&im, 2)[104] ^= 0x01; /* flags */
	seal(&im);
	ck_assert_int_eq(sig_valid(&im, 0, got), 0);
	ck_assert_int_ne(memcmp(got, id, sizeof(id)), 0);
	entry(&im, 2)[104] ^= 0x01;
	seal(&im);
	ck_assert_int_eq(sig_valid(&im, 0, got), 1);
	ck_assert_mem_eq(got, id, sizeof(id));

	/* A section's bytes and its hash, XXH3 and the TOC's redone. */
	section(&im, 0)[0] ^= 0x01;
	rehash(&im, 0, 1);
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 0);
	section(&im, 0)[0] ^= 0x01;
	rehash(&im, 0, 1);
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 1);

	/* Several: each judged alone. A key that did not make the signature;
	 * the identity signed without the tag; a good one by another key. */
	memcpy(&s[1], &s[0], sizeof(s[0]));
	memcpy(s[1].key, pk2, 32);
	sign_id(&s[2], id, pk2, sk2);
	add_sigs(&im, s, 3);
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 1);
	ck_assert_int_eq(sig_valid(&im, 1, NULL), 0);
	ck_assert_int_eq(sig_valid(&im, 2, NULL), 1);
	ck_assert_int_eq(crypto_sign_detached(s[1].sig, NULL, id, sizeof(id), sk2), 0);
	add_sigs(&im, s, 2);
	ck_assert_int_eq(sig_valid(&im, 1, NULL), 0);

	/* The same signature on another bundle: not valid there. */
	free(im.d);
	build_empty(&im, 2, 2);
	add_sigs(&im, s, 1);
	ck_assert_int_eq(sig_valid(&im, 0, NULL), 0);
	free(im.d);

	/* Format 1: nothing is signed. */
	build(&im, sample, NSAMPLE);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_signature_valid(&b, 0), 0);
	bundle_close(&b);
	free(im.d);
}
END_TEST

/* The names in a directory other than . and .., sorted, comma-separated. */
static char *dir_names(const char *dir)
{
	struct dirent **list;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int n = scandir(dir, &list, NULL, alphasort), k = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, ".."))
			fprintf(f, "%s%s", k++ ? "," : "", list[i]->d_name);
		free(list[i]);
	}
	free(list);
	ck_assert_int_eq(fclose(f), 0);
	return out;
}

/* A format 2 bundle with the sample sections and a small memory section,
 * written by bundle_writer to dir/name. */
static char *write_v2(const char *dir, const char *name)
{
	struct bundle_writer w;
	struct snapmem_stats st;
	struct guest_mem gm;
	struct err e = { "" };
	char *path;

	ck_assert(asprintf(&path, "%s/%s", dir, name) > 0);
	memset(&gm, 0, sizeof(gm));
	gm.size = 3u << 20;
	gm.base = calloc(1, gm.size);
	ck_assert_ptr_nonnull(gm.base);
	memcpy(gm.base + (2u << 20) + 5, "in chunk 2", 10);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < NSAMPLE; i++)
		ck_assert_int_eq(bundle_add(&w, sample[i].name, sample[i].type, sample[i].data,
					    sample[i].len, &e), 0);
	ck_assert_msg(snapmem_write(&w, &gm, NULL, &st, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	free(gm.base);
	return path;
}

/* A disk's base image: a section "disk.NAME" of type SEC_DISK in the
 * memory section's layout, whose hash covers its chunk table only; a
 * changed chunk is found by snapshot_verify. The same head-only hash on a
 * section of another name or type is refused. */
START_TEST(test_disk_section)
{
	char *dir = unit_tmpdir(), *path, *buf;
	struct bundle_writer w;
	struct snapmem_stats st;
	struct err e = { "" };
	struct bundle b;
	const struct bundle_section *s;
	uint8_t *disk = calloc(1, 5u << 20);
	uint64_t frame, at;
	size_t len;

	ck_assert_ptr_nonnull(disk);
	memcpy(disk + (3u << 20) + 100, "a file in the disk", 18);
	ck_assert(asprintf(&path, "%s/d.smolmachine", dir) > 0);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_add(&w, "manifest", SEC_MANIFEST, "[bundle]\n", 9, &e), 0);
	ck_assert_msg(snapmem_write_bytes(&w, "disk.virtio-blk0", SEC_DISK, disk, 5u << 20, NULL,
					  &st, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st.chunks, 5);
	ck_assert_uint_eq(st.zero_chunks, 4);

	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	s = bundle_find(&b, "disk.virtio-blk0");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->type, SEC_DISK);
	ck_assert_uint_eq(s->raw_size, 5u << 20);
	ck_assert_uint_eq(s->covered, SNAPMEM_HDR + 5 * SNAPMEM_ENTRY);
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	frame = get64(b.map + s->offset + SNAPMEM_HDR + 3 * SNAPMEM_ENTRY);
	ck_assert_uint_ne(frame, 0);
	at = s->offset + frame + 5;
	bundle_close(&b);

	/* a byte of the stored chunk: the section's head still matches, the
	 * chunk's hash does not */
	buf = unit_read_file(path, &len);
	buf[at] ^= 0x01;
	free(path);
	path = unit_write_file(dir, "d2.smolmachine", buf, len);
	free(buf);
	if (bundle_open(&b, path, &e) == 0) {
		ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
		bundle_close(&b);
	}
	free(path);
	free(disk);
	unit_rmdir(dir);
}
END_TEST

START_TEST(test_write_signed)
{
	char *dir = unit_tmpdir(), *path, *out, *names, *orig, *data, *missing;
	uint8_t pk[32], sk[64], id[BUNDLE_HASH_SIZE];
	struct bundle_signature s[BUNDLE_SIG_MAX + 1];
	struct bundle b, b2;
	struct err e = { "" };
	size_t olen, len;
	struct stat st;

	make_key(pk, sk);
	path = write_v2(dir, "a.smolmachine");
	orig = unit_read_file(path, &olen);
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	memcpy(id, b.id, sizeof(id));
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	sign_id(&s[0], b.id, pk, sk);

	/* A signed copy beside it. */
	ck_assert(asprintf(&out, "%s/signed.smolmachine", dir) > 0);
	ck_assert_msg(bundle_write_signed(&b, out, s, 1, &e) == 0, "%s", e.msg);
	names = dir_names(dir);
	ck_assert_str_eq(names, "a.smolmachine,signed.smolmachine"); /* no temporary file */
	free(names);
	ck_assert_int_eq(stat(out, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0640); /* the mode the bundle had */
	ck_assert_uint_eq((uint64_t)st.st_size, olen + 8 + 96);
	ck_assert_msg(bundle_open(&b2, out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b2.version, 2);
	ck_assert_mem_eq(b2.id, id, sizeof(id));
	ck_assert_uint_eq(b2.nsigs, 1);
	ck_assert_int_eq(bundle_signature_valid(&b2, 0), 1);
	ck_assert_msg(snapshot_verify(&b2, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b2.n, b.n);
	data = unit_read_file(out, &len);
	/* Everything but the header's sizes and checksum is as it was. */
	ck_assert_mem_eq(data + 64, orig + 64, olen - 64);
	ck_assert_mem_eq(data, orig, 32);
	ck_assert_mem_eq(data + 40, orig + 40, 8);
	free(data);

	/* Signed again, in place, with more signatures: the copy's own. */
	sign_id(&s[1], id, pk, sk);
	s[1].sig[0] ^= 1; /* written as given: judged when read */
	ck_assert_msg(bundle_write_signed(&b2, out, s, 2, &e) == 0, "%s", e.msg);
	bundle_close(&b2);
	ck_assert_msg(bundle_open(&b2, out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b2.nsigs, 2);
	ck_assert_mem_eq(b2.id, id, sizeof(id));
	ck_assert_int_eq(bundle_signature_valid(&b2, 0), 1);
	ck_assert_int_eq(bundle_signature_valid(&b2, 1), 0);

	/* No signatures: the bundle as it was written, byte for byte. */
	ck_assert_msg(bundle_write_signed(&b2, out, NULL, 0, &e) == 0, "%s", e.msg);
	bundle_close(&b2);
	data = unit_read_file(out, &len);
	ck_assert_uint_eq(len, olen);
	ck_assert_mem_eq(data, orig, olen);
	free(data);
	names = dir_names(dir);
	ck_assert_str_eq(names, "a.smolmachine,signed.smolmachine");
	free(names);

	/* Refusals: where no file can be made; a bundle that is not a file;
	 * format 1. BUG (core/snapshot/sign.c, not fixed yet): more than
	 * BUNDLE_SIG_MAX signatures should be refused with -EINVAL ("cannot
	 * be signed"), but the block is encoded into its fixed-size buffer
	 * before the count is checked (a stack overflow), so that call is not
	 * made here. */
	memset(s, 0, sizeof(s));
	ck_assert(asprintf(&missing, "%s/no/such/dir/x.smolmachine", dir) > 0);
	ck_assert_int_eq(bundle_write_signed(&b, missing, s, 1, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "cannot create a file beside it");
	free(missing);
	bundle_close(&b);
	names = dir_names(dir);
	ck_assert_str_eq(names, "a.smolmachine,signed.smolmachine");
	free(names);

	struct img im;
	build_v(&im, sample, NSAMPLE, 2);
	ck_assert_msg(bundle_open_mem(&b, im.d, im.len, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_write_signed(&b, out, s, 1, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "(memory): cannot be signed");
	bundle_close(&b);
	free(im.d);
	build(&im, sample, NSAMPLE);
	free(unit_write_file(dir, "v1.smolmachine", im.d, im.len));
	free(im.d);
	free(path);
	ck_assert(asprintf(&path, "%s/v1.smolmachine", dir) > 0);
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_write_signed(&b, out, s, 1, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "v1.smolmachine: cannot be signed");
	bundle_close(&b);
	/* The signed copy was left alone by all of them. */
	data = unit_read_file(out, &len);
	ck_assert_uint_eq(len, olen);
	free(data);

	free(orig);
	free(out);
	free(path);
	unit_rmdir(dir);
}
END_TEST

/* snapshot_verify: every section and every memory chunk, the part a
 * restore checks only as it reads it. */
START_TEST(test_snapshot_verify)
{
	char *dir = unit_tmpdir(), *path, *buf;
	const struct bundle_section *s;
	struct bundle b;
	struct err e = { "" };
	uint64_t frame, at;
	size_t len;

	path = write_v2(dir, "m.smolmachine");
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_msg(snapshot_verify(&b, &e) == 0, "%s", e.msg);
	s = bundle_find(&b, "memory");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->covered, SNAPMEM_HDR + 3 * SNAPMEM_ENTRY); /* the chunk table */
	ck_assert_uint_lt(s->covered, s->size);
	frame = get64(b.map + s->offset + SNAPMEM_HDR + 2 * SNAPMEM_ENTRY);
	ck_assert_uint_ne(frame, 0);
	at = s->offset + frame + 3;
	bundle_close(&b);

	/* A byte of chunk 2's frame, with the section's XXH3 recomputed (and
	 * the TOC's, the header's): the section's hash still matches; the
	 * chunk's does not. */
	buf = unit_read_file(path, &len);
	buf[at] ^= 0x01;
	unlink(path);
	free(path);
	path = unit_write_file(dir, "m.smolmachine", buf, len);
	free(buf);
	{
		struct img im = { 0 };
		im.d = (uint8_t *)unit_read_file(path, &im.len);
		im.version = 2;
		im.es = BUNDLE_TOC_ENTRY_SIZE;
		im.toc = get64(im.d + 16);
		im.n = get32(im.d + 24);
		for (uint32_t i = 0; i < im.n; i++)
			if (!strcmp((char *)entry(&im, i), "memory"))
				rehash(&im, i, 0);
		unlink(path);
		free(path);
		path = unit_write_file(dir, "m.smolmachine", im.d, im.len);
		free(im.d);
	}
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_verify_all(&b, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(snapshot_verify(&b, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 2 does not match its hash (corrupt or modified)");
	bundle_close(&b);
	free(path);
	unit_rmdir(dir);
}
END_TEST

/* ---- bundle_open: files -------------------------------------------------- */

START_TEST(test_open_files)
{
	char *dir = unit_tmpdir(), *path, *missing;
	struct bundle b;
	struct err e = { "" };
	struct img im;

	ck_assert(asprintf(&missing, "%s/none.smolmachine", dir) > 0);
	ck_assert_int_eq(bundle_open(&b, missing, &e), -ENOENT);
	ck_assert_str_contains(e.msg, missing);
	ck_assert_str_contains(e.msg, "No such file or directory");
	ck_assert_ptr_null(b.path);

	ck_assert_int_eq(bundle_open(&b, dir, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "not a regular file");

	path = unit_write_file(dir, "empty.smolmachine", "", 0);
	ck_assert_int_eq(bundle_open(&b, path, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "empty.smolmachine: 0 bytes, too short to be a bundle");
	unlink(path);
	free(path);

	path = unit_write_file(dir, "script.lua", sample_lua, sizeof(sample_lua) - 1);
	ck_assert_int_eq(bundle_open(&b, path, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "too short");
	unlink(path);
	free(path);

	build(&im, sample, NSAMPLE);
	path = unit_write_file(dir, "cut.smolmachine", im.d, im.len - 100);
	ck_assert_int_eq(bundle_open(&b, path, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "cut.smolmachine: ");
	ck_assert_str_contains(e.msg, "(truncated?)");
	unlink(path);
	free(path);

	path = unit_write_file(dir, "good.smolmachine", im.d, im.len);
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_verify_all(&b, &e), 0);
	ck_assert_str_eq(b.path, path);
	bundle_close(&b);
	ck_assert_int_eq(b.fd, -1);
	unlink(path);
	free(path);

	free(im.d);
	free(missing);
	unit_rmdir(dir);
}
END_TEST

/* ---- bundle_writer ------------------------------------------------------- */

START_TEST(test_writer_refusals)
{
	char *dir = unit_tmpdir(), *path, *bad, name[80];
	struct bundle_writer w;
	struct err e = { "" };
	struct stat st;

	ck_assert(asprintf(&bad, "%s/no/such/dir/x.smolmachine", dir) > 0);
	ck_assert_int_eq(bundle_writer_open(&w, bad, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "cannot create a file beside it");
	ck_assert_str_contains(e.msg, "No such file or directory");

	ck_assert(asprintf(&path, "%s/w.smolmachine", dir) > 0);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_begin(&w, "", SEC_DEVICE, COMP_NONE, 0, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: bad section \"\"");
	memset(name, 'n', 64);
	name[64] = 0;
	ck_assert_int_eq(bundle_section_begin(&w, name, SEC_DEVICE, COMP_NONE, 0, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "bad section");
	name[63] = 0; /* 63 bytes: the longest name */
	ck_assert_int_eq(bundle_add(&w, name, SEC_DEVICE, "x", 1, &e), 0);
	ck_assert_int_eq(bundle_section_write(&w, "x", 1, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: no open section");
	ck_assert_int_eq(bundle_section_end(&w, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: no open section");
	ck_assert_int_eq(bundle_section_begin(&w, "a", SEC_DEVICE, COMP_NONE, 0, &e), 0);
	ck_assert_int_eq(bundle_section_begin(&w, "b", SEC_DEVICE, COMP_NONE, 0, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: bad section \"b\"");
	ck_assert_int_eq(bundle_writer_commit(&w, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: a section is still open");
	bundle_writer_abort(&w);
	/* Nothing was written: neither the target nor the temporary file. */
	ck_assert_int_eq(stat(path, &st), -1);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_int_eq(mkdir(dir, 0700), 0);

	/* The section limit. */
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	for (int i = 0; i < BUNDLE_MAX_SECTIONS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ck_assert_int_eq(bundle_add(&w, name, SEC_DEVICE, NULL, 0, &e), 0);
	}
	ck_assert_int_eq(bundle_add(&w, "one-more", SEC_DEVICE, NULL, 0, &e), -EINVAL);
	ck_assert_str_eq(e.msg, "bundle: bad section \"one-more\"");
	bundle_writer_abort(&w);

	free(bad);
	free(path);
	unit_rmdir(dir);
}
END_TEST

/* An aborted write leaves the previous bundle as it was. */
START_TEST(test_writer_abort_keeps_target)
{
	char *dir = unit_tmpdir(), *path, *data;
	struct bundle_writer w;
	struct err e = { "" };
	size_t len;
	struct stat st;

	path = unit_write_file(dir, "keep.smolmachine", "previous", 8);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(stat(w.tmp_path, &st), 0);
	ck_assert_int_eq(bundle_add(&w, "lua", SEC_LUA, sample_lua, sizeof(sample_lua) - 1, &e), 0);
	bundle_writer_abort(&w);
	data = unit_read_file(path, &len);
	ck_assert_uint_eq(len, 8);
	ck_assert_mem_eq(data, "previous", 8);
	free(data);
	unlink(path);
	free(path);
	ck_assert_int_eq(rmdir(dir), 0); /* no temporary file left */
	free(dir);
}
END_TEST

/* ==== the manifest ======================================================== */

static const char *const base_manifest[] = {
	"; smolvm bundle manifest",
	"[bundle]",
	"format = 1",
	"smolvm = 0.1.0",
	"created = 2026-11-22T13:00:02Z",
	"",
	"[machine]",
	"name = ticker",
	"arch = x86_64",
	"cpus = 1",
	"memory = 67108864",
	"script = /srv/vms/ticker.lua",
	"",
	"[host]",
	"backend = kvm",
	"page_size = 4096",
	"quirks = 1",
	"",
	"[device.uart0]",
	"type = uart",
	"version = 1.0.0",
	"abi = 1.0",
	"state_version = 1",
	NULL,
};

/* The base manifest with `key` of [section] set to `value` (NULL: the
 * line dropped; a key it lacks: added at the end of the section). */
static char *manifest_with(const char *section, const char *key, const char *value)
{
	char *buf = NULL, sec[64] = "";
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int done = 0;

	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; base_manifest[i]; i++) {
		const char *l = base_manifest[i];
		size_t kl = key ? strlen(key) : 0;
		if (l[0] == '[') {
			if (!done && section && !strcmp(sec, section) && value) {
				fprintf(f, "%s = %s\n", key, value);
				done = 1;
			}
			snprintf(sec, sizeof(sec), "%.*s", (int)strcspn(l + 1, "]"), l + 1);
		}
		if (section && !strcmp(sec, section) && !strncmp(l, key, kl) && !strncmp(l + kl, " = ", 3)) {
			if (value)
				fprintf(f, "%s = %s\n", key, value);
			done = 1;
			continue;
		}
		fprintf(f, "%s\n", l);
	}
	if (!done && section && value && !strcmp(sec, section))
		fprintf(f, "%s = %s\n", key, value);
	ck_assert_int_eq(fclose(f), 0);
	return buf;
}

static int parse(const char *text, struct manifest *m, struct err *e)
{
	memset(e, 0, sizeof(*e));
	return manifest_parse(text, strlen(text), m, e);
}

static struct manifest m; /* big: not on the stack */

START_TEST(test_manifest_base)
{
	char *text = manifest_with(NULL, NULL, NULL);
	struct err e;

	ck_assert_msg(parse(text, &m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(m.format, 1);
	ck_assert_str_eq(m.smolvm, "0.1.0");
	ck_assert_str_eq(m.created, "2026-11-22T13:00:02Z");
	ck_assert_str_eq(m.name, "ticker");
	ck_assert_str_eq(m.arch, "x86_64");
	ck_assert_uint_eq(m.cpus, 1);
	ck_assert_uint_eq(m.memory, 64ull << 20);
	ck_assert_str_eq(m.script, "/srv/vms/ticker.lua");
	ck_assert_str_eq(m.backend, "kvm");
	ck_assert_uint_eq(m.page_size, 4096);
	ck_assert_uint_eq(m.quirks, 1);
	ck_assert_uint_eq(m.ndevs, 1);
	ck_assert_str_eq(m.devs[0].name, "uart0");
	ck_assert_str_eq(m.devs[0].type, "uart");
	ck_assert_str_eq(m.devs[0].version, "1.0.0");
	ck_assert_uint_eq(m.devs[0].abi_major, 1);
	ck_assert_uint_eq(m.devs[0].abi_minor, 0);
	ck_assert_uint_eq(m.devs[0].state_version, 1);
	free(text);
}
END_TEST

struct mcase {
	const char *section, *key, *value;
	int rc;
	const char *msg;
};

#define MISSING "manifest: missing format, cpus, memory, arch or backend"
#define LONG42 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define LONG64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct mcase mcases[] = {
	/* every required key */
	{ "bundle", "format", NULL, -EBADMSG, MISSING },
	{ "machine", "cpus", NULL, -EBADMSG, MISSING },
	{ "machine", "memory", NULL, -EBADMSG, MISSING },
	{ "machine", "arch", NULL, -EBADMSG, MISSING },
	{ "host", "backend", NULL, -EBADMSG, MISSING },
	/* a required key in another section does not count */
	{ "host", "arch", "x86_64", 0, NULL },
	/* the format */
	{ "bundle", "format", "2", -EPROTO, "manifest format 2, this smolvm reads 1" },
	{ "bundle", "format", "0", -EPROTO, "manifest format 0, this smolvm reads 1" },
	{ "bundle", "format", "1001", -EBADMSG, "manifest: [bundle] format = \"1001\" is invalid" },
	{ "bundle", "format", "one", -EBADMSG, "[bundle] format = \"one\" is invalid" },
	{ "bundle", "format", "1.0", -EBADMSG, "[bundle] format = \"1.0\" is invalid" },
	{ "bundle", "format", "-1", -EBADMSG, "[bundle] format = \"-1\" is invalid" },
	{ "bundle", "format", "", -EBADMSG, "[bundle] format = \"\" is invalid" },
	/* numbers */
	{ "machine", "cpus", "0", -EBADMSG, "[machine] cpus = \"0\" is invalid" },
	{ "machine", "cpus", "65", -EBADMSG, "[machine] cpus = \"65\" is invalid" },
	{ "machine", "cpus", "2x", -EBADMSG, "[machine] cpus = \"2x\" is invalid" },
	{ "machine", "cpus", "0x2", -EBADMSG, "[machine] cpus = \"0x2\" is invalid" },
	{ "machine", "memory", "64M", -EBADMSG, "[machine] memory = \"64M\" is invalid" },
	{ "machine", "memory", "18446744073709551616", -EBADMSG,
	  "[machine] memory = \"18446744073709551616\" is invalid" },
	{ "host", "page_size", "1073741825", -EBADMSG, "[host] page_size = \"1073741825\" is invalid" },
	{ "host", "page_size", "4k", -EBADMSG, "[host] page_size = \"4k\" is invalid" },
	{ "host", "quirks", "4294967296", -EBADMSG, "[host] quirks = \"4294967296\" is invalid" },
	{ "device.uart0", "state_version", "4294967296", -EBADMSG,
	  "[device.uart0] state_version = \"4294967296\" is invalid" },
	{ "device.uart0", "state_version", "v1", -EBADMSG,
	  "[device.uart0] state_version = \"v1\" is invalid" },
	{ "device.uart0", "abi", "1", -EBADMSG, "[device.uart0] abi = \"1\" is invalid" },
	{ "device.uart0", "abi", "one.zero", -EBADMSG, "[device.uart0] abi = \"one.zero\" is invalid" },
	/* the largest values that fit */
	{ "machine", "cpus", "64", 0, NULL },
	{ "machine", "memory", "18446744073709551615", 0, NULL },
	{ "host", "quirks", "4294967295", 0, NULL },
	/* overlong values */
	{ "machine", "name", LONG64, -EBADMSG, "[machine] name = \"" LONG64 "\" is invalid" },
	{ "machine", "arch", "x86_64-but-longer", -EBADMSG, "[machine] arch = \"x86_64-but-longer\" is invalid" },
	{ "host", "backend", LONG64 "a", -EBADMSG, "[host] backend = \"" LONG64 "\" is invalid" },
	{ "bundle", "smolvm", "0.1.0-with-a-very-long-suffix-xxxx", -EBADMSG, "[bundle] smolvm = " },
	{ "bundle", "created", "2026-11-22T13:00:02Z, a Sunday, in the morning", -EBADMSG, "[bundle] created = " },
	{ "device.uart0", "type", LONG64 "a", -EBADMSG, "[device.uart0] type = \"" LONG64 "\" is invalid" },
	{ "device.uart0", "version", "1.0.0-and-a-long-build-suffix-xx", -EBADMSG, "[device.uart0] version = " },
	/* the longest values that fit */
	{ "machine", "name", LONG64 + 1, 0, NULL },
	{ "host", "backend", LONG64, 0, NULL },
	{ "device.uart0", "type", LONG64, 0, NULL },
	/* a device without a type */
	{ "device.uart0", "type", NULL, -EBADMSG, "manifest: device uart0 has no type" },
	/* unknown keys are tolerated (a newer smolvm may add some) */
	{ "bundle", "compat", "2", 0, NULL },
	{ "machine", "firmware", "none", 0, NULL },
	{ "host", "cpu_vendor", "AuthenticAMD", 0, NULL },
	{ "device.uart0", "flags", "7", 0, NULL },
};

START_TEST(test_manifest_case)
{
	const struct mcase *t = &mcases[_i];
	char *text = manifest_with(t->section, t->key, t->value);
	struct err e;
	int rc = parse(text, &m, &e);

	ck_assert_msg(rc == t->rc, "[%s] %s = %s: rc %d, expected %d (%s)", t->section, t->key,
		      t->value ? t->value : "(none)", rc, t->rc, e.msg);
	if (t->msg)
		ck_assert_str_contains(e.msg, t->msg);
	free(text);
}
END_TEST

static char *concat(const char *a, const char *b)
{
	char *s;
	ck_assert(asprintf(&s, "%s%s", a, b) > 0);
	return s;
}

START_TEST(test_manifest_text)
{
	char *base = manifest_with(NULL, NULL, NULL), *t;
	struct err e;

	/* A NUL byte anywhere. */
	ck_assert_int_eq(manifest_parse(base, strlen(base) + 1, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: contains a NUL byte");

	/* Lines that are not INI. */
	t = concat(base, "this is not ini\n");
	ck_assert_int_eq(parse(t, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: line 24 is not valid INI");
	free(t);
	t = concat("[bundle\n", base);
	ck_assert_int_eq(parse(t, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: line 1 is not valid INI");
	free(t);

	/* Empty, or only comments. */
	ck_assert_int_eq(parse("", &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, MISSING);
	ck_assert_int_eq(parse("; nothing\n# at all\n", &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, MISSING);

	/* A binary blob. */
	ck_assert_int_eq(parse("\x89SMOLVM\n\x01", &m, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "is not valid INI");

	/* A line longer than the INI reader's buffer is refused, not cut. */
	char longline[400];
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "future = ", 9);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = 0;
	t = concat(base, longline);
	ck_assert_int_eq(parse(t, &m, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "is not valid INI");
	free(t);

	/* Unknown sections are tolerated; keys may come in any order; a
	 * section given twice merges. */
	t = concat(base, "\n[future]\nanything = goes\n[device.uart0]\nstate_version = 2\n");
	ck_assert_msg(parse(t, &m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(m.ndevs, 1);
	ck_assert_uint_eq(m.devs[0].state_version, 2);
	free(t);
	free(base);
}
END_TEST

START_TEST(test_manifest_devices)
{
	char *buf = NULL, *text;
	size_t len = 0;
	struct err e;
	FILE *f;

	/* MANIFEST_MAX_DEVICES devices, in order. */
	f = open_memstream(&buf, &len);
	text = manifest_with("device.uart0", "type", NULL); /* drop uart0's type... */
	fputs(text, f);
	fputs("type = uart\n", f); /* ...and give it back */
	free(text);
	for (int i = 1; i < MANIFEST_MAX_DEVICES; i++)
		fprintf(f, "[device.d%d]\ntype = virtio-blk\nstate_version = %d\n", i, i);
	fclose(f);
	ck_assert_msg(parse(buf, &m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(m.ndevs, MANIFEST_MAX_DEVICES);
	ck_assert_str_eq(m.devs[0].name, "uart0");
	ck_assert_str_eq(m.devs[63].name, "d63");
	ck_assert_uint_eq(m.devs[63].state_version, 63);

	/* One more is refused, naming it. */
	text = concat(buf, "[device.d64]\ntype = virtio-blk\n");
	ck_assert_int_eq(parse(text, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: [device.d64] type = \"virtio-blk\" is invalid");
	free(text);
	free(buf);

	/* An empty device name. */
	buf = manifest_with(NULL, NULL, NULL);
	text = concat(buf, "[device.]\ntype = uart\n");
	ck_assert_int_eq(parse(text, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: [device.] type = \"uart\" is invalid");
	free(text);
	/* LIMIT: inih keeps 49 bytes of a section name (its MAX_SECTION is
	 * 50), so the longest device name a manifest carries is 42 bytes, not
	 * the 63 struct manifest_dev has room for; a longer one is cut short
	 * silently and the restore then finds it differs from its script's. */
	text = concat(buf, "[device." LONG42 "]\ntype = uart\n");
	ck_assert_msg(parse(text, &m, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(m.ndevs, 2);
	ck_assert_str_eq(m.devs[1].name, LONG42);
	free(text);
	text = concat(buf, "[device.blk0]\n");
	ck_assert_msg(parse(text, &m, &e) == 0, "%s", e.msg); /* no key, no device */
	ck_assert_uint_eq(m.ndevs, 1);
	free(text);
	/* A device whose section holds only unknown keys has no type. */
	text = concat(buf, "[device.blk0]\ncolour = blue\n");
	ck_assert_int_eq(parse(text, &m, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "manifest: device blk0 has no type");
	free(text);
	free(buf);
}
END_TEST

/* manifest_format's output reads back as what was written. */
static void round_trip(const struct manifest *in)
{
	static struct manifest out;
	char *text = manifest_format(in);
	struct err e;

	ck_assert_ptr_nonnull(text);
	ck_assert_msg(parse(text, &out, &e) == 0, "%s\n%s", e.msg, text);
	ck_assert_str_eq(out.script, in->script);
	ck_assert_str_eq(out.name, in->name);
	ck_assert_str_eq(out.backend, in->backend);
	ck_assert_uint_eq(out.cpus, in->cpus);
	ck_assert_uint_eq(out.memory, in->memory);
	ck_assert_uint_eq(out.page_size, in->page_size);
	ck_assert_uint_eq(out.quirks, in->quirks);
	ck_assert_uint_eq(out.ndevs, in->ndevs);
	for (size_t i = 0; i < in->ndevs; i++) {
		ck_assert_str_eq(out.devs[i].name, in->devs[i].name);
		ck_assert_str_eq(out.devs[i].type, in->devs[i].type);
		ck_assert_str_eq(out.devs[i].version, in->devs[i].version);
		ck_assert_uint_eq(out.devs[i].abi_major, in->devs[i].abi_major);
		ck_assert_uint_eq(out.devs[i].abi_minor, in->devs[i].abi_minor);
		ck_assert_uint_eq(out.devs[i].state_version, in->devs[i].state_version);
	}
	free(text);
}

static void sample_manifest_struct(struct manifest *x)
{
	memset(x, 0, sizeof(*x));
	x->format = 1;
	strcpy(x->smolvm, "0.1.0");
	strcpy(x->created, "2026-11-22T13:00:02Z");
	strcpy(x->name, "ticker");
	strcpy(x->arch, "x86_64");
	x->cpus = 64;
	x->memory = 3ull << 30;
	strcpy(x->script, "/srv/vms/ticker.lua");
	strcpy(x->backend, "kvm");
	x->page_size = 4096;
	x->quirks = 1;
	x->ndevs = 2;
	strcpy(x->devs[0].name, "uart0");
	strcpy(x->devs[0].type, "uart");
	strcpy(x->devs[0].version, "1.0.0");
	x->devs[0].abi_major = 1;
	x->devs[0].abi_minor = 1;
	x->devs[0].state_version = 1;
	strcpy(x->devs[1].name, "virtio-vsock0");
	strcpy(x->devs[1].type, "virtio-vsock");
	strcpy(x->devs[1].version, "0.3.0");
	x->devs[1].abi_major = 1;
	x->devs[1].state_version = 4000000000u;
}

START_TEST(test_manifest_round_trip)
{
	static struct manifest in;

	sample_manifest_struct(&in);
	round_trip(&in);
}
END_TEST

/* BUG (fixed in manifest.c): the script's absolute path is recorded
 * whole, but the INI reader reads lines of at most 199 bytes, so a bundle
 * packed from a script deeper than ~180 bytes of path could never be
 * restored ("manifest: line 13 is not valid INI"). Long values now
 * continue on indented lines. */
START_TEST(test_manifest_long_script_path)
{
	static struct manifest in;
	static const size_t lens[] = { 180, 190, 200, 250, 1000, sizeof(in.script) - 1 };

	sample_manifest_struct(&in);
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t n = lens[k];
		memset(in.script, 0, sizeof(in.script));
		for (size_t i = 0; i < n; i++)
			in.script[i] = i % 50 == 0 ? '/' : (char)('a' + i % 26);
		round_trip(&in);
		/* Spaces and semicolons inside the path, wherever it is cut. */
		for (size_t i = 3; i < n; i += 7)
			in.script[i] = i % 2 ? ' ' : ';';
		in.script[n - 1] = 'z';
		round_trip(&in);
	}
}
END_TEST

/* ==== the memory section ================================================== */

#define MIB (1u << 20)
#define SMEM_SIZE (2 * MIB + MIB / 2) /* chunk 0 data, chunk 1 zero, chunk 2 half */
#define SMEM_TABLE (SNAPMEM_HDR + 3 * SNAPMEM_ENTRY) /* what the section's hash covers */

static uint8_t *smem_mem;  /* the guest RAM it holds */
static uint8_t *smem;      /* a mutable copy of the section */
static size_t smem_len;
static uint32_t smem_entry; /* SNAPMEM_ENTRY, or SNAPMEM_ENTRY_V1 after smem_to_v1() */

static void fill_mem(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 7 + seed) ^ (i >> 9));
}

/* The section as snapmem_write writes it, through a real bundle. */
static void smem_setup(void)
{
	char *dir = unit_tmpdir(), *path;
	struct guest_mem gm;
	struct bundle_writer w;
	struct snapmem_stats st;
	struct bundle b;
	struct err e = { "" };
	const uint8_t *p;

	smem_mem = calloc(1, SMEM_SIZE);
	ck_assert_ptr_nonnull(smem_mem);
	fill_mem(smem_mem, MIB, 1);
	fill_mem(smem_mem + 2 * MIB, MIB / 2, 2);
	memset(&gm, 0, sizeof(gm));
	gm.base = smem_mem;
	gm.size = SMEM_SIZE;
	ck_assert(asprintf(&path, "%s/mem.smolmachine", dir) > 0);
	ck_assert_msg(bundle_writer_open(&w, path, &e) == 0, "%s", e.msg);
	ck_assert_msg(snapmem_write(&w, &gm, NULL, &st, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_writer_commit(&w, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st.chunks, 3);
	ck_assert_uint_eq(st.zero_chunks, 1);

	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_str_eq(b.secs[0].name, "memory");
	ck_assert_uint_eq(b.secs[0].type, SEC_MEMORY);
	ck_assert_uint_eq(b.secs[0].compression, COMP_ZSTD);
	ck_assert_uint_eq(b.secs[0].raw_size, SMEM_SIZE);
	ck_assert_uint_eq(b.secs[0].covered, SMEM_TABLE);
	ck_assert_int_eq(bundle_section_data(&b, &b.secs[0], &p, &e), 0);
	smem_len = b.secs[0].size;
	smem = malloc(smem_len + MIB); /* room to append frames */
	ck_assert_ptr_nonnull(smem);
	memcpy(smem, p, smem_len);
	smem_entry = SNAPMEM_ENTRY;
	bundle_close(&b);
	unlink(path);
	free(path);
	unit_rmdir(dir);
}

static void smem_teardown(void)
{
	free(smem_mem);
	free(smem);
	smem = smem_mem = NULL;
}

static uint8_t *ent(uint32_t i)
{
	return smem + SNAPMEM_HDR + (size_t)i * smem_entry;
}

/* What the section's hash covers: its chunk table (version 2); the whole
 * section (version 1, whose chunks carry no hashes). */
static uint64_t smem_covered(void)
{
	return smem_entry == SNAPMEM_ENTRY ? SMEM_TABLE : smem_len;
}

/* Chunk i's hash, of its frame as it now is (version 2). */
static void rehash_chunk(uint32_t i)
{
	if (smem_entry == SNAPMEM_ENTRY)
		blake2b(ent(i) + 16, smem + get64(ent(i)), get32(ent(i) + 8));
}

/* The same memory as a version 1 section (format 1 bundles): 16-byte
 * entries without hashes, the frames moved up. */
static void smem_to_v1(void)
{
	size_t shrink = 3 * (SNAPMEM_ENTRY - SNAPMEM_ENTRY_V1);
	uint8_t *v1 = malloc(smem_len + MIB);

	ck_assert_ptr_nonnull(v1);
	ck_assert_uint_eq(smem_entry, SNAPMEM_ENTRY);
	memcpy(v1, smem, SNAPMEM_HDR);
	put32(v1 + 4, 1);
	for (uint32_t i = 0; i < 3; i++) {
		uint8_t *e = v1 + SNAPMEM_HDR + i * SNAPMEM_ENTRY_V1;
		uint64_t off = get64(ent(i));
		put64(e, off ? off - shrink : 0);
		put32(e + 8, get32(ent(i) + 8));
		put32(e + 12, 0);
	}
	memcpy(v1 + SNAPMEM_HDR + 3 * SNAPMEM_ENTRY_V1, smem + SMEM_TABLE, smem_len - SMEM_TABLE);
	smem_len -= shrink;
	free(smem);
	smem = v1;
	smem_entry = SNAPMEM_ENTRY_V1;
}

/* Appends a zstd frame of `len` bytes of `src` and points chunk i at it
 * (with its hash: the frame is well formed, only its size may be wrong). */
static void point_chunk_at(uint32_t i, const void *src, size_t len)
{
	size_t bound = ZSTD_compressBound(len), n;
	uint8_t *frame = malloc(bound);

	ck_assert_ptr_nonnull(frame);
	n = ZSTD_compress(frame, bound, src, len, 1);
	ck_assert(!ZSTD_isError(n));
	smem = realloc(smem, smem_len + n);
	ck_assert_ptr_nonnull(smem);
	memcpy(smem + smem_len, frame, n);
	put64(ent(i), smem_len);
	put32(ent(i) + 8, (uint32_t)n);
	rehash_chunk(i);
	smem_len += n;
	free(frame);
}

static int smem_read(uint64_t mem_size, struct err *e)
{
	uint8_t *dst = calloc(1, mem_size ? mem_size : 1);
	int rc;

	ck_assert_ptr_nonnull(dst);
	memset(e, 0, sizeof(*e));
	rc = snapmem_read(smem, smem_len, smem_covered(), dst, mem_size, 2, e);
	free(dst);
	return rc;
}

/* Version 2 as written, and the same memory as version 1 (_i). */
START_TEST(test_smem_good)
{
	uint8_t *dst = malloc(SMEM_SIZE);
	uint64_t size = 0;
	struct err e = { "" };
	struct snapmem_view v;
	const uint8_t *frame;
	uint32_t flen;

	ck_assert_ptr_nonnull(dst);
	if (_i == 1)
		smem_to_v1();
	ck_assert_int_eq(memcmp(smem, "SMEM", 4), 0);
	ck_assert_uint_eq(get32(smem + 4), _i == 1 ? 1 : SNAPMEM_VERSION);
	ck_assert_int_eq(snapmem_size(smem, smem_len, &size, &e), 0);
	ck_assert_uint_eq(size, SMEM_SIZE);
	ck_assert_uint_eq(get64(ent(1)), 0); /* the zero chunk is not stored */
	for (unsigned threads = 0; threads <= 4; threads++) {
		memset(dst, 0, SMEM_SIZE);
		ck_assert_msg(snapmem_read(smem, smem_len, smem_covered(), dst, SMEM_SIZE, threads,
					   &e) == 0, "%s", e.msg);
		ck_assert_int_eq(memcmp(dst, smem_mem, SMEM_SIZE), 0);
	}
	ck_assert_msg(snapmem_verify(smem, smem_len, smem_covered(), &e) == 0, "%s", e.msg);

	/* One chunk at a time. */
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	ck_assert_ptr_nonnull(dc);
	ck_assert_msg(snapmem_open(smem, smem_len, smem_covered(), &v, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(v.nchunks, 3);
	ck_assert_uint_eq(v.mem_size, SMEM_SIZE);
	ck_assert_uint_eq(v.entry, _i == 1 ? SNAPMEM_ENTRY_V1 : SNAPMEM_ENTRY);
	ck_assert_uint_eq(snapmem_chunk_len(&v, 0), MIB);
	ck_assert_uint_eq(snapmem_chunk_len(&v, 2), MIB / 2);
	ck_assert_int_eq(snapmem_chunk_zero(&v, 0), 0);
	ck_assert_int_eq(snapmem_chunk_zero(&v, 1), 1);
	snapmem_chunk_frame(&v, 1, &frame, &flen);
	ck_assert_ptr_null(frame);
	ck_assert_uint_eq(flen, 0);
	snapmem_chunk_frame(&v, 2, &frame, &flen);
	ck_assert_ptr_eq(frame, smem + get64(ent(2)));
	ck_assert_uint_eq(flen, get32(ent(2) + 8));
	for (uint32_t i = 0; i < 3; i++) {
		memset(dst, 0xaa, MIB);
		ck_assert_msg(snapmem_chunk_read(&v, i, dc, dst, &e) == 0, "%s", e.msg);
		ck_assert_int_eq(memcmp(dst, smem_mem + (size_t)i * MIB, snapmem_chunk_len(&v, i)), 0);
	}
	ZSTD_freeDCtx(dc);
	free(dst);
}
END_TEST

struct smem_breakage {
	const char *what;
	void (*apply)(void);
	const char *msg;
	unsigned versions;
};

static void s_short(void) { smem_len = SNAPMEM_HDR - 1; }
static void s_magic(void) { smem[0] = 'Z'; }
static void s_version0(void) { put32(smem + 4, 0); }
static void s_version4(void) { put32(smem + 4, 4); }
static void s_chunk_size(void) { put32(smem + 16, 4096); }
static void s_too_big(void) { put64(smem + 8, SNAPMEM_MAX_SIZE + MIB); put32(smem + 20, (SNAPMEM_MAX_SIZE + MIB) / MIB); }
static void s_more_chunks(void) { put32(smem + 20, 4); }
static void s_fewer_chunks(void) { put32(smem + 20, 2); }
static void s_size_grown(void) { put64(smem + 8, SMEM_SIZE + MIB); }
static void s_size_shrunk(void) { put64(smem + 8, SMEM_SIZE - MIB); }
static void s_table_cut(void) { smem_len = SNAPMEM_HDR + 3 * smem_entry - 1; }
static void s_table_huge(void) { put64(smem + 8, MEM_MAX_SIZE); put32(smem + 20, MEM_MAX_SIZE / MIB); }
static void s_reserved(void) { put32(ent(0) + 12, 1); }
static void s_zero_with_len(void) { put32(ent(1) + 8, 5); }
static void s_stored_empty(void) { put32(ent(2) + 8, 0); }
static void s_in_table(void) { put64(ent(0), SNAPMEM_HDR); }
static void s_in_table_end(void) { put64(ent(0), SNAPMEM_HDR + 3 * smem_entry - 1); }
static void s_past_end(void) { put64(ent(2), smem_len + 1); }
static void s_len_past_end(void) { put32(ent(2) + 8, get32(ent(2) + 8) + 1); }
static void s_off_huge(void) { put64(ent(0), UINT64_MAX); }
static void s_len_huge(void) { put32(ent(0) + 8, UINT32_MAX); }
/* Version 2: a zero chunk has no frame, so no hash. */
static void s_zero_with_hash(void) { ent(1)[16 + 31] = 1; }
static void s_zero_with_hash_first(void) { ent(1)[16] = 0x80; }
/* Version 3 (a child's): only flag 1, "in the parent", with a size and
 * a hash of the parent's frame but no offset of its own. */
static void s_v3_flag2(void) { put32(smem + 4, 3); put32(ent(0) + 12, 2); }
static void s_v3_parent_offset(void) { put32(smem + 4, 3); put32(ent(0) + 12, 1); }
static void s_v3_parent_no_len(void)
{
	put32(smem + 4, 3);
	put32(ent(0) + 12, 1);
	put64(ent(0), 0);
	put32(ent(0) + 8, 0);
}
static void s_v3_parent_no_hash(void)
{
	put32(smem + 4, 3);
	put32(ent(0) + 12, 1);
	put64(ent(0), 0);
	memset(ent(0) + 16, 0, 32);
}
/* A version 2 table relabelled version 1: its hash covers only the
 * table, which version 1 does not allow (and the entries misread). */
static void s_relabelled_v1(void) { put32(smem + 4, 1); }

static const struct smem_breakage smem_breakages[] = {
	{ "23 bytes", s_short, "memory section: bad header", ALL },
	{ "magic", s_magic, "memory section: bad header", ALL },
	{ "version 0", s_version0, "memory section: bad header (version 0)", ALL },
	{ "version 4", s_version4, "memory section: bad header (version 4)", ALL },
	{ "4 KiB chunks", s_chunk_size, "memory section: bad header", ALL },
	{ "over SNAPMEM_MAX_SIZE", s_too_big, "chunks is inconsistent", ALL },
	{ "4 chunks", s_more_chunks, "memory section: 2621440 bytes in 4 chunks is inconsistent", ALL },
	{ "2 chunks", s_fewer_chunks, "memory section: 2621440 bytes in 2 chunks is inconsistent", ALL },
	{ "size beyond the chunks", s_size_grown, "3670016 bytes in 3 chunks is inconsistent", ALL },
	{ "chunks beyond the size", s_size_shrunk, "1572864 bytes in 3 chunks is inconsistent", ALL },
	{ "chunk table cut", s_table_cut, "memory section: chunk table truncated", ALL },
	{ "3 GiB table", s_table_huge, "memory section: chunk table truncated", ALL },
	{ "reserved field", s_reserved, "memory section: chunk 0 out of range", ALL },
	{ "zero chunk with bytes", s_zero_with_len, "memory section: chunk 1 out of range", ALL },
	{ "stored chunk of 0 bytes", s_stored_empty, "memory section: chunk 2 out of range", ALL },
	{ "frame in the table", s_in_table, "memory section: chunk 0 out of range", ALL },
	{ "frame at the table's last byte", s_in_table_end, "memory section: chunk 0 out of range", ALL },
	{ "frame past the end", s_past_end, "memory section: chunk 2 out of range", ALL },
	{ "frame over the end", s_len_past_end, "memory section: chunk 2 out of range", ALL },
	{ "offset 2^64-1", s_off_huge, "memory section: chunk 0 out of range", ALL },
	{ "length 2^32-1", s_len_huge, "memory section: chunk 0 out of range", ALL },
	{ "zero chunk with a hash", s_zero_with_hash, "memory section: chunk 1 out of range", V2 },
	{ "zero chunk with a hash (first byte)", s_zero_with_hash_first, "memory section: chunk 1 out of range", V2 },
	{ "version 3, flag 2", s_v3_flag2, "memory section: chunk 0 out of range", V2 },
	{ "in the parent, with an offset", s_v3_parent_offset, "memory section: chunk 0 out of range", V2 },
	{ "in the parent, no size", s_v3_parent_no_len, "memory section: chunk 0 out of range", V2 },
	{ "in the parent, no hash", s_v3_parent_no_hash, "memory section: chunk 0 out of range", V2 },
	{ "version 2 table read as version 1", s_relabelled_v1,
	  "memory section: its chunks are not covered by its hash", V2 },
};

/* Refused by every reader before anything is decompressed. */
static void smem_table_refused(const struct smem_breakage *t, unsigned version)
{
	uint64_t size = 12345;
	struct snapmem_view v;
	struct err e = { "" };

	if (!(t->versions & version))
		return;
	if (version == V1)
		smem_to_v1();
	t->apply();
	if (t->apply != s_relabelled_v1) {
		ck_assert_int_eq(snapmem_size(smem, smem_len, &size, &e), -EBADMSG);
		ck_assert_str_contains(e.msg, t->msg);
		ck_assert_uint_eq(size, 12345); /* untouched */
	}
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, t->msg);
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(snapmem_open(smem, smem_len, smem_covered(), &v, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, t->msg);
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(snapmem_verify(smem, smem_len, smem_covered(), &e), -EBADMSG);
	ck_assert_str_contains(e.msg, t->msg);
}

START_TEST(test_smem_table_refused) { smem_table_refused(&smem_breakages[_i], V2); }
END_TEST

START_TEST(test_smem_table_refused_v1) { smem_table_refused(&smem_breakages[_i], V1); }
END_TEST

/* What the caller verified (the section's hash covers) against what the
 * section needs. */
START_TEST(test_smem_covered)
{
	struct snapmem_view v;
	struct err e = { "" };

	/* Version 2: the table, or more, is enough. */
	static const uint64_t ok[] = { SMEM_TABLE, SMEM_TABLE + 1, 0 /* smem_len */ };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t c = ok[i] ? ok[i] : smem_len;
		ck_assert_msg(snapmem_open(smem, smem_len, c, &v, &e) == 0, "%s", e.msg);
		ck_assert_msg(snapmem_verify(smem, smem_len, c, &e) == 0, "%s", e.msg);
	}
	/* Less than the table: its hashes are not vouched for. */
	static const uint64_t short_of[] = { SMEM_TABLE - 1, SNAPMEM_HDR, 0 };
	for (size_t i = 0; i < sizeof(short_of) / sizeof(short_of[0]); i++) {
		uint8_t *dst = calloc(1, SMEM_SIZE);
		ck_assert_ptr_nonnull(dst);
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(snapmem_open(smem, smem_len, short_of[i], &v, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(snapmem_read(smem, smem_len, short_of[i], dst, SMEM_SIZE, 1, &e),
				 -EBADMSG);
		ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(snapmem_verify(smem, smem_len, short_of[i], &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
		free(dst);
	}

	/* Version 1: all of it, or it is refused. */
	smem_to_v1();
	ck_assert_msg(snapmem_open(smem, smem_len, smem_len, &v, &e) == 0, "%s", e.msg);
	static const uint64_t v1_short[] = { 1, SNAPMEM_HDR + 3 * SNAPMEM_ENTRY_V1, 0 };
	for (size_t i = 0; i < sizeof(v1_short) / sizeof(v1_short[0]); i++) {
		uint64_t c = v1_short[i] ? smem_len - v1_short[i] : 0;
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(snapmem_open(smem, smem_len, c, &v, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(snapmem_verify(smem, smem_len, c, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
	}
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), 0);
}
END_TEST

/* Version 2: a stored chunk whose frame does not match its hash, found by
 * every reader, naming the chunk, before it is decompressed. */
static void expect_chunk_refused(uint32_t bad, const char *what)
{
	char want[128];
	struct snapmem_view v;
	struct err e = { "" };
	uint8_t *dst = malloc(MIB);
	ZSTD_DCtx *dc = ZSTD_createDCtx();

	ck_assert(dst && dc);
	snprintf(want, sizeof(want), "memory section: chunk %u does not match its hash "
		 "(corrupt or modified)", bad);
	ck_assert_msg(smem_read(SMEM_SIZE, &e) == -EBADMSG, "%s: %s", what, e.msg);
	ck_assert_str_eq(e.msg, want);
	memset(&e, 0, sizeof(e));
	ck_assert_int_eq(snapmem_verify(smem, smem_len, SMEM_TABLE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, want);
	/* The view opens (its table is fine); that chunk alone is refused. */
	ck_assert_msg(snapmem_open(smem, smem_len, SMEM_TABLE, &v, &e) == 0, "%s", e.msg);
	for (uint32_t i = 0; i < 3; i++) {
		memset(&e, 0, sizeof(e));
		int rc = snapmem_chunk_read(&v, i, dc, dst, &e);
		if (i == bad) {
			ck_assert_int_eq(rc, -EBADMSG);
			ck_assert_str_eq(e.msg, want);
		} else {
			ck_assert_msg(rc == 0, "%s: chunk %u: %s", what, i, e.msg);
		}
	}
	ZSTD_freeDCtx(dc);
	free(dst);
}

START_TEST(test_smem_hash_refused)
{
	uint8_t *frame0 = smem + get64(ent(0)), *frame2 = smem + get64(ent(2));
	uint32_t len0 = get32(ent(0) + 8), len2 = get32(ent(2) + 8);

	/* One bit of a frame: its first byte, the middle, its last. */
	static const int where[] = { 0, 1, 2 };
	for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
		uint32_t at = where[k] == 0 ? 0 : where[k] == 1 ? len0 / 2 : len0 - 1;
		frame0[at] ^= 0x10;
		expect_chunk_refused(0, "frame 0");
		frame0[at] ^= 0x10;
	}
	frame2[len2 / 3] ^= 0x01;
	expect_chunk_refused(2, "frame 2");
	frame2[len2 / 3] ^= 0x01;

	/* Its hash in the table (the section's hash covers that). */
	ent(2)[16 + 5] ^= 0x02;
	expect_chunk_refused(2, "hash of chunk 2");
	ent(2)[16 + 5] ^= 0x02;

	/* A frame that decompresses to the right bytes but is not the one
	 * that was hashed: another encoding of chunk 0. */
	{
		size_t bound = ZSTD_compressBound(MIB), n;
		uint8_t *f = malloc(bound);
		ck_assert_ptr_nonnull(f);
		n = ZSTD_compress(f, bound, smem_mem, MIB, 3);
		ck_assert(!ZSTD_isError(n));
		memcpy(smem + smem_len, f, n);
		put64(ent(0), smem_len);
		put32(ent(0) + 8, (uint32_t)n);
		smem_len += n;
		free(f);
		expect_chunk_refused(0, "re-encoded chunk 0");
		rehash_chunk(0);
		struct err e;
		ck_assert_msg(smem_read(SMEM_SIZE, &e) == 0, "%s", e.msg);
	}

	/* Two chunks pointing at the same frame: each checked against its own
	 * hash. */
	put64(ent(2), get64(ent(0)));
	put32(ent(2) + 8, get32(ent(0) + 8));
	expect_chunk_refused(2, "chunk 2 at chunk 0's frame");
}
END_TEST

/* Frames that match their hashes (recomputed here) but are not what the
 * chunk needs; and version 1, which has no hashes, the same. */
START_TEST(test_smem_frames_refused)
{
	static uint8_t big[2 * MIB];
	uint8_t *frame0;
	struct err e;

	if (_i == 1)
		smem_to_v1();
	frame0 = smem + get64(ent(0));
	uint32_t len0 = get32(ent(0) + 8);

	/* Not the size the guest had. */
	ck_assert_int_eq(smem_read(SMEM_SIZE + 4096, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section holds 2621440 bytes, expected 2625536");
	ck_assert_int_eq(smem_read(SMEM_SIZE - 4096, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "expected 2617344");

	/* Garbage instead of a zstd frame. */
	memset(frame0, 0x5a, len0);
	rehash_chunk(0);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not decompress");
	smem_teardown();
	smem_setup();
	if (_i == 1)
		smem_to_v1();

	/* One flipped bit: the frame's content checksum. */
	frame0 = smem + get64(ent(0));
	frame0[get32(ent(0) + 8) / 2] ^= 0x10;
	rehash_chunk(0);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not decompress");
	smem_teardown();
	smem_setup();
	if (_i == 1)
		smem_to_v1();
	frame0 = smem + get64(ent(0));
	frame0[get32(ent(0) + 8) - 1] ^= 0x01; /* the checksum itself */
	rehash_chunk(0);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not decompress");
	smem_teardown();
	smem_setup();
	if (_i == 1)
		smem_to_v1();

	/* A frame cut short (the table says fewer bytes). */
	put32(ent(2) + 8, get32(ent(2) + 8) - 1);
	rehash_chunk(2);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 2 does not decompress");
	smem_teardown();
	smem_setup();
	if (_i == 1)
		smem_to_v1();

	/* Well-formed frames of the wrong size: less than a chunk, more than
	 * a chunk, a whole chunk where only half of one is left. */
	point_chunk_at(0, big, 4096);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not decompress");
	point_chunk_at(0, big, MIB + 1);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not decompress");
	point_chunk_at(0, smem_mem, MIB); /* chunk 0 fine again */
	point_chunk_at(2, big, MIB);
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 2 does not decompress");
	point_chunk_at(1, big, 2 * MIB); /* a zero chunk stored, too long */
	ck_assert_int_eq(smem_read(SMEM_SIZE, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "does not decompress");

	/* And the exact sizes are accepted, stored zero chunk included. */
	point_chunk_at(1, big, MIB);
	point_chunk_at(2, smem_mem + 2 * MIB, MIB / 2);
	ck_assert_msg(smem_read(SMEM_SIZE, &e) == 0, "%s", e.msg);
	ck_assert_msg(snapmem_verify(smem, smem_len, smem_covered(), &e) == 0, "%s", e.msg);
}
END_TEST

/* ---- the memory cache ------------------------------------------------------ */

/* Writes smem as the memory section of a bundle at path, its hash
 * covering the chunk table only (as snapmem_write does) or, with
 * `whole`, all of it. */
static void write_smem_bundle(const char *path, int whole)
{
	struct bundle_writer w;
	struct err e = { "" };

	ck_assert_int_eq(bundle_writer_open(&w, path, &e), 0);
	ck_assert_int_eq(bundle_section_begin(&w, "memory", SEC_MEMORY, COMP_ZSTD, SMEM_SIZE, &e), 0);
	if (whole) {
		ck_assert_int_eq(bundle_section_write(&w, smem, smem_len, &e), 0);
	} else {
		ck_assert_int_eq(bundle_section_write(&w, smem, SMEM_TABLE, &e), 0);
		bundle_section_seal_head(&w);
		ck_assert_int_eq(bundle_section_write(&w, smem + SMEM_TABLE, smem_len - SMEM_TABLE,
						      &e), 0);
	}
	ck_assert_int_eq(bundle_section_end(&w, &e), 0);
	ck_assert_int_eq(bundle_writer_commit(&w, &e), 0);
}

/* A bundle whose memory section is well formed to the container (its
 * hash matches) but whose chunks do not: one that does not match its hash,
 * one that does (recomputed) but does not decompress. */
START_TEST(test_cache_refuses_bad_memory)
{
	char *dir = unit_tmpdir(), *cache, *path;
	const char *old = getenv("SMOLVM_CACHE_DIR");
	char *saved = old ? strdup(old) : NULL;
	struct cache_result r;
	struct bundle b;
	struct err e = { "" };
	struct stat st;
	uint8_t *img;

	ck_assert(asprintf(&cache, "%s/cache", dir) > 0);
	ck_assert(asprintf(&path, "%s/bad.smolmachine", dir) > 0);
	setenv("SMOLVM_CACHE_DIR", cache, 1);
	memset(smem + get64(ent(2)), 0, get32(ent(2) + 8));
	for (int pass = 0; pass < 4; pass++) {
		int rehashed = pass >= 2, whole = pass & 1;
		if (pass == 2)
			rehash_chunk(2);
		write_smem_bundle(path, whole);
		ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(b.secs[0].covered, whole ? smem_len : SMEM_TABLE);
		e.msg[0] = 0;
		ck_assert_int_eq(cache_memory(&b, &b.secs[0], NULL, SMEM_SIZE, &r, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, rehashed ? "memory section: chunk 2 does not decompress"
						 : "memory section: chunk 2 does not match its hash "
						   "(corrupt or modified)");
		ck_assert_int_eq(r.fd, -1);
		/* Nothing half-made is left in the cache. */
		ck_assert_int_eq(stat(cache, &st), 0);
		ck_assert_int_eq(rmdir(cache), 0);
		bundle_close(&b);
	}

	/* A flipped bit in the chunk table: the section's hash. */
	size_t len;
	img = (uint8_t *)unit_read_file(path, &len);
	img[BUNDLE_HEADER_SIZE + 100] ^= 0x08;
	unlink(path);
	free(unit_write_file(dir, "bad.smolmachine", img, len));
	free(img);
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(cache_memory(&b, &b.secs[0], NULL, SMEM_SIZE, &r, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section memory does not match its hash (corrupt or modified)");
	ck_assert_int_eq(rmdir(cache), 0);
	bundle_close(&b);

	unlink(path);
	free(path);
	free(cache);
	unit_rmdir(dir);
	if (saved)
		setenv("SMOLVM_CACHE_DIR", saved, 1);
	else
		unsetenv("SMOLVM_CACHE_DIR");
	free(saved);
}
END_TEST

START_TEST(test_cache_good_memory)
{
	char *dir = unit_tmpdir(), *path, *names, want[200], hex[2 * BUNDLE_HASH_SIZE + 1];
	const char *old = getenv("SMOLVM_CACHE_DIR");
	char *saved = old ? strdup(old) : NULL;
	struct cache_result r;
	struct bundle b;
	struct err e = { "" };
	uint8_t *img = malloc(SMEM_SIZE);

	ck_assert_ptr_nonnull(img);
	ck_assert(asprintf(&path, "%s/good.smolmachine", dir) > 0);
	setenv("SMOLVM_CACHE_DIR", dir, 1);
	write_smem_bundle(path, 0);
	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	for (int hit = 0; hit < 2; hit++) {
		ck_assert_msg(cache_memory(&b, &b.secs[0], NULL, SMEM_SIZE, &r, &e) == 0, "%s", e.msg);
		ck_assert_int_eq(r.hit, hit);
		ck_assert_int_eq(pread(r.fd, img, SMEM_SIZE, 0), SMEM_SIZE);
		ck_assert_int_eq(memcmp(img, smem_mem, SMEM_SIZE), 0);
		close(r.fd);
	}
	/* Format 2: the image is named by what it holds (every chunk's hash). */
	struct snapmem_view v;
	uint8_t id[BUNDLE_HASH_SIZE];
	ck_assert_msg(snapmem_open(b.map + b.secs[0].offset, b.secs[0].size, b.secs[0].covered, &v,
				   &e) == 0, "%s", e.msg);
	ck_assert_int_eq(snapmem_content_id(&v, id), 0);
	sodium_bin2hex(hex, sizeof(hex), id, BUNDLE_HASH_SIZE);
	snprintf(want, sizeof(want), "good.smolmachine,mem-%s-%u.raw", hex, SMEM_SIZE);
	names = dir_names(dir);
	ck_assert_str_eq(names, want);
	free(names);
	bundle_close(&b);
	free(img);
	unlink(path);
	free(path);
	unit_rmdir(dir); /* the image and the bundle */
	if (saved)
		setenv("SMOLVM_CACHE_DIR", saved, 1);
	else
		unsetenv("SMOLVM_CACHE_DIR");
	free(saved);
}
END_TEST

/* No usable cache directory: the image goes to a memfd instead, with the
 * same refusals. */
START_TEST(test_cache_without_dir)
{
	char *dir = unit_tmpdir(), *path, *file;
	const char *old = getenv("SMOLVM_CACHE_DIR");
	char *saved = old ? strdup(old) : NULL, *cache;
	struct cache_result r;
	struct bundle b;
	struct err e = { "" };
	uint8_t *img = malloc(SMEM_SIZE);

	ck_assert_ptr_nonnull(img);
	file = unit_write_file(dir, "a-file", "x", 1);
	ck_assert(asprintf(&cache, "%s/cache", file) > 0); /* under a file: mkdir fails */
	setenv("SMOLVM_CACHE_DIR", cache, 1);
	ck_assert(asprintf(&path, "%s/m.smolmachine", dir) > 0);
	for (int bad = 0; bad < 3; bad++) {
		if (bad)
			memset(smem + get64(ent(0)), 0xee, 16);
		if (bad == 2)
			rehash_chunk(0);
		write_smem_bundle(path, 0);
		ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
		e.msg[0] = 0;
		if (!bad) {
			ck_assert_msg(cache_memory(&b, &b.secs[0], NULL, SMEM_SIZE, &r, &e) == 0, "%s", e.msg);
			ck_assert_int_eq(r.hit, 0);
			ck_assert_int_eq(pread(r.fd, img, SMEM_SIZE, 0), SMEM_SIZE);
			ck_assert_int_eq(memcmp(img, smem_mem, SMEM_SIZE), 0);
			close(r.fd);
		} else {
			ck_assert_int_eq(cache_memory(&b, &b.secs[0], NULL, SMEM_SIZE, &r, &e), -EBADMSG);
			ck_assert_str_eq(e.msg, bad == 1 ? "memory section: chunk 0 does not match its "
							   "hash (corrupt or modified)"
							 : "memory section: chunk 0 does not decompress");
			ck_assert_int_eq(r.fd, -1);
		}
		bundle_close(&b);
	}
	free(img);
	unlink(path);
	free(path);
	free(cache);
	free(file);
	unit_rmdir(dir);
	if (saved)
		setenv("SMOLVM_CACHE_DIR", saved, 1);
	else
		unsetenv("SMOLVM_CACHE_DIR");
	free(saved);
}
END_TEST

Suite *bundle_suite(void)
{
	Suite *s = suite_create("bundle");
	TCase *tc;

	tc = tcase_create("container");
	tcase_add_loop_test(tc, test_sample_opens, 1, 3);
	tcase_add_test(tc, test_writer_matches_format);
	tcase_add_loop_test(tc, test_no_sections_opens, 1, 3);
	tcase_add_loop_test(tc, test_toc_order_free, 1, 3);
	tcase_add_loop_test(tc, test_broken_refused, 0, NBREAKAGES);
	tcase_add_loop_test(tc, test_broken_refused_v2, 0, NBREAKAGES);
	tcase_add_loop_test(tc, test_section_limit, 1, 3);
	tcase_add_test(tc, test_section_checksum);
	tcase_add_test(tc, test_section_hash);
	tcase_add_test(tc, test_section_covered);
	tcase_add_test(tc, test_open_files);
	suite_add_tcase(s, tc);

	tc = tcase_create("signature");
	tcase_add_test(tc, test_signed_message);
	tcase_add_test(tc, test_signature_valid);
	tcase_add_test(tc, test_write_signed);
	tcase_add_test(tc, test_snapshot_verify);
	tcase_add_test(tc, test_disk_section);
	suite_add_tcase(s, tc);

	tc = tcase_create("writer");
	tcase_add_test(tc, test_writer_refusals);
	tcase_add_test(tc, test_writer_abort_keeps_target);
	suite_add_tcase(s, tc);

	tc = tcase_create("manifest");
	tcase_add_test(tc, test_manifest_base);
	tcase_add_loop_test(tc, test_manifest_case, 0, (int)(sizeof(mcases) / sizeof(mcases[0])));
	tcase_add_test(tc, test_manifest_text);
	tcase_add_test(tc, test_manifest_devices);
	tcase_add_test(tc, test_manifest_round_trip);
	tcase_add_test(tc, test_manifest_long_script_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_checked_fixture(tc, smem_setup, smem_teardown);
	tcase_add_loop_test(tc, test_smem_good, 1, 3);
	tcase_add_loop_test(tc, test_smem_table_refused, 0,
			    (int)(sizeof(smem_breakages) / sizeof(smem_breakages[0])));
	tcase_add_loop_test(tc, test_smem_table_refused_v1, 0,
			    (int)(sizeof(smem_breakages) / sizeof(smem_breakages[0])));
	tcase_add_test(tc, test_smem_covered);
	tcase_add_test(tc, test_smem_hash_refused);
	tcase_add_loop_test(tc, test_smem_frames_refused, 1, 3);
	tcase_add_test(tc, test_cache_refuses_bad_memory);
	tcase_add_test(tc, test_cache_good_memory);
	tcase_add_test(tc, test_cache_without_dir);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}
