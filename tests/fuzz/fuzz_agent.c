/* Fuzz the guest agent protocol's codec (sdk/src/agent_proto.c) with the
 * bytes a hostile peer could send: the guest agent parsing a host's frames
 * and the host parsing a guest's. The first input byte picks how the
 * stream is cut into reads; the rest is the stream. Every frame goes
 * through every parser; whatever a parser accepts must lie inside the
 * payload and must encode back to the very same bytes (one encoding per
 * message, so nothing can smuggle a second meaning past a parser). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <smolvm/agent.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FRAME_MAX (SMOLVM_AGENT_HEADER + SMOLVM_AGENT_MAX_PAYLOAD)

static struct smolvm_agent_decoder dec;
static struct smolvm_agent_exec ex;
static uint8_t re[FRAME_MAX];

static void check(int cond)
{
	if (!cond)
		abort();
}

/* s is a NUL-terminated string inside the payload. */
static void inside(const struct smolvm_agent_msg *m, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	check(p >= m->payload && p < m->payload + m->len);
	check(memchr(p, 0, (size_t)(m->payload + m->len - p)) != NULL);
}

/* The frame re-encoded is the frame received. */
static void same(const struct smolvm_agent_msg *m, long n)
{
	check(n == (long)(SMOLVM_AGENT_HEADER + m->len));
	check(re[4] == m->type);
	check(!memcmp(re + SMOLVM_AGENT_HEADER, m->payload, m->len));
}

static void parse_all(const struct smolvm_agent_msg *m)
{
	uint32_t u, v;
	uint64_t ns;
	const uint8_t *seed;
	const char *s, *t;

	/* both sides */
	if (!smolvm_agent_parse_hello(m, &u, &s)) {
		inside(m, s);
		if (u == SMOLVM_AGENT_VERSION)
			same(m, smolvm_agent_build_hello(re, sizeof(re), s));
	}
	/* the guest's view of the host's frames */
	if (!smolvm_agent_parse_sync(m, &ns, &seed)) {
		check(seed == m->payload + 8);
		same(m, smolvm_agent_build_sync(re, sizeof(re), ns, seed));
	}
	if (!smolvm_agent_parse_exec(m, &ex)) {
		check(ex.argc >= 1 && ex.argc <= SMOLVM_AGENT_MAX_ARGS);
		check(ex.envc <= SMOLVM_AGENT_MAX_ARGS);
		check(!ex.argv[ex.argc] && !ex.envp[ex.envc]);
		inside(m, ex.cwd);
		for (uint32_t i = 0; i < ex.argc; i++)
			inside(m, ex.argv[i]);
		for (uint32_t i = 0; i < ex.envc; i++) {
			inside(m, ex.envp[i]);
			check(strchr(ex.envp[i], '=') > ex.envp[i]);
		}
		check(ex.argv[0][0] != 0);
		if (!ex.flags)
			same(m, smolvm_agent_build_exec(re, sizeof(re), ex.cwd, ex.argv, ex.envp));
	}
	if (!smolvm_agent_parse_u32(m, SMOLVM_AGENT_SIGNAL, &u))
		same(m, smolvm_agent_build_u32(re, sizeof(re), SMOLVM_AGENT_SIGNAL, u));
	if (!smolvm_agent_parse_put(m, &u, &s)) {
		inside(m, s);
		check(s[0] != 0);
		same(m, smolvm_agent_build_put(re, sizeof(re), u, s));
	}
	if (!smolvm_agent_parse_path(m, SMOLVM_AGENT_GET, &s)) {
		inside(m, s);
		same(m, smolvm_agent_build_path(re, sizeof(re), SMOLVM_AGENT_GET, s));
	}
	if (!smolvm_agent_parse_link(m, &s, &t)) {
		inside(m, s);
		inside(m, t);
		check(s[0] != 0 && t[0] != 0);
		same(m, smolvm_agent_build_link(re, sizeof(re), s, t));
	}
	/* the host's view of the guest's frames */
	if (!smolvm_agent_parse_u32(m, SMOLVM_AGENT_STARTED, &u))
		same(m, smolvm_agent_build_u32(re, sizeof(re), SMOLVM_AGENT_STARTED, u));
	if (!smolvm_agent_parse_exit(m, &u, &v)) {
		check(u == SMOLVM_AGENT_EXITED ? v <= 255 : u == SMOLVM_AGENT_SIGNALED && v >= 1);
		same(m, smolvm_agent_build_exit(re, sizeof(re), u, v));
	}
	if (!smolvm_agent_parse_error(m, &u, &s)) {
		inside(m, s);
		check(u >= 1 && u <= 4095);
		same(m, smolvm_agent_build_error(re, sizeof(re), u, s));
	}
	/* raw bytes: STDIN, STDOUT, STDERR, DATA and any type */
	same(m, smolvm_agent_build_data(re, sizeof(re), m->type, m->payload, m->len));
	(void)smolvm_agent_type_name(m->type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t rng;
	size_t off = 1;

	if (size < 1)
		return 0;
	rng = data[0] * 2654435761u + 1;
	smolvm_agent_decoder_init(&dec);
	while (off < size) {
		struct smolvm_agent_msg m;
		size_t used, chunk;
		int rc;

		/* reads of 1 byte up to everything, as a socket may give them */
		rng = rng * 1103515245u + 12345u;
		chunk = data[0] & 0x80 ? size - off : 1 + (rng >> 16) % (data[0] & 0x40 ? 7 : 9000);
		if (chunk > size - off)
			chunk = size - off;
		rc = smolvm_agent_feed(&dec, data + off, chunk, &used, &m);
		check(used <= chunk);
		off += used;
		if (rc < 0) {
			check(rc == -EPROTO);
			/* sticky */
			check(smolvm_agent_feed(&dec, data + off, size - off, &used, &m) == -EPROTO);
			check(used == 0);
			break;
		}
		if (rc == 0) {
			check(used == chunk);
			continue;
		}
		check(m.type != 0 && m.len <= SMOLVM_AGENT_MAX_PAYLOAD);
		parse_all(&m);
	}
	return 0;
}
