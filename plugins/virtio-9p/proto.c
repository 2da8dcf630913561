/* 9P2000.L codec (proto.h): bytes in, a struct out, and back. No I/O. */
#include "proto.h"

#include <errno.h>
#include <string.h>

struct rd {
	const uint8_t *p;
	size_t len, off;
	int bad;
};

static int need(struct rd *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		return 0;
	}
	return 1;
}

static uint8_t u8(struct rd *r)
{
	return need(r, 1) ? r->p[r->off++] : 0;
}

static uint16_t u16(struct rd *r)
{
	uint16_t v;

	if (!need(r, 2))
		return 0;
	v = (uint16_t)(r->p[r->off] | r->p[r->off + 1] << 8);
	r->off += 2;
	return v;
}

static uint32_t u32(struct rd *r)
{
	uint32_t v;

	if (!need(r, 4))
		return 0;
	v = p9_get_le32(r->p + r->off);
	r->off += 4;
	return v;
}

static uint64_t u64(struct rd *r)
{
	uint64_t lo = u32(r);

	return lo | (uint64_t)u32(r) << 32;
}

/* A string: len[2] bytes; a NUL inside would cut a name short on the host
 * side, so it makes the message malformed. */
static struct p9_str str(struct rd *r)
{
	struct p9_str s = { "", 0 };
	uint16_t n = u16(r);

	if (!need(r, n))
		return s;
	if (memchr(r->p + r->off, 0, n)) {
		r->bad = 1;
		return s;
	}
	s.s = (const char *)r->p + r->off;
	s.len = n;
	r->off += n;
	return s;
}

int p9_decode(const uint8_t *buf, size_t len, struct p9_req *q)
{
	struct rd r = { buf, len, 0, 0 };
	uint32_t size;

	memset(q, 0, sizeof(*q));
	q->tag = 0xffff;
	if (len < P9_HDR)
		return -EBADMSG;
	size = u32(&r);
	q->type = u8(&r);
	q->tag = u16(&r);
	if (size != len)
		return -EBADMSG;

	switch (q->type) {
	case P9_TVERSION:
		q->msize = u32(&r);
		q->version = str(&r);
		break;
	case P9_TAUTH:
		q->afid = u32(&r);
		q->uname = str(&r);
		q->aname = str(&r);
		q->n_uname = u32(&r);
		break;
	case P9_TATTACH:
		q->fid = u32(&r);
		q->afid = u32(&r);
		q->uname = str(&r);
		q->aname = str(&r);
		q->n_uname = u32(&r);
		break;
	case P9_TFLUSH:
		q->count = u16(&r); /* oldtag */
		break;
	case P9_TWALK:
		q->fid = u32(&r);
		q->newfid = u32(&r);
		q->nwname = u16(&r);
		if (q->nwname > P9_MAXWELEM)
			return -EBADMSG;
		for (unsigned i = 0; i < q->nwname; i++)
			q->wnames[i] = str(&r);
		break;
	case P9_TREAD:
		q->fid = u32(&r);
		q->offset = u64(&r);
		q->count = u32(&r);
		break;
	case P9_TWRITE:
		q->fid = u32(&r);
		q->offset = u64(&r);
		q->count = u32(&r);
		if (need(&r, q->count)) {
			q->data = buf + r.off;
			r.off += q->count;
		}
		break;
	case P9_TCLUNK:
	case P9_TREMOVE:
	case P9_TREADLINK:
	case P9_TSTATFS:
		q->fid = u32(&r);
		break;
	case P9_TLOPEN:
		q->fid = u32(&r);
		q->flags = u32(&r);
		break;
	case P9_TLCREATE:
		q->fid = u32(&r);
		q->name = str(&r);
		q->flags = u32(&r);
		q->mode = u32(&r);
		q->gid = u32(&r);
		break;
	case P9_TSYMLINK:
		q->fid = u32(&r);
		q->name = str(&r);
		q->target = str(&r);
		q->gid = u32(&r);
		break;
	case P9_TMKNOD:
		q->dfid = u32(&r);
		q->name = str(&r);
		q->mode = u32(&r);
		q->major = u32(&r);
		q->minor = u32(&r);
		q->gid = u32(&r);
		break;
	case P9_TRENAME:
		q->fid = u32(&r);
		q->dfid = u32(&r);
		q->name = str(&r);
		break;
	case P9_TGETATTR:
		q->fid = u32(&r);
		q->mask = u64(&r);
		break;
	case P9_TSETATTR:
		q->fid = u32(&r);
		q->valid = u32(&r);
		q->mode = u32(&r);
		q->uid = u32(&r);
		q->gid = u32(&r);
		q->size = u64(&r);
		q->atime_sec = u64(&r);
		q->atime_nsec = u64(&r);
		q->mtime_sec = u64(&r);
		q->mtime_nsec = u64(&r);
		break;
	case P9_TXATTRWALK:
		q->fid = u32(&r);
		q->newfid = u32(&r);
		q->name = str(&r);
		break;
	case P9_TXATTRCREATE:
		q->fid = u32(&r);
		q->name = str(&r);
		q->attr_size = u64(&r);
		q->flags = u32(&r);
		break;
	case P9_TREADDIR:
		q->fid = u32(&r);
		q->offset = u64(&r);
		q->count = u32(&r);
		break;
	case P9_TFSYNC:
		q->fid = u32(&r);
		/* datasync[4] came later (Linux 4.x); older clients omit it */
		if (r.len - r.off >= 4)
			q->datasync = u32(&r);
		break;
	case P9_TLOCK:
		q->fid = u32(&r);
		q->lock_type = u8(&r);
		q->flags = u32(&r);
		q->start = u64(&r);
		q->length = u64(&r);
		q->proc_id = u32(&r);
		q->client_id = str(&r);
		break;
	case P9_TGETLOCK:
		q->fid = u32(&r);
		q->lock_type = u8(&r);
		q->start = u64(&r);
		q->length = u64(&r);
		q->proc_id = u32(&r);
		q->client_id = str(&r);
		break;
	case P9_TLINK:
		q->dfid = u32(&r);
		q->fid = u32(&r);
		q->name = str(&r);
		break;
	case P9_TMKDIR:
		q->dfid = u32(&r);
		q->name = str(&r);
		q->mode = u32(&r);
		q->gid = u32(&r);
		break;
	case P9_TRENAMEAT:
		q->fid = u32(&r);
		q->name = str(&r);
		q->dfid = u32(&r);
		q->name2 = str(&r);
		break;
	case P9_TUNLINKAT:
		q->dfid = u32(&r);
		q->name = str(&r);
		q->flags = u32(&r);
		break;
	default:
		return -EOPNOTSUPP;
	}
	/* trailing bytes are tolerated (a newer client's extra fields) */
	return r.bad ? -EBADMSG : 0;
}

/* ---- replies ---------------------------------------------------------------- */

static uint8_t *room(struct p9_out *o, size_t n)
{
	uint8_t *p;

	if (o->err || o->cap - o->len < n) {
		o->err = 1;
		return NULL;
	}
	p = o->p + o->len;
	o->len += n;
	return p;
}

static void put_le(struct p9_out *o, uint64_t v, unsigned n)
{
	uint8_t *p = room(o, n);

	for (unsigned i = 0; p && i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void p9_put_u8(struct p9_out *o, uint8_t v) { put_le(o, v, 1); }
void p9_put_u16(struct p9_out *o, uint16_t v) { put_le(o, v, 2); }
void p9_put_u32(struct p9_out *o, uint32_t v) { put_le(o, v, 4); }
void p9_put_u64(struct p9_out *o, uint64_t v) { put_le(o, v, 8); }

void p9_put_str(struct p9_out *o, const char *s, size_t len)
{
	uint8_t *p;

	if (len > UINT16_MAX) {
		o->err = 1;
		return;
	}
	p9_put_u16(o, (uint16_t)len);
	p = room(o, len);
	if (p && len)
		memcpy(p, s, len);
}

void p9_put_qid(struct p9_out *o, const struct p9_qid *q)
{
	p9_put_u8(o, q->type);
	p9_put_u32(o, q->version);
	p9_put_u64(o, q->path);
}

uint8_t *p9_reserve(struct p9_out *o, size_t n)
{
	return room(o, n);
}

void p9_begin(struct p9_out *o, uint8_t *buf, size_t cap, uint8_t type, uint16_t tag)
{
	o->p = buf;
	o->cap = cap;
	o->len = 0;
	o->err = 0;
	p9_put_u32(o, 0); /* the size, stored by p9_end */
	p9_put_u8(o, type);
	p9_put_u16(o, tag);
}

size_t p9_end(struct p9_out *o)
{
	if (o->err || o->len > UINT32_MAX)
		return 0;
	for (unsigned i = 0; i < 4; i++)
		o->p[i] = (uint8_t)(o->len >> (8 * i));
	return o->len;
}

size_t p9_error(uint8_t *buf, size_t cap, uint16_t tag, uint32_t ecode)
{
	struct p9_out o;

	p9_begin(&o, buf, cap, P9_RLERROR, tag);
	p9_put_u32(&o, ecode);
	return p9_end(&o);
}
