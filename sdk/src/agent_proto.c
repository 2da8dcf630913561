/* The guest agent protocol's codec (smolvm/agent.h, docs/agent-protocol.md):
 * an incremental frame decoder and the payload encoders and parsers. Both
 * the host (core/) and the guest agent (scripts/guest/agent/) build it.
 * Every byte from the other side is untrusted: each length is checked
 * before it is used, and nothing here allocates. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <smolvm/agent.h>

#define MODE_PERM 07777u
#define MODE_TYPE 0170000u
#define MODE_REG 0100000u
#define MODE_DIR 0040000u
#define ERRNO_MAX 4095u
#define SIGNAL_MAX 127u

/* ---- little-endian helpers ---------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)get_le16(p) | (uint32_t)get_le16(p + 2) << 16;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- decoder -------------------------------------------------------------- */

void smolvm_agent_decoder_init(struct smolvm_agent_decoder *d)
{
	d->hdr_have = 0;
	d->len = 0;
	d->have = 0;
	d->type = 0;
	d->failed = 0;
}

int smolvm_agent_feed(struct smolvm_agent_decoder *d, const uint8_t *data, size_t n,
		      size_t *used, struct smolvm_agent_msg *out)
{
	size_t i = 0;

	*used = 0;
	if (d->failed)
		return -EPROTO;
	if (d->hdr_have < SMOLVM_AGENT_HEADER) {
		size_t k = SMOLVM_AGENT_HEADER - d->hdr_have;
		if (k > n)
			k = n;
		if (k)
			memcpy(d->hdr + d->hdr_have, data, k);
		d->hdr_have += k;
		i = k;
		if (d->hdr_have < SMOLVM_AGENT_HEADER) {
			*used = i;
			return 0;
		}
		d->len = get_le32(d->hdr);
		d->type = d->hdr[4];
		d->have = 0;
		if (d->type == 0 || d->hdr[5] != 0 || get_le16(d->hdr + 6) != 0 ||
		    d->len > SMOLVM_AGENT_MAX_PAYLOAD) {
			d->failed = 1;
			*used = i;
			return -EPROTO;
		}
	}
	if (d->have < d->len) {
		size_t k = d->len - d->have;
		if (k > n - i)
			k = n - i;
		if (k)
			memcpy(d->buf + d->have, data + i, k);
		d->have += (uint32_t)k;
		i += k;
	}
	*used = i;
	if (d->have < d->len)
		return 0;
	out->type = d->type;
	out->len = d->len;
	out->payload = d->buf;
	d->hdr_have = 0;
	d->len = 0;
	d->have = 0;
	return 1;
}

/* ---- encoders ------------------------------------------------------------- */

void smolvm_agent_header(uint8_t hdr[SMOLVM_AGENT_HEADER], uint8_t type, uint32_t len)
{
	put_le32(hdr, len);
	hdr[4] = type;
	hdr[5] = 0;
	put_le16(hdr + 6, 0);
}

/* Checks that a payload of `len` bytes fits; writes the header. */
static long begin(uint8_t *buf, size_t cap, uint8_t type, size_t len)
{
	if (len > SMOLVM_AGENT_MAX_PAYLOAD || cap < SMOLVM_AGENT_HEADER ||
	    len > cap - SMOLVM_AGENT_HEADER)
		return -E2BIG;
	smolvm_agent_header(buf, type, (uint32_t)len);
	return (long)(SMOLVM_AGENT_HEADER + len);
}

/* strlen + 1, or SIZE_MAX for strings longer than any payload (so that a
 * sum of a few of them cannot wrap). */
static size_t str_size(const char *s)
{
	size_t n = strnlen(s, SMOLVM_AGENT_MAX_PAYLOAD + 1);
	return n > SMOLVM_AGENT_MAX_PAYLOAD ? SMOLVM_AGENT_MAX_PAYLOAD + 1 : n + 1;
}

static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s) + 1;
	memcpy(p, s, n);
	return n;
}

/* A fixed part (`head`, `head_len` bytes) followed by one string. */
static long build_head_str(uint8_t *buf, size_t cap, uint8_t type, const uint8_t *head,
			   size_t head_len, const char *s)
{
	size_t len;
	long rc;

	if (!s)
		s = "";
	len = head_len + str_size(s);
	rc = begin(buf, cap, type, len);
	if (rc < 0)
		return rc;
	if (head_len)
		memcpy(buf + SMOLVM_AGENT_HEADER, head, head_len);
	put_str(buf + SMOLVM_AGENT_HEADER + head_len, s);
	return rc;
}

long smolvm_agent_build_hello(uint8_t *buf, size_t cap, const char *name)
{
	uint8_t v[4];

	put_le32(v, SMOLVM_AGENT_VERSION);
	return build_head_str(buf, cap, SMOLVM_AGENT_HELLO, v, sizeof(v), name);
}

long smolvm_agent_build_sync(uint8_t *buf, size_t cap, uint64_t realtime_ns,
			     const uint8_t seed[SMOLVM_AGENT_SEED_BYTES])
{
	long rc = begin(buf, cap, SMOLVM_AGENT_SYNC, 8 + SMOLVM_AGENT_SEED_BYTES);

	if (rc < 0)
		return rc;
	put_le64(buf + SMOLVM_AGENT_HEADER, realtime_ns);
	memcpy(buf + SMOLVM_AGENT_HEADER + 8, seed, SMOLVM_AGENT_SEED_BYTES);
	return rc;
}

/* An env entry is NAME=value with a non-empty NAME. */
static int env_ok(const char *s)
{
	const char *eq = strchr(s, '=');
	return eq && eq != s;
}

long smolvm_agent_build_exec(uint8_t *buf, size_t cap, const char *cwd,
			     const char *const *argv, const char *const *envp)
{
	size_t argc = 0, envc = 0, len;
	uint8_t *p;
	long rc;

	if (!cwd)
		cwd = "";
	if (!argv || !argv[0] || !argv[0][0])
		return -EINVAL;
	len = 12 + str_size(cwd);
	for (; argv[argc]; argc++) {
		if (argc == SMOLVM_AGENT_MAX_ARGS)
			return -EINVAL;
		len += str_size(argv[argc]);
		if (len > SMOLVM_AGENT_MAX_PAYLOAD)
			return -E2BIG;
	}
	for (; envp && envp[envc]; envc++) {
		if (envc == SMOLVM_AGENT_MAX_ARGS || !env_ok(envp[envc]))
			return -EINVAL;
		len += str_size(envp[envc]);
		if (len > SMOLVM_AGENT_MAX_PAYLOAD)
			return -E2BIG;
	}
	rc = begin(buf, cap, SMOLVM_AGENT_EXEC, len);
	if (rc < 0)
		return rc;
	p = buf + SMOLVM_AGENT_HEADER;
	put_le32(p, 0);
	put_le32(p + 4, (uint32_t)argc);
	put_le32(p + 8, (uint32_t)envc);
	p += 12;
	p += put_str(p, cwd);
	for (size_t i = 0; i < argc; i++)
		p += put_str(p, argv[i]);
	for (size_t i = 0; i < envc; i++)
		p += put_str(p, envp[i]);
	return rc;
}

long smolvm_agent_build_u32(uint8_t *buf, size_t cap, uint8_t type, uint32_t v)
{
	long rc = begin(buf, cap, type, 4);

	if (rc >= 0)
		put_le32(buf + SMOLVM_AGENT_HEADER, v);
	return rc;
}

static int exit_ok(uint32_t how, uint32_t value)
{
	if (how == SMOLVM_AGENT_EXITED)
		return value <= 255;
	return how == SMOLVM_AGENT_SIGNALED && value >= 1 && value <= SIGNAL_MAX;
}

long smolvm_agent_build_exit(uint8_t *buf, size_t cap, uint32_t how, uint32_t value)
{
	long rc;

	if (!exit_ok(how, value))
		return -EINVAL;
	rc = begin(buf, cap, SMOLVM_AGENT_EXIT, 8);
	if (rc >= 0) {
		put_le32(buf + SMOLVM_AGENT_HEADER, how);
		put_le32(buf + SMOLVM_AGENT_HEADER + 4, value);
	}
	return rc;
}

static int mode_ok(uint32_t mode)
{
	uint32_t type = mode & MODE_TYPE;
	return !(mode & ~(MODE_TYPE | MODE_PERM)) &&
	       (type == 0 || type == MODE_REG || type == MODE_DIR);
}

long smolvm_agent_build_put(uint8_t *buf, size_t cap, uint32_t mode, const char *path)
{
	uint8_t m[4];

	if (!mode_ok(mode) || !path || !path[0])
		return -EINVAL;
	put_le32(m, mode);
	return build_head_str(buf, cap, SMOLVM_AGENT_PUT, m, sizeof(m), path);
}

long smolvm_agent_build_path(uint8_t *buf, size_t cap, uint8_t type, const char *path)
{
	if (!path || !path[0])
		return -EINVAL;
	return build_head_str(buf, cap, type, NULL, 0, path);
}

long smolvm_agent_build_link(uint8_t *buf, size_t cap, const char *path, const char *target)
{
	size_t plen, len;
	long rc;

	if (!path || !path[0] || !target || !target[0])
		return -EINVAL;
	plen = str_size(path);
	len = plen + str_size(target);
	rc = begin(buf, cap, SMOLVM_AGENT_LINK, len);
	if (rc < 0)
		return rc;
	put_str(buf + SMOLVM_AGENT_HEADER, path);
	put_str(buf + SMOLVM_AGENT_HEADER + plen, target);
	return rc;
}

long smolvm_agent_build_error(uint8_t *buf, size_t cap, uint32_t err, const char *msg)
{
	uint8_t e[4];

	if (err < 1 || err > ERRNO_MAX)
		return -EINVAL;
	put_le32(e, err);
	return build_head_str(buf, cap, SMOLVM_AGENT_ERROR, e, sizeof(e), msg);
}

long smolvm_agent_build_data(uint8_t *buf, size_t cap, uint8_t type, const void *data,
			     size_t n)
{
	long rc = begin(buf, cap, type, n);

	if (rc >= 0 && n)
		memcpy(buf + SMOLVM_AGENT_HEADER, data, n);
	return rc;
}

/* ---- parsers -------------------------------------------------------------- */

/* The string at p[0..n): its size including the NUL, or 0 when there is
 * no NUL in range. */
static size_t str_at(const uint8_t *p, size_t n)
{
	const uint8_t *nul = n ? memchr(p, 0, n) : NULL;
	return nul ? (size_t)(nul - p) + 1 : 0;
}

/* The payload from `off` on is exactly one string (its NUL is the last
 * byte). */
static int tail_str(const struct smolvm_agent_msg *m, size_t off, const char **s)
{
	if (m->len <= off || str_at(m->payload + off, m->len - off) != m->len - off)
		return -EPROTO;
	*s = (const char *)m->payload + off;
	return 0;
}

static int frame_ok(const struct smolvm_agent_msg *m, uint8_t type)
{
	return m && m->type == type && m->len <= SMOLVM_AGENT_MAX_PAYLOAD &&
	       (m->payload || !m->len);
}

int smolvm_agent_parse_hello(const struct smolvm_agent_msg *m, uint32_t *version,
			     const char **name)
{
	if (!frame_ok(m, SMOLVM_AGENT_HELLO) || m->len < 5 || tail_str(m, 4, name))
		return -EPROTO;
	*version = get_le32(m->payload);
	return 0;
}

int smolvm_agent_parse_sync(const struct smolvm_agent_msg *m, uint64_t *realtime_ns,
			    const uint8_t **seed)
{
	if (!frame_ok(m, SMOLVM_AGENT_SYNC) || m->len != 8 + SMOLVM_AGENT_SEED_BYTES)
		return -EPROTO;
	*realtime_ns = get_le64(m->payload);
	*seed = m->payload + 8;
	return 0;
}

int smolvm_agent_parse_exec(const struct smolvm_agent_msg *m, struct smolvm_agent_exec *out)
{
	const uint8_t *p;
	size_t off, n;
	uint32_t argc, envc;

	if (!frame_ok(m, SMOLVM_AGENT_EXEC) || m->len < 12)
		return -EPROTO;
	p = m->payload;
	argc = get_le32(p + 4);
	envc = get_le32(p + 8);
	if (argc < 1 || argc > SMOLVM_AGENT_MAX_ARGS || envc > SMOLVM_AGENT_MAX_ARGS)
		return -EPROTO;
	off = 12;
	n = str_at(p + off, m->len - off);
	if (!n)
		return -EPROTO;
	out->cwd = (const char *)p + off;
	off += n;
	for (uint32_t i = 0; i < argc + envc; i++) {
		const char *s = (const char *)p + off;
		n = str_at(p + off, m->len - off);
		if (!n)
			return -EPROTO;
		if (i < argc)
			out->argv[i] = s;
		else if (!env_ok(s))
			return -EPROTO;
		else
			out->envp[i - argc] = s;
		off += n;
	}
	if (off != m->len || !out->argv[0][0])
		return -EPROTO;
	out->argv[argc] = NULL;
	out->envp[envc] = NULL;
	out->flags = get_le32(p);
	out->argc = argc;
	out->envc = envc;
	return 0;
}

int smolvm_agent_parse_u32(const struct smolvm_agent_msg *m, uint8_t type, uint32_t *v)
{
	if (!frame_ok(m, type) || m->len != 4)
		return -EPROTO;
	*v = get_le32(m->payload);
	return 0;
}

int smolvm_agent_parse_exit(const struct smolvm_agent_msg *m, uint32_t *how, uint32_t *value)
{
	uint32_t h, v;

	if (!frame_ok(m, SMOLVM_AGENT_EXIT) || m->len != 8)
		return -EPROTO;
	h = get_le32(m->payload);
	v = get_le32(m->payload + 4);
	if (!exit_ok(h, v))
		return -EPROTO;
	*how = h;
	*value = v;
	return 0;
}

int smolvm_agent_parse_put(const struct smolvm_agent_msg *m, uint32_t *mode, const char **path)
{
	uint32_t md;

	if (!frame_ok(m, SMOLVM_AGENT_PUT) || m->len < 6)
		return -EPROTO;
	md = get_le32(m->payload);
	if (!mode_ok(md) || tail_str(m, 4, path) || !(*path)[0])
		return -EPROTO;
	*mode = md;
	return 0;
}

int smolvm_agent_parse_path(const struct smolvm_agent_msg *m, uint8_t type, const char **path)
{
	if (!frame_ok(m, type) || tail_str(m, 0, path) || !(*path)[0])
		return -EPROTO;
	return 0;
}

int smolvm_agent_parse_link(const struct smolvm_agent_msg *m, const char **path,
			    const char **target)
{
	size_t n;

	if (!frame_ok(m, SMOLVM_AGENT_LINK) || !m->len)
		return -EPROTO;
	n = str_at(m->payload, m->len);
	if (n < 2 || tail_str(m, n, target) || !(*target)[0])
		return -EPROTO;
	*path = (const char *)m->payload;
	return 0;
}

int smolvm_agent_parse_error(const struct smolvm_agent_msg *m, uint32_t *err, const char **msg)
{
	uint32_t e;

	if (!frame_ok(m, SMOLVM_AGENT_ERROR) || m->len < 5)
		return -EPROTO;
	e = get_le32(m->payload);
	if (e < 1 || e > ERRNO_MAX || tail_str(m, 4, msg))
		return -EPROTO;
	*err = e;
	return 0;
}

const char *smolvm_agent_type_name(uint8_t type)
{
	static const char *const names[] = {
		[SMOLVM_AGENT_HELLO] = "HELLO",   [SMOLVM_AGENT_SYNC] = "SYNC",
		[SMOLVM_AGENT_EXEC] = "EXEC",     [SMOLVM_AGENT_STDIN] = "STDIN",
		[SMOLVM_AGENT_STDOUT] = "STDOUT", [SMOLVM_AGENT_STDERR] = "STDERR",
		[SMOLVM_AGENT_SIGNAL] = "SIGNAL", [SMOLVM_AGENT_EXIT] = "EXIT",
		[SMOLVM_AGENT_PUT] = "PUT",       [SMOLVM_AGENT_GET] = "GET",
		[SMOLVM_AGENT_DATA] = "DATA",     [SMOLVM_AGENT_OK] = "OK",
		[SMOLVM_AGENT_ERROR] = "ERROR",   [SMOLVM_AGENT_STARTED] = "STARTED",
		[SMOLVM_AGENT_LINK] = "LINK",
	};
	return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type] : "?";
}
