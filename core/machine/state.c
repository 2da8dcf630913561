#include "machine/state.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HDR 8
#define MAX_NAME 255

static uint32_t type_size(enum smolvm_state_type t)
{
	switch (t) {
	case SMOLVM_STATE_U8: return 1;
	case SMOLVM_STATE_U16: return 2;
	case SMOLVM_STATE_U32: return 4;
	case SMOLVM_STATE_U64: return 8;
	default: return 0;
	}
}

void state_writer_init(struct smolvm_state_writer *w)
{
	memset(w, 0, sizeof(*w));
}

void state_writer_free(struct smolvm_state_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

static int emit(struct smolvm_state_writer *w, uint8_t kind, uint8_t type,
		const char *name, const void *data, uint32_t len)
{
	size_t nlen = strlen(name), need;
	unsigned char *p;

	if (w->failed)
		return w->failed;
	if (nlen > MAX_NAME || (kind != REC_END && !nlen))
		return w->failed = -EINVAL;
	need = w->len + HDR + nlen + len;
	if (need > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < need)
			cap *= 2;
		p = realloc(w->buf, cap);
		if (!p)
			return w->failed = -ENOMEM;
		w->buf = p;
		w->cap = cap;
	}
	p = w->buf + w->len;
	p[0] = kind;
	p[1] = type;
	p[2] = (uint8_t)nlen;
	p[3] = (uint8_t)(nlen >> 8);
	uint32_t le = htole32(len);
	memcpy(p + 4, &le, 4);
	memcpy(p + HDR, name, nlen);
	if (len)
		memcpy(p + HDR + nlen, data, len);
	w->len = need;
	return 0;
}

int state_put(struct smolvm_state_writer *w, const char *name,
	      enum smolvm_state_type type, const void *data, uint32_t len)
{
	uint32_t sz = type_size(type);
	unsigned char le[8];

	if (type == SMOLVM_STATE_BYTES)
		return emit(w, REC_FIELD, type, name, data, len);
	if (!sz || sz != len)
		return w->failed = -EINVAL;
	/* Integers are stored little-endian whatever the host. */
	switch (sz) {
	case 1: memcpy(le, data, 1); break;
	case 2: { uint16_t v; memcpy(&v, data, 2); v = htole16(v); memcpy(le, &v, 2); break; }
	case 4: { uint32_t v; memcpy(&v, data, 4); v = htole32(v); memcpy(le, &v, 4); break; }
	case 8: { uint64_t v; memcpy(&v, data, 8); v = htole64(v); memcpy(le, &v, 8); break; }
	}
	return emit(w, REC_FIELD, type, name, le, sz);
}

int state_begin(struct smolvm_state_writer *w, const char *name, int optional)
{
	if (w->depth >= STATE_MAX_DEPTH - 1)
		return w->failed = -E2BIG;
	w->depth++;
	return emit(w, REC_BEGIN, optional ? STATE_SECTION_OPTIONAL : 0, name, NULL, 0);
}

int state_end(struct smolvm_state_writer *w)
{
	if (w->depth <= 0)
		return w->failed = -EINVAL;
	w->depth--;
	return emit(w, REC_END, 0, "", NULL, 0);
}

int state_reader_init(struct smolvm_state_reader *r, const void *buf, size_t len,
		      struct err *e)
{
	const unsigned char *p = buf, *end = p + len;
	int32_t stack[STATE_MAX_DEPTH];
	int depth = 0;
	size_t cap = 0;

	memset(r, 0, sizeof(*r));
	r->depth = 0;
	while (p < end) {
		struct state_rec rec = { 0 };
		uint32_t dlen;

		if ((size_t)(end - p) < HDR)
			goto trunc;
		rec.kind = p[0];
		rec.type = p[1];
		rec.name_len = (uint16_t)(p[2] | p[3] << 8);
		memcpy(&dlen, p + 4, 4);
		dlen = le32toh(dlen);
		if (rec.name_len > MAX_NAME || (size_t)(end - p) - HDR < rec.name_len ||
		    (size_t)(end - p) - HDR - rec.name_len < dlen)
			goto trunc;
		rec.name = (const char *)p + HDR;
		rec.data = p + HDR + rec.name_len;
		rec.data_len = dlen;
		rec.parent = depth ? stack[depth - 1] : -1;
		rec.end = -1;
		p += HDR + rec.name_len + dlen;

		switch (rec.kind) {
		case REC_FIELD:
			if (!rec.name_len ||
			    (rec.type != SMOLVM_STATE_BYTES &&
			     (!type_size(rec.type) || type_size(rec.type) != dlen)))
				goto bad;
			break;
		case REC_BEGIN:
			if (!rec.name_len || dlen || depth >= STATE_MAX_DEPTH)
				goto bad;
			break;
		case REC_END:
			if (rec.name_len || dlen || !depth)
				goto bad;
			break;
		default:
			goto bad;
		}
		if (r->n == cap) {
			cap = cap ? cap * 2 : 32;
			struct state_rec *nv = realloc(r->recs, cap * sizeof(*nv));
			if (!nv) {
				state_reader_free(r);
				return err_set(e, -ENOMEM, "out of memory");
			}
			r->recs = nv;
		}
		if (rec.kind == REC_BEGIN)
			stack[depth++] = (int32_t)r->n;
		else if (rec.kind == REC_END)
			r->recs[stack[--depth]].end = (int32_t)r->n;
		r->recs[r->n++] = rec;
	}
	if (depth)
		goto trunc;
	return 0;
trunc:
	state_reader_free(r);
	return err_set(e, -EBADMSG, "state truncated or unbalanced");
bad:
	state_reader_free(r);
	return err_set(e, -EBADMSG, "malformed state record");
}

void state_reader_free(struct smolvm_state_reader *r)
{
	free(r->recs);
	memset(r, 0, sizeof(*r));
}

/* Direct child of the current section named `name` of `kind`. */
static struct state_rec *find(struct smolvm_state_reader *r, const char *name, uint8_t kind)
{
	int32_t parent = r->depth ? r->stack[r->depth - 1] : -1;
	size_t nlen = strlen(name);
	size_t i = parent < 0 ? 0 : (size_t)parent + 1;
	size_t stop = parent < 0 ? r->n : (size_t)r->recs[parent].end;

	while (i < stop) {
		struct state_rec *c = &r->recs[i];
		if (c->kind == kind && c->name_len == nlen && !memcmp(c->name, name, nlen))
			return c;
		i = c->kind == REC_BEGIN ? (size_t)c->end + 1 : i + 1;
	}
	return NULL;
}

int state_get(struct smolvm_state_reader *r, const char *name,
	      enum smolvm_state_type type, void *data, uint32_t len)
{
	struct state_rec *c = find(r, name, REC_FIELD);

	if (!c)
		return -ENOENT;
	if (c->type != type || c->data_len != len)
		return -EBADMSG;
	switch (type) {
	case SMOLVM_STATE_U16: { uint16_t v; memcpy(&v, c->data, 2); v = le16toh(v); memcpy(data, &v, 2); break; }
	case SMOLVM_STATE_U32: { uint32_t v; memcpy(&v, c->data, 4); v = le32toh(v); memcpy(data, &v, 4); break; }
	case SMOLVM_STATE_U64: { uint64_t v; memcpy(&v, c->data, 8); v = le64toh(v); memcpy(data, &v, 8); break; }
	default: memcpy(data, c->data, len);
	}
	c->visited = 1;
	return 0;
}

int state_enter(struct smolvm_state_reader *r, const char *name)
{
	struct state_rec *c;

	if (r->depth >= STATE_MAX_DEPTH)
		return -E2BIG;
	c = find(r, name, REC_BEGIN);
	if (!c)
		return -ENOENT;
	c->visited = 1;
	r->stack[r->depth++] = (int32_t)(c - r->recs);
	return 0;
}

int state_leave(struct smolvm_state_reader *r)
{
	if (!r->depth)
		return -EINVAL;
	r->depth--;
	return 0;
}

int state_reader_check(struct smolvm_state_reader *r, struct err *e)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct state_rec *c = &r->recs[i];
		if (c->kind != REC_BEGIN || c->visited)
			continue;
		if (!(c->type & STATE_SECTION_OPTIONAL))
			return err_set(e, -EPROTO, "unknown required state section \"%.*s\"",
				       c->name_len, c->name);
		i = (size_t)c->end; /* skipped whole, children included */
	}
	return 0;
}

int state_dump(FILE *f, const void *buf, size_t len, const char *indent, struct err *e)
{
	struct smolvm_state_reader r;
	int depth = 0, rc = state_reader_init(&r, buf, len, e);

	for (size_t i = 0; !rc && i < r.n; i++) {
		const struct state_rec *s = &r.recs[i];
		uint64_t v = 0;
		if (s->kind == REC_END) {
			depth--;
			fprintf(f, "%s%*s}\n", indent, 2 * depth, "");
			continue;
		}
		fprintf(f, "%s%*s%.*s", indent, 2 * depth, "", (int)s->name_len, s->name);
		if (s->kind == REC_BEGIN) {
			fprintf(f, " {%s\n", s->type & STATE_SECTION_OPTIONAL ? " (optional)" : "");
			depth++;
		} else if (s->type == SMOLVM_STATE_BYTES) {
			fprintf(f, " = %u bytes", s->data_len);
			for (uint32_t k = 0; k < s->data_len && k < 16; k++)
				fprintf(f, "%s%02x", k ? "" : " ", s->data[k]);
			fprintf(f, "%s\n", s->data_len > 16 ? "..." : "");
		} else {
			for (uint32_t k = s->data_len; k-- > 0;)
				v = v << 8 | s->data[k];
			fprintf(f, " = %llu (0x%llx)\n", (unsigned long long)v, (unsigned long long)v);
		}
	}
	state_reader_free(&r);
	return rc;
}
