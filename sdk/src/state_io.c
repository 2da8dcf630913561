/* The typed state writer and reader of <smolvm/state.h> (SDK 1.1): error
 * paths, optional sections and limits over the host API's state entries.
 * Uses nothing but the host API, like a plugin. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <smolvm/state.h>

/* set_error("<prefix><message>"). */
static void report(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *prefix,
		   const char *fmt, va_list ap) SMOLVM_PRINTF(4, 0);

static void report(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *prefix,
		   const char *fmt, va_list ap)
{
	char msg[768];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	api->set_error(ctx, "%s%s", prefix ? prefix : "", msg);
}

/* ---- writing ------------------------------------------------------------------ */

void smolvm_state_out_init(struct smolvm_state_out *o, const struct smolvm_host_api *api,
			   smolvm_ctx *ctx, struct smolvm_state_writer *w)
{
	memset(o, 0, sizeof(*o));
	o->api = api;
	o->ctx = ctx;
	o->w = w;
}

static void note(struct smolvm_state_out *o, int rc)
{
	if (rc < 0 && !o->rc)
		o->rc = rc;
}

void smolvm_state_put(struct smolvm_state_out *o, const char *name,
		      enum smolvm_state_type type, const void *data, uint32_t len)
{
	if (!o->rc)
		note(o, o->api->state_put(o->w, name, type, data, len));
}

void smolvm_state_put_u8(struct smolvm_state_out *o, const char *name, uint8_t v)
{
	smolvm_state_put(o, name, SMOLVM_STATE_U8, &v, sizeof(v));
}

void smolvm_state_put_u16(struct smolvm_state_out *o, const char *name, uint16_t v)
{
	smolvm_state_put(o, name, SMOLVM_STATE_U16, &v, sizeof(v));
}

void smolvm_state_put_u32(struct smolvm_state_out *o, const char *name, uint32_t v)
{
	smolvm_state_put(o, name, SMOLVM_STATE_U32, &v, sizeof(v));
}

void smolvm_state_put_u64(struct smolvm_state_out *o, const char *name, uint64_t v)
{
	smolvm_state_put(o, name, SMOLVM_STATE_U64, &v, sizeof(v));
}

void smolvm_state_put_bytes(struct smolvm_state_out *o, const char *name, const void *data,
			    uint32_t len)
{
	smolvm_state_put(o, name, SMOLVM_STATE_BYTES, data, len);
}

void smolvm_state_put_fields(struct smolvm_state_out *o, const struct smolvm_state_field *f,
			     size_t n, const void *base)
{
	for (size_t i = 0; i < n; i++)
		smolvm_state_put(o, f[i].name, (enum smolvm_state_type)f[i].type,
				 (const char *)base + f[i].offset, f[i].size);
}

static void begin(struct smolvm_state_out *o, const char *name, int optional)
{
	if (!o->rc)
		note(o, o->api->state_begin(o->w, name, optional));
}

void smolvm_state_begin(struct smolvm_state_out *o, const char *name)
{
	begin(o, name, 0);
}

void smolvm_state_begin_opt(struct smolvm_state_out *o, const char *name)
{
	begin(o, name, 1);
}

void smolvm_state_end(struct smolvm_state_out *o)
{
	if (!o->rc)
		note(o, o->api->state_end(o->w));
}

int smolvm_state_out_fail(struct smolvm_state_out *o, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(o->api, o->ctx, o->prefix, fmt, ap);
	va_end(ap);
	if (!o->rc) {
		o->rc = rc < 0 ? rc : -EIO;
		o->reported = 1;
	}
	return rc;
}

int smolvm_state_out_done(struct smolvm_state_out *o)
{
	if (o->rc && !o->reported) {
		o->api->set_error(o->ctx, "%scannot write the state: %s",
				  o->prefix ? o->prefix : "", strerror(-o->rc));
		o->reported = 1;
	}
	return o->rc;
}

/* ---- reading ------------------------------------------------------------------ */

void smolvm_state_in_init(struct smolvm_state_in *in, const struct smolvm_host_api *api,
			  smolvm_ctx *ctx, struct smolvm_state_reader *r)
{
	memset(in, 0, sizeof(*in));
	in->api = api;
	in->ctx = ctx;
	in->r = r;
}

void smolvm_state_in_done(struct smolvm_state_in *in)
{
	while (in->depth)
		smolvm_state_leave(in);
}

int smolvm_state_in_fail(struct smolvm_state_in *in, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(in->api, in->ctx, in->prefix, fmt, ap);
	va_end(ap);
	return rc;
}

/* "." between the path and a name, unless at the top. */
static const char *sep(const struct smolvm_state_in *in)
{
	return in->path[0] ? "." : "";
}

int smolvm_state_enter_opt(struct smolvm_state_in *in, const char *name, int *missing)
{
	int rc = in->depth < SMOLVM_STATE_MAX_DEPTH ? in->api->state_enter(in->r, name) : -E2BIG;
	size_t len = strlen(in->path);

	if (missing)
		*missing = rc == -ENOENT;
	if (rc == -ENOENT && missing)
		return 0;
	if (rc < 0)
		return smolvm_state_in_fail(in, rc, "section %s%s%s: %s", in->path, sep(in), name,
					    rc == -ENOENT ? "missing" : strerror(-rc));
	in->mark[in->depth++] = len;
	snprintf(in->path + len, sizeof(in->path) - len, "%s%s", len ? "." : "", name);
	return 0;
}

int smolvm_state_enter(struct smolvm_state_in *in, const char *name)
{
	return smolvm_state_enter_opt(in, name, NULL);
}

void smolvm_state_leave(struct smolvm_state_in *in)
{
	if (!in->depth)
		return;
	in->api->state_leave(in->r);
	in->path[in->mark[--in->depth]] = '\0';
}

int smolvm_state_get_opt(struct smolvm_state_in *in, const char *name,
			 enum smolvm_state_type type, void *data, uint32_t len)
{
	int rc = in->api->state_get(in->r, name, type, data, len);

	if (rc == -ENOENT || rc >= 0)
		return rc < 0 ? rc : 0;
	if (rc == -EBADMSG)
		return smolvm_state_in_fail(in, rc,
					    "%s%s%s: wrong type or size (want %s of %u bytes)",
					    in->path, sep(in), name,
					    type == SMOLVM_STATE_BYTES ? "bytes" : "an integer",
					    len);
	return smolvm_state_in_fail(in, rc, "%s%s%s: %s", in->path, sep(in), name, strerror(-rc));
}

int smolvm_state_get(struct smolvm_state_in *in, const char *name,
		     enum smolvm_state_type type, void *data, uint32_t len)
{
	int rc = smolvm_state_get_opt(in, name, type, data, len);

	if (rc == -ENOENT)
		return smolvm_state_in_fail(in, rc, "%s%s%s: field missing", in->path, sep(in),
					    name);
	return rc;
}

int smolvm_state_get_u8(struct smolvm_state_in *in, const char *name, uint8_t *v)
{
	return smolvm_state_get(in, name, SMOLVM_STATE_U8, v, sizeof(*v));
}

int smolvm_state_get_u16(struct smolvm_state_in *in, const char *name, uint16_t *v)
{
	return smolvm_state_get(in, name, SMOLVM_STATE_U16, v, sizeof(*v));
}

int smolvm_state_get_u32(struct smolvm_state_in *in, const char *name, uint32_t *v)
{
	return smolvm_state_get(in, name, SMOLVM_STATE_U32, v, sizeof(*v));
}

int smolvm_state_get_u64(struct smolvm_state_in *in, const char *name, uint64_t *v)
{
	return smolvm_state_get(in, name, SMOLVM_STATE_U64, v, sizeof(*v));
}

int smolvm_state_get_fields(struct smolvm_state_in *in, const struct smolvm_state_field *f,
			    size_t n, void *base, uint32_t version)
{
	for (size_t i = 0; i < n; i++) {
		if (f[i].since > version)
			continue;
		int rc = smolvm_state_get(in, f[i].name, (enum smolvm_state_type)f[i].type,
					  (char *)base + f[i].offset, f[i].size);
		if (rc)
			return rc;
	}
	return 0;
}

int smolvm_state_bad(struct smolvm_state_in *in, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return smolvm_state_in_fail(in, -EINVAL, "%s%s%s: %s", in->path, sep(in), field, msg);
}

int smolvm_state_check_limits(struct smolvm_state_in *in, const struct smolvm_state_limit *l,
			      size_t n, const void *base)
{
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = (const unsigned char *)base + l[i].offset;
		uint64_t v = 0;

		switch (l[i].size) {
		case 1: v = *p; break;
		case 2: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
		case 4: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
		case 8: memcpy(&v, p, 8); break;
		default:
			return smolvm_state_bad(in, l[i].name, "not an integer (%u bytes)",
						l[i].size);
		}
		if (v > l[i].max)
			return smolvm_state_bad(in, l[i].name, "%llu is out of range (at most %llu)",
						(unsigned long long)v,
						(unsigned long long)l[i].max);
	}
	return 0;
}
