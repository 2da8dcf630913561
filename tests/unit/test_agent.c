/* sdk/src/agent_proto.c: the guest agent protocol's codec. Every message
 * through its encoder, the decoder (whole, one byte at a time, in odd
 * chunks) and its parser; then headers, payloads and arguments that must
 * be refused. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smolvm/agent.h>

#include "unit.h"

#define FRAME_MAX (SMOLVM_AGENT_HEADER + SMOLVM_AGENT_MAX_PAYLOAD)

static struct smolvm_agent_decoder dec;
static struct smolvm_agent_exec ex;
static uint8_t frame[FRAME_MAX + 16];
static uint8_t copy[FRAME_MAX + 16];

/* Decodes one whole frame that fills buf[0..n). */
static struct smolvm_agent_msg decode_one(const uint8_t *buf, long n)
{
	struct smolvm_agent_msg m;
	size_t used;

	ck_assert_int_gt(n, 0);
	smolvm_agent_decoder_init(&dec);
	ck_assert_int_eq(smolvm_agent_feed(&dec, buf, (size_t)n, &used, &m), 1);
	ck_assert_uint_eq(used, (size_t)n);
	ck_assert_uint_eq(m.len, (size_t)n - SMOLVM_AGENT_HEADER);
	return m;
}

/* A message with a payload of our own (for hand-made payloads). */
static struct smolvm_agent_msg raw(uint8_t type, const void *p, size_t len)
{
	struct smolvm_agent_msg m = { .type = type, .len = (uint32_t)len, .payload = copy };

	memcpy(copy, p, len);
	return m;
}

/* ---- round trips ---------------------------------------------------------- */

START_TEST(test_header)
{
	uint8_t h[SMOLVM_AGENT_HEADER];
	const uint8_t want[] = { 0x04, 0x03, 0x02, 0x01, SMOLVM_AGENT_DATA, 0, 0, 0 };

	smolvm_agent_header(h, SMOLVM_AGENT_DATA, 0x01020304);
	ck_assert_mem_eq(h, want, sizeof(want));
}
END_TEST

START_TEST(test_hello)
{
	long n = smolvm_agent_build_hello(frame, sizeof(frame), "smolvm-agent");
	struct smolvm_agent_msg m = decode_one(frame, n);
	uint32_t version;
	const char *name;

	ck_assert_int_eq(n, SMOLVM_AGENT_HEADER + 4 + 13);
	ck_assert_int_eq(m.type, SMOLVM_AGENT_HELLO);
	ck_assert_int_eq(smolvm_agent_parse_hello(&m, &version, &name), 0);
	ck_assert_uint_eq(version, SMOLVM_AGENT_VERSION);
	ck_assert_str_eq(name, "smolvm-agent");
	/* NULL and "" are an empty name */
	m = decode_one(frame, smolvm_agent_build_hello(frame, sizeof(frame), NULL));
	ck_assert_int_eq(smolvm_agent_parse_hello(&m, &version, &name), 0);
	ck_assert_str_eq(name, "");
}
END_TEST

START_TEST(test_sync)
{
	uint8_t seed[SMOLVM_AGENT_SEED_BYTES];
	const uint8_t *got;
	uint64_t ns;
	long n;
	struct smolvm_agent_msg m;

	for (int i = 0; i < SMOLVM_AGENT_SEED_BYTES; i++)
		seed[i] = (uint8_t)(i * 37 + 1);
	n = smolvm_agent_build_sync(frame, sizeof(frame), 0x1122334455667788ull, seed);
	ck_assert_int_eq(n, SMOLVM_AGENT_HEADER + 8 + SMOLVM_AGENT_SEED_BYTES);
	/* little-endian on the wire */
	ck_assert_uint_eq(frame[SMOLVM_AGENT_HEADER], 0x88);
	ck_assert_uint_eq(frame[SMOLVM_AGENT_HEADER + 7], 0x11);
	m = decode_one(frame, n);
	ck_assert_int_eq(smolvm_agent_parse_sync(&m, &ns, &got), 0);
	ck_assert_uint_eq(ns, 0x1122334455667788ull);
	ck_assert_mem_eq(got, seed, sizeof(seed));
}
END_TEST

START_TEST(test_exec)
{
	const char *argv[] = { "sh", "-c", "echo $A", "", NULL };
	const char *envp[] = { "A=1", "B=", "C=x=y", NULL };
	struct smolvm_agent_msg m;
	long n;

	n = smolvm_agent_build_exec(frame, sizeof(frame), "/tmp", argv, envp);
	m = decode_one(frame, n);
	ck_assert_int_eq(m.type, SMOLVM_AGENT_EXEC);
	ck_assert_int_eq(smolvm_agent_parse_exec(&m, &ex), 0);
	ck_assert_uint_eq(ex.flags, 0);
	ck_assert_str_eq(ex.cwd, "/tmp");
	ck_assert_uint_eq(ex.argc, 4);
	ck_assert_uint_eq(ex.envc, 3);
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(ex.argv[i], argv[i]);
	ck_assert_ptr_null(ex.argv[4]);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(ex.envp[i], envp[i]);
	ck_assert_ptr_null(ex.envp[3]);

	/* NULL cwd and envp */
	m = decode_one(frame, smolvm_agent_build_exec(frame, sizeof(frame), NULL, argv, NULL));
	ck_assert_int_eq(smolvm_agent_parse_exec(&m, &ex), 0);
	ck_assert_str_eq(ex.cwd, "");
	ck_assert_uint_eq(ex.envc, 0);
	ck_assert_ptr_null(ex.envp[0]);
}
END_TEST

/* The most entries there may be, each as short as it can be. */
START_TEST(test_exec_max_args)
{
	static const char *argv[SMOLVM_AGENT_MAX_ARGS + 2], *envp[SMOLVM_AGENT_MAX_ARGS + 2];
	struct smolvm_agent_msg m;

	for (int i = 0; i < SMOLVM_AGENT_MAX_ARGS; i++) {
		argv[i] = i ? "" : "x";
		envp[i] = "V=";
	}
	m = decode_one(frame, smolvm_agent_build_exec(frame, sizeof(frame), "", argv, envp));
	ck_assert_int_eq(smolvm_agent_parse_exec(&m, &ex), 0);
	ck_assert_uint_eq(ex.argc, SMOLVM_AGENT_MAX_ARGS);
	ck_assert_uint_eq(ex.envc, SMOLVM_AGENT_MAX_ARGS);
	ck_assert_ptr_null(ex.argv[SMOLVM_AGENT_MAX_ARGS]);
	ck_assert_ptr_null(ex.envp[SMOLVM_AGENT_MAX_ARGS]);
	/* one more is refused */
	argv[SMOLVM_AGENT_MAX_ARGS] = "";
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", argv, envp), -EINVAL);
	argv[SMOLVM_AGENT_MAX_ARGS] = NULL;
	envp[SMOLVM_AGENT_MAX_ARGS] = "V=";
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", argv, envp), -EINVAL);
}
END_TEST

START_TEST(test_u32_exit)
{
	struct smolvm_agent_msg m;
	uint32_t v, how;

	m = decode_one(frame, smolvm_agent_build_u32(frame, sizeof(frame), SMOLVM_AGENT_SIGNAL, 15));
	ck_assert_int_eq(smolvm_agent_parse_u32(&m, SMOLVM_AGENT_SIGNAL, &v), 0);
	ck_assert_uint_eq(v, 15);
	ck_assert_int_eq(smolvm_agent_parse_u32(&m, SMOLVM_AGENT_STARTED, &v), -EPROTO);
	m = decode_one(frame, smolvm_agent_build_u32(frame, sizeof(frame), SMOLVM_AGENT_STARTED,
						      0xfffffffe));
	ck_assert_int_eq(smolvm_agent_parse_u32(&m, SMOLVM_AGENT_STARTED, &v), 0);
	ck_assert_uint_eq(v, 0xfffffffe);

	m = decode_one(frame, smolvm_agent_build_exit(frame, sizeof(frame), SMOLVM_AGENT_EXITED, 255));
	ck_assert_int_eq(smolvm_agent_parse_exit(&m, &how, &v), 0);
	ck_assert_uint_eq(how, SMOLVM_AGENT_EXITED);
	ck_assert_uint_eq(v, 255);
	m = decode_one(frame, smolvm_agent_build_exit(frame, sizeof(frame), SMOLVM_AGENT_SIGNALED, 9));
	ck_assert_int_eq(smolvm_agent_parse_exit(&m, &how, &v), 0);
	ck_assert_uint_eq(how, SMOLVM_AGENT_SIGNALED);
	ck_assert_uint_eq(v, 9);
	ck_assert_int_eq(smolvm_agent_build_exit(frame, sizeof(frame), SMOLVM_AGENT_EXITED, 256), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exit(frame, sizeof(frame), SMOLVM_AGENT_SIGNALED, 0), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exit(frame, sizeof(frame), SMOLVM_AGENT_SIGNALED, 128), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exit(frame, sizeof(frame), 2, 0), -EINVAL);
}
END_TEST

START_TEST(test_put_get_error)
{
	struct smolvm_agent_msg m;
	uint32_t mode, err;
	const char *s;

	m = decode_one(frame, smolvm_agent_build_put(frame, sizeof(frame), 0640, "/etc/x"));
	ck_assert_int_eq(smolvm_agent_parse_put(&m, &mode, &s), 0);
	ck_assert_uint_eq(mode, 0640);
	ck_assert_str_eq(s, "/etc/x");
	m = decode_one(frame, smolvm_agent_build_put(frame, sizeof(frame), 0040755, "/d"));
	ck_assert_int_eq(smolvm_agent_parse_put(&m, &mode, &s), 0);
	ck_assert_uint_eq(mode, 0040755);
	m = decode_one(frame, smolvm_agent_build_put(frame, sizeof(frame), 0107777, "f"));
	ck_assert_int_eq(smolvm_agent_parse_put(&m, &mode, &s), 0);
	ck_assert_uint_eq(mode, 0107777);
	ck_assert_int_eq(smolvm_agent_build_put(frame, sizeof(frame), 0120777, "/l"), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_put(frame, sizeof(frame), 0200000, "/l"), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_put(frame, sizeof(frame), 0644, ""), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_put(frame, sizeof(frame), 0644, NULL), -EINVAL);

	m = decode_one(frame, smolvm_agent_build_path(frame, sizeof(frame), SMOLVM_AGENT_GET, "/p"));
	ck_assert_int_eq(smolvm_agent_parse_path(&m, SMOLVM_AGENT_GET, &s), 0);
	ck_assert_str_eq(s, "/p");
	ck_assert_int_eq(smolvm_agent_build_path(frame, sizeof(frame), SMOLVM_AGENT_GET, ""), -EINVAL);

	const char *t;
	m = decode_one(frame, smolvm_agent_build_link(frame, sizeof(frame), "/s/keys", "../../.ssh"));
	ck_assert_int_eq(smolvm_agent_parse_link(&m, &s, &t), 0);
	ck_assert_str_eq(s, "/s/keys");
	ck_assert_str_eq(t, "../../.ssh");
	ck_assert_int_eq(smolvm_agent_build_link(frame, sizeof(frame), "/l", ""), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_link(frame, sizeof(frame), "", "t"), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_link(frame, sizeof(frame), "/l", NULL), -EINVAL);

	m = decode_one(frame, smolvm_agent_build_error(frame, sizeof(frame), ENOENT, "no such"));
	ck_assert_int_eq(smolvm_agent_parse_error(&m, &err, &s), 0);
	ck_assert_uint_eq(err, ENOENT);
	ck_assert_str_eq(s, "no such");
	m = decode_one(frame, smolvm_agent_build_error(frame, sizeof(frame), 4095, NULL));
	ck_assert_int_eq(smolvm_agent_parse_error(&m, &err, &s), 0);
	ck_assert_str_eq(s, "");
	ck_assert_int_eq(smolvm_agent_build_error(frame, sizeof(frame), 0, "x"), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_error(frame, sizeof(frame), 4096, "x"), -EINVAL);
}
END_TEST

START_TEST(test_data)
{
	static uint8_t big[SMOLVM_AGENT_MAX_PAYLOAD + 1];
	static const uint8_t types[] = { SMOLVM_AGENT_STDIN, SMOLVM_AGENT_STDOUT,
					 SMOLVM_AGENT_STDERR, SMOLVM_AGENT_DATA };
	struct smolvm_agent_msg m;
	long n;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 131 + 7);
	for (size_t t = 0; t < sizeof(types); t++) {
		n = smolvm_agent_build_data(frame, sizeof(frame), types[t], big,
					    SMOLVM_AGENT_MAX_PAYLOAD);
		ck_assert_int_eq(n, FRAME_MAX);
		m = decode_one(frame, n);
		ck_assert_int_eq(m.type, types[t]);
		ck_assert_mem_eq(m.payload, big, SMOLVM_AGENT_MAX_PAYLOAD);
		m = decode_one(frame, smolvm_agent_build_data(frame, sizeof(frame), types[t], NULL, 0));
		ck_assert_uint_eq(m.len, 0);
		ck_assert_ptr_nonnull(m.payload);
	}
	ck_assert_int_eq(smolvm_agent_build_data(frame, sizeof(frame), SMOLVM_AGENT_DATA, big,
						 SMOLVM_AGENT_MAX_PAYLOAD + 1), -E2BIG);
}
END_TEST

/* ---- the decoder on a stream ---------------------------------------------- */

struct rec {
	uint8_t type;
	uint32_t len;
	uint32_t sum; /* of the payload */
};

static uint32_t sum(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* One of every message, back to back. */
static size_t build_stream(uint8_t *buf, size_t cap, struct rec *want, size_t *nwant)
{
	static uint8_t blob[70000];
	const char *argv[] = { "ls", "-l", NULL }, *envp[] = { "K=V", NULL };
	uint8_t seed[SMOLVM_AGENT_SEED_BYTES] = { 1, 2, 3 };
	size_t off = 0, k = 0;
	long n;

	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i ^ (i >> 8));
#define ADD(call)                                                                       \
	do {                                                                            \
		uint8_t *b_ = buf + off;                                                \
		size_t c_ = cap - off;                                                  \
		n = (call);                                                             \
		ck_assert_int_gt(n, 0);                                                 \
		want[k].type = b_[4];                                                   \
		want[k].len = (uint32_t)n - SMOLVM_AGENT_HEADER;                        \
		want[k].sum = sum(b_ + SMOLVM_AGENT_HEADER, want[k].len);               \
		k++;                                                                    \
		off += (size_t)n;                                                       \
	} while (0)
	ADD(smolvm_agent_build_hello(b_, c_, "host"));
	ADD(smolvm_agent_build_sync(b_, c_, 12345, seed));
	ADD(smolvm_agent_build_exec(b_, c_, "/", argv, envp));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_STDIN, blob, 100));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_STDIN, NULL, 0));
	ADD(smolvm_agent_build_u32(b_, c_, SMOLVM_AGENT_STARTED, 42));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_STDOUT, blob, SMOLVM_AGENT_MAX_PAYLOAD));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_STDERR, blob + 3, 1));
	ADD(smolvm_agent_build_u32(b_, c_, SMOLVM_AGENT_SIGNAL, 2));
	ADD(smolvm_agent_build_exit(b_, c_, SMOLVM_AGENT_SIGNALED, 2));
	ADD(smolvm_agent_build_put(b_, c_, 0755, "/bin/x"));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_DATA, blob + 9, 4097));
	ADD(smolvm_agent_build_path(b_, c_, SMOLVM_AGENT_GET, "/bin/x"));
	ADD(smolvm_agent_build_data(b_, c_, SMOLVM_AGENT_OK, NULL, 0));
	ADD(smolvm_agent_build_error(b_, c_, EIO, "broken"));
	ADD(smolvm_agent_build_data(b_, c_, 200, blob, 5)); /* a type from the future */
#undef ADD
	*nwant = k;
	return off;
}

/* Feeds `len` bytes in chunks chosen by `step` and checks the frames. */
static void feed_stream(const uint8_t *buf, size_t len, const struct rec *want, size_t nwant,
			size_t (*step)(size_t i))
{
	size_t off = 0, got = 0, i = 0;

	smolvm_agent_decoder_init(&dec);
	while (off < len) {
		size_t chunk = step(i++), used;
		struct smolvm_agent_msg m;
		int rc;
		if (chunk > len - off)
			chunk = len - off;
		rc = smolvm_agent_feed(&dec, buf + off, chunk, &used, &m);
		ck_assert_int_ge(rc, 0);
		ck_assert_uint_le(used, chunk);
		off += used;
		if (rc == 1) {
			ck_assert_uint_lt(got, nwant);
			ck_assert_int_eq(m.type, want[got].type);
			ck_assert_uint_eq(m.len, want[got].len);
			ck_assert_uint_eq(sum(m.payload, m.len), want[got].sum);
			got++;
		} else {
			ck_assert_uint_eq(used, chunk); /* 0: it took all it was given */
		}
	}
	ck_assert_uint_eq(got, nwant);
	/* at a frame boundary, nothing in the decoder */
	ck_assert_uint_eq(dec.hdr_have, 0);
}

static size_t one(size_t i) { (void)i; return 1; }
static size_t odd(size_t i) { return 1 + (i * 7919) % 9973; }
static size_t all(size_t i) { (void)i; return SIZE_MAX; }

START_TEST(test_stream)
{
	static uint8_t buf[200000];
	struct rec want[32];
	size_t nwant, len = build_stream(buf, sizeof(buf), want, &nwant);

	feed_stream(buf, len, want, nwant, all);
	feed_stream(buf, len, want, nwant, odd);
	feed_stream(buf, len, want, nwant, one);
}
END_TEST

START_TEST(test_feed_empty)
{
	struct smolvm_agent_msg m;
	size_t used = 99;

	smolvm_agent_decoder_init(&dec);
	ck_assert_int_eq(smolvm_agent_feed(&dec, NULL, 0, &used, &m), 0);
	ck_assert_uint_eq(used, 0);
}
END_TEST

/* ---- refusals ------------------------------------------------------------- */

static int feed_header(uint32_t len, uint8_t type, uint8_t flags, uint16_t reserved)
{
	uint8_t h[8] = { (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			 (uint8_t)(len >> 24), type, flags, (uint8_t)reserved,
			 (uint8_t)(reserved >> 8) };
	struct smolvm_agent_msg m;
	size_t used;

	smolvm_agent_decoder_init(&dec);
	return smolvm_agent_feed(&dec, h, sizeof(h), &used, &m);
}

START_TEST(test_bad_headers)
{
	struct smolvm_agent_msg m;
	size_t used;
	uint8_t more[16] = { 0 };

	ck_assert_int_eq(feed_header(0, 0, 0, 0), -EPROTO);
	ck_assert_int_eq(feed_header(0, SMOLVM_AGENT_OK, 1, 0), -EPROTO);
	ck_assert_int_eq(feed_header(0, SMOLVM_AGENT_OK, 0, 1), -EPROTO);
	ck_assert_int_eq(feed_header(0, SMOLVM_AGENT_OK, 0, 0x8000), -EPROTO);
	ck_assert_int_eq(feed_header(SMOLVM_AGENT_MAX_PAYLOAD + 1, SMOLVM_AGENT_DATA, 0, 0), -EPROTO);
	ck_assert_int_eq(feed_header(UINT32_MAX, SMOLVM_AGENT_DATA, 0, 0), -EPROTO);
	/* sticky: the stream is out of step for good */
	ck_assert_int_eq(smolvm_agent_feed(&dec, more, sizeof(more), &used, &m), -EPROTO);
	ck_assert_uint_eq(used, 0);
	/* the limits themselves are fine; so is an unknown type */
	ck_assert_int_eq(feed_header(SMOLVM_AGENT_MAX_PAYLOAD, SMOLVM_AGENT_DATA, 0, 0), 0);
	ck_assert_int_eq(feed_header(0, 255, 0, 0), 1);
	ck_assert_int_eq(feed_header(0, SMOLVM_AGENT_TYPE_MAX + 1, 0, 0), 1);
}
END_TEST

START_TEST(test_bad_header_byte_by_byte)
{
	const uint8_t h[8] = { 0, 0, 2, 0, SMOLVM_AGENT_DATA, 0, 0, 0 }; /* 128 KiB */
	struct smolvm_agent_msg m;
	size_t used;

	smolvm_agent_decoder_init(&dec);
	for (int i = 0; i < 7; i++) {
		ck_assert_int_eq(smolvm_agent_feed(&dec, h + i, 1, &used, &m), 0);
		ck_assert_uint_eq(used, 1);
	}
	ck_assert_int_eq(smolvm_agent_feed(&dec, h + 7, 1, &used, &m), -EPROTO);
	ck_assert_uint_eq(used, 1);
}
END_TEST

/* Every parser, on each payload one byte short and one byte long of a
 * valid one, and on the wrong type. */
typedef int (*parse_fn)(const struct smolvm_agent_msg *m);

static int p_hello(const struct smolvm_agent_msg *m)
{
	uint32_t v;
	const char *s;
	return smolvm_agent_parse_hello(m, &v, &s);
}
static int p_sync(const struct smolvm_agent_msg *m)
{
	uint64_t ns;
	const uint8_t *seed;
	return smolvm_agent_parse_sync(m, &ns, &seed);
}
static int p_exec(const struct smolvm_agent_msg *m) { return smolvm_agent_parse_exec(m, &ex); }
static int p_signal(const struct smolvm_agent_msg *m)
{
	uint32_t v;
	return smolvm_agent_parse_u32(m, SMOLVM_AGENT_SIGNAL, &v);
}
static int p_exit(const struct smolvm_agent_msg *m)
{
	uint32_t h, v;
	return smolvm_agent_parse_exit(m, &h, &v);
}
static int p_put(const struct smolvm_agent_msg *m)
{
	uint32_t mode;
	const char *s;
	return smolvm_agent_parse_put(m, &mode, &s);
}
static int p_get(const struct smolvm_agent_msg *m)
{
	const char *s;
	return smolvm_agent_parse_path(m, SMOLVM_AGENT_GET, &s);
}
static int p_link(const struct smolvm_agent_msg *m)
{
	const char *s, *t;
	return smolvm_agent_parse_link(m, &s, &t);
}
static int p_error(const struct smolvm_agent_msg *m)
{
	uint32_t e;
	const char *s;
	return smolvm_agent_parse_error(m, &e, &s);
}

START_TEST(test_truncated_and_long)
{
	const char *argv[] = { "a", "bb", NULL }, *envp[] = { "C=d", NULL };
	uint8_t seed[SMOLVM_AGENT_SEED_BYTES] = { 0 };
	struct {
		parse_fn fn;
		long n;
	} cases[9];
	static uint8_t frames[9][256];
	int k = 0;

#define CASE(f, call)                                                                  \
	do {                                                                           \
		uint8_t *b_ = frames[k];                                               \
		cases[k].fn = f;                                                       \
		cases[k].n = (call);                                                   \
		ck_assert_int_gt(cases[k].n, 0);                                       \
		k++;                                                                   \
	} while (0)
	CASE(p_hello, smolvm_agent_build_hello(b_, 256, "name"));
	CASE(p_sync, smolvm_agent_build_sync(b_, 256, 1, seed));
	CASE(p_exec, smolvm_agent_build_exec(b_, 256, "/w", argv, envp));
	CASE(p_signal, smolvm_agent_build_u32(b_, 256, SMOLVM_AGENT_SIGNAL, 9));
	CASE(p_exit, smolvm_agent_build_exit(b_, 256, 0, 1));
	CASE(p_put, smolvm_agent_build_put(b_, 256, 0644, "/f"));
	CASE(p_get, smolvm_agent_build_path(b_, 256, SMOLVM_AGENT_GET, "/f"));
	CASE(p_error, smolvm_agent_build_error(b_, 256, 5, "msg"));
	CASE(p_link, smolvm_agent_build_link(b_, 256, "/l", "t"));
#undef CASE
	for (int c = 0; c < k; c++) {
		uint8_t type = frames[c][4];
		size_t len = (size_t)cases[c].n - SMOLVM_AGENT_HEADER;
		const uint8_t *p = frames[c] + SMOLVM_AGENT_HEADER;
		struct smolvm_agent_msg m = raw(type, p, len);

		ck_assert_msg(cases[c].fn(&m) == 0, "case %d: the valid payload", c);
		for (size_t cut = 0; cut < len; cut++) {
			m = raw(type, p, cut);
			ck_assert_msg(cases[c].fn(&m) == -EPROTO, "case %d: %zu of %zu bytes", c,
				      cut, len);
		}
		for (int extra = 0; extra < 2; extra++) {
			uint8_t longer[300];
			memcpy(longer, p, len);
			longer[len] = extra ? 'x' : 0;
			m = raw(type, longer, len + 1);
			ck_assert_msg(cases[c].fn(&m) == -EPROTO, "case %d: one more byte (%d)", c,
				      extra);
		}
		m = raw(type == SMOLVM_AGENT_DATA ? SMOLVM_AGENT_OK : SMOLVM_AGENT_DATA, p, len);
		ck_assert_msg(cases[c].fn(&m) == -EPROTO, "case %d: another type", c);
		ck_assert_msg(cases[c].fn(NULL) == -EPROTO, "case %d: NULL", c);
	}
}
END_TEST

/* EXEC payload: flags, argc, envc, then the strings. */
static int exec_payload(uint32_t argc, uint32_t envc, const char *strs, size_t slen)
{
	uint8_t p[256] = { 0 };
	struct smolvm_agent_msg m;

	p[4] = (uint8_t)argc;
	p[5] = (uint8_t)(argc >> 8);
	p[6] = (uint8_t)(argc >> 16);
	p[7] = (uint8_t)(argc >> 24);
	p[8] = (uint8_t)envc;
	p[9] = (uint8_t)(envc >> 8);
	p[10] = (uint8_t)(envc >> 16);
	p[11] = (uint8_t)(envc >> 24);
	memcpy(p + 12, strs, slen);
	m = raw(SMOLVM_AGENT_EXEC, p, 12 + slen);
	return smolvm_agent_parse_exec(&m, &ex);
}

START_TEST(test_bad_exec)
{
	ck_assert_int_eq(exec_payload(1, 0, "\0a", 3), 0);
	ck_assert_int_eq(exec_payload(1, 1, "/\0a\0K=v", 8), 0);
	ck_assert_int_eq(exec_payload(0, 0, "\0", 1), -EPROTO);            /* no argv */
	ck_assert_int_eq(exec_payload(1, 0, "\0", 2), -EPROTO);            /* empty argv[0] */
	ck_assert_int_eq(exec_payload(2, 0, "\0a", 3), -EPROTO);           /* a string short */
	ck_assert_int_eq(exec_payload(1, 0, "\0a\0b", 5), -EPROTO);        /* a string over */
	ck_assert_int_eq(exec_payload(1, 1, "\0a\0Kv", 6), -EPROTO);       /* env without = */
	ck_assert_int_eq(exec_payload(1, 1, "\0a\0=v", 6), -EPROTO);       /* env without name */
	ck_assert_int_eq(exec_payload(SMOLVM_AGENT_MAX_ARGS + 1, 0, "\0a", 3), -EPROTO);
	ck_assert_int_eq(exec_payload(1, SMOLVM_AGENT_MAX_ARGS + 1, "\0a", 3), -EPROTO);
	ck_assert_int_eq(exec_payload(UINT32_MAX, UINT32_MAX, "\0a", 3), -EPROTO);
	ck_assert_int_eq(exec_payload(1, 0, "", 0), -EPROTO);              /* no cwd */
}
END_TEST

START_TEST(test_bad_values)
{
	const uint8_t exit_bad[][8] = {
		{ 0, 0, 0, 0, 0, 1, 0, 0 },  /* exited 256 */
		{ 1, 0, 0, 0, 0, 0, 0, 0 },  /* signal 0 */
		{ 1, 0, 0, 0, 128, 0, 0, 0 }, /* signal 128 */
		{ 2, 0, 0, 0, 1, 0, 0, 0 },  /* how 2 */
	};
	const uint8_t err0[] = { 0, 0, 0, 0, 'x', 0 }, err_big[] = { 0, 16, 0, 0, 0 };
	const uint8_t put_lnk[] = { 0xff, 0xa1, 0, 0, '/', 0 }; /* 0120777 */
	const uint8_t put_empty[] = { 0xa4, 0x01, 0, 0, 0 };
	const uint8_t put_nul2[] = { 0xa4, 0x01, 0, 0, '/', 0, 0 };
	const uint8_t get_empty[] = { 0 }, get_mid[] = { '/', 0, 'x', 0 };
	const uint8_t hello_short[] = { 1, 0, 0, 0 };
	const uint8_t link_one[] = { '/', 'l', 0 }, link_nopath[] = { 0, 't', 0 },
		      link_notarget[] = { '/', 0, 0 }, link_three[] = { '/', 0, 't', 0, 'x', 0 };
	struct smolvm_agent_msg m;

	m = raw(SMOLVM_AGENT_LINK, link_one, sizeof(link_one));
	ck_assert_int_eq(p_link(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_LINK, link_nopath, sizeof(link_nopath));
	ck_assert_int_eq(p_link(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_LINK, link_notarget, sizeof(link_notarget));
	ck_assert_int_eq(p_link(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_LINK, link_three, sizeof(link_three));
	ck_assert_int_eq(p_link(&m), -EPROTO);

	for (size_t i = 0; i < sizeof(exit_bad) / sizeof(exit_bad[0]); i++) {
		m = raw(SMOLVM_AGENT_EXIT, exit_bad[i], 8);
		ck_assert_int_eq(p_exit(&m), -EPROTO);
	}
	m = raw(SMOLVM_AGENT_ERROR, err0, sizeof(err0));
	ck_assert_int_eq(p_error(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_ERROR, err_big, sizeof(err_big));
	ck_assert_int_eq(p_error(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_PUT, put_lnk, sizeof(put_lnk));
	ck_assert_int_eq(p_put(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_PUT, put_empty, sizeof(put_empty));
	ck_assert_int_eq(p_put(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_PUT, put_nul2, sizeof(put_nul2));
	ck_assert_int_eq(p_put(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_GET, get_empty, sizeof(get_empty));
	ck_assert_int_eq(p_get(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_GET, get_mid, sizeof(get_mid));
	ck_assert_int_eq(p_get(&m), -EPROTO);
	m = raw(SMOLVM_AGENT_HELLO, hello_short, sizeof(hello_short));
	ck_assert_int_eq(p_hello(&m), -EPROTO);
	/* a message that claims more than a payload can hold */
	m = raw(SMOLVM_AGENT_GET, get_mid, sizeof(get_mid));
	m.len = SMOLVM_AGENT_MAX_PAYLOAD + 1;
	ck_assert_int_eq(p_get(&m), -EPROTO);
}
END_TEST

/* Encoders never write past cap: every cap short of the frame is -E2BIG. */
START_TEST(test_encoder_caps)
{
	const char *argv[] = { "prog", "arg", NULL }, *envp[] = { "A=b", NULL };
	uint8_t seed[SMOLVM_AGENT_SEED_BYTES] = { 0 };
	uint8_t buf[128];

	for (size_t cap = 0; cap < 64; cap++) {
		long want[] = {
			smolvm_agent_build_hello(buf, cap, "agent"),
			smolvm_agent_build_sync(buf, cap, 1, seed),
			smolvm_agent_build_exec(buf, cap, "/", argv, envp),
			smolvm_agent_build_u32(buf, cap, SMOLVM_AGENT_SIGNAL, 1),
			smolvm_agent_build_exit(buf, cap, 0, 0),
			smolvm_agent_build_put(buf, cap, 0644, "/f"),
			smolvm_agent_build_path(buf, cap, SMOLVM_AGENT_GET, "/f"),
			smolvm_agent_build_error(buf, cap, 1, "e"),
			smolvm_agent_build_data(buf, cap, SMOLVM_AGENT_DATA, "abc", 3),
			smolvm_agent_build_link(buf, cap, "/l", "target"),
		};
		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			if (want[i] < 0)
				ck_assert_int_eq(want[i], -E2BIG);
			else
				ck_assert_int_le(want[i], (long)cap);
		}
	}
}
END_TEST

START_TEST(test_encoder_args)
{
	const char *none[] = { NULL }, *empty0[] = { "", NULL }, *ok[] = { "x", NULL };
	const char *noeq[] = { "NAME", NULL }, *noname[] = { "=v", NULL };
	static char huge[SMOLVM_AGENT_MAX_PAYLOAD + 10];
	const char *big[] = { huge, NULL };

	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", NULL, NULL), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", none, NULL), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", empty0, NULL), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", ok, noeq), -EINVAL);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", ok, noname), -EINVAL);
	memset(huge, 'a', sizeof(huge) - 1);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), "", big, NULL), -E2BIG);
	ck_assert_int_eq(smolvm_agent_build_exec(frame, sizeof(frame), huge, ok, NULL), -E2BIG);
	ck_assert_int_eq(smolvm_agent_build_hello(frame, sizeof(frame), huge), -E2BIG);
	ck_assert_int_eq(smolvm_agent_build_path(frame, sizeof(frame), SMOLVM_AGENT_GET, huge), -E2BIG);
	/* the longest path that fits */
	huge[SMOLVM_AGENT_MAX_PAYLOAD - 1] = 0;
	ck_assert_int_eq(smolvm_agent_build_path(frame, sizeof(frame), SMOLVM_AGENT_GET, huge),
			 FRAME_MAX);
}
END_TEST

START_TEST(test_type_names)
{
	ck_assert_str_eq(smolvm_agent_type_name(SMOLVM_AGENT_HELLO), "HELLO");
	ck_assert_str_eq(smolvm_agent_type_name(SMOLVM_AGENT_STARTED), "STARTED");
	ck_assert_str_eq(smolvm_agent_type_name(0), "?");
	ck_assert_str_eq(smolvm_agent_type_name(SMOLVM_AGENT_TYPE_MAX + 1), "?");
	ck_assert_str_eq(smolvm_agent_type_name(255), "?");
	for (int t = 1; t <= SMOLVM_AGENT_TYPE_MAX; t++)
		ck_assert_str_ne(smolvm_agent_type_name((uint8_t)t), "?");
}
END_TEST

Suite *agent_suite(void)
{
	Suite *s = suite_create("agent");
	TCase *rt = tcase_create("round trip");
	TCase *st = tcase_create("stream");
	TCase *bad = tcase_create("refusals");

	tcase_add_test(rt, test_header);
	tcase_add_test(rt, test_hello);
	tcase_add_test(rt, test_sync);
	tcase_add_test(rt, test_exec);
	tcase_add_test(rt, test_exec_max_args);
	tcase_add_test(rt, test_u32_exit);
	tcase_add_test(rt, test_put_get_error);
	tcase_add_test(rt, test_data);
	tcase_add_test(rt, test_type_names);
	suite_add_tcase(s, rt);

	tcase_add_test(st, test_stream);
	tcase_add_test(st, test_feed_empty);
	suite_add_tcase(s, st);

	tcase_add_test(bad, test_bad_headers);
	tcase_add_test(bad, test_bad_header_byte_by_byte);
	tcase_add_test(bad, test_truncated_and_long);
	tcase_add_test(bad, test_bad_exec);
	tcase_add_test(bad, test_bad_values);
	tcase_add_test(bad, test_encoder_caps);
	tcase_add_test(bad, test_encoder_args);
	suite_add_tcase(s, bad);
	return s;
}
