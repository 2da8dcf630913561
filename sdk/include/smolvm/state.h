/* Describe device state once, save and load it with one routine each.
 *
 *   struct uart { uint8_t ier, lcr; ... };
 *   static const struct smolvm_state_field uart_fields[] = {
 *       SMOLVM_FIELD(struct uart, ier, SMOLVM_STATE_U8, 1),
 *       ...
 *   };
 *   smolvm_state_save_fields(api, w, uart_fields, N, u);
 *
 * A field added in state version 2 carries `since` = 2: loading a version-1
 * blob leaves it at the value create() gave it.
 *
 * Changes (the SDK's; the binary ABI is <smolvm/plugin.h>'s):
 *  - SDK 1.1: SMOLVM_FIELD() checks its type tag at compile time (C only);
 *    SMOLVM_FIELD_NAMED(), SMOLVM_LIMIT(); the typed writer and reader
 *    (struct smolvm_state_out, struct smolvm_state_in) in libsmolvm-sdk.a.
 *    No new host API entry: the ABI stays 1.1.
 */
#ifndef SMOLVM_STATE_H
#define SMOLVM_STATE_H

#include <errno.h>
#include <smolvm/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

struct smolvm_state_field {
	const char *name;
	uint32_t type;   /* enum smolvm_state_type */
	uint32_t offset; /* in the device struct */
	uint32_t size;   /* bytes; fixed for integers */
	uint32_t since;  /* first state version that has it */
};

/* SDK 1.1: the type tag an lvalue of this type takes: an integer of 1, 2,
 * 4 or 8 bytes is U8 .. U64, anything else (an array, a struct) BYTES.
 * C11 (_Generic, _Static_assert); older C and C++ go unchecked. */
#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define SMOLVM_STATE_TYPE_OF(lv)                                                \
	(_Generic((lv), _Bool: 1, char: 1, signed char: 1, unsigned char: 1,   \
		  short: 1, unsigned short: 1, int: 1, unsigned int: 1, long: 1, \
		  unsigned long: 1, long long: 1, unsigned long long: 1,          \
		  default: 0)                                                     \
		 ? (sizeof(lv) == 1   ? SMOLVM_STATE_U8                           \
		    : sizeof(lv) == 2 ? SMOLVM_STATE_U16                          \
		    : sizeof(lv) == 4 ? SMOLVM_STATE_U32                          \
		    : sizeof(lv) == 8 ? SMOLVM_STATE_U64                          \
				      : 0)                                        \
		 : SMOLVM_STATE_BYTES)
/* 0, or a compile error when `stype` is not the tag `lv` takes. */
#define SMOLVM_STATE_CHECK_TAG_(lv, stype)                                      \
	(0 * sizeof(struct {                                                    \
		int smolvm_tag_check_;                                          \
		_Static_assert((stype) == SMOLVM_STATE_TYPE_OF(lv),             \
			       "smolvm/state.h: the type tag does not match the " \
			       "member's type (an integer of N bytes takes "     \
			       "SMOLVM_STATE_U<8N>, an array or struct BYTES)");  \
	}))
#else
#define SMOLVM_STATE_CHECK_TAG_(lv, stype) 0
#endif

/* A field of `type_` named after its member. The tag must match the
 * member's type (checked at compile time in C): a uint32_t member tagged
 * SMOLVM_STATE_U8 does not compile. `member` may be a path
 * ("exception.nr", "db[2]"). */
#define SMOLVM_FIELD(type_, member, stype, since_)                             \
	SMOLVM_FIELD_NAMED(#member, type_, member, stype, since_)

/* SDK 1.1: the same, with a name of its own. */
#define SMOLVM_FIELD_NAMED(name_, type_, member, stype, since_)                \
	{ (name_), (stype),                                                    \
	  (uint32_t)(offsetof(type_, member) +                                 \
		     SMOLVM_STATE_CHECK_TAG_(((type_ *)0)->member, stype)),     \
	  (uint32_t)sizeof(((type_ *)0)->member), (since_) }

#define SMOLVM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline int smolvm_state_save_fields(const struct smolvm_host_api *api,
					   struct smolvm_state_writer *w,
					   const struct smolvm_state_field *f,
					   size_t n, const void *base)
{
	for (size_t i = 0; i < n; i++) {
		int rc = api->state_put(w, f[i].name, (enum smolvm_state_type)f[i].type,
					(const char *)base + f[i].offset, f[i].size);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static inline int smolvm_state_load_fields(const struct smolvm_host_api *api,
					   struct smolvm_state_reader *r,
					   const struct smolvm_state_field *f,
					   size_t n, void *base,
					   uint32_t saved_version)
{
	for (size_t i = 0; i < n; i++) {
		if (f[i].since > saved_version)
			continue;
		int rc = api->state_get(r, f[i].name, (enum smolvm_state_type)f[i].type,
					(char *)base + f[i].offset, f[i].size);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- SDK 1.1: the typed writer and reader -----------------------------------
 *
 * Helpers over the host API's state entries (state_put, state_get,
 * state_begin, state_end, state_enter, state_leave) and set_error, all
 * there since ABI 1.0: nothing new crosses the ABI. They are in
 * libsmolvm-sdk.a (link `pkg-config --libs smolvm-plugin`) and, like
 * <smolvm/virtio.h>, source API: these structs may change between SDK
 * releases (rebuild to pick up a new one); the bytes they write do not.
 *
 * Writing: the first failure sticks and later calls do nothing, so a save
 * is a list of puts and one check at the end:
 *
 *   struct smolvm_state_out o;
 *   smolvm_state_out_init(&o, api, ctx, w);
 *   smolvm_state_put_fields(&o, fields, SMOLVM_ARRAY_LEN(fields), &copy);
 *   smolvm_state_begin(&o, "queue");
 *   smolvm_state_put_u32(&o, "head", head);
 *   smolvm_state_end(&o);
 *   return smolvm_state_out_done(&o);
 *
 * Reading: each call returns 0 or -errno after set_error() with the path of
 * what failed ("queue.head: field missing", "queue.head: 70 is out of range
 * (at most 63)"); the state is hostile input, so check every value:
 *
 *   struct smolvm_state_in in;
 *   smolvm_state_in_init(&in, api, ctx, r);
 *   if ((rc = smolvm_state_get_fields(&in, fields, N, &tmp, version)) ||
 *       (rc = smolvm_state_enter(&in, "queue")) ||
 *       (rc = smolvm_state_get_u32(&in, "head", &head)))
 *           goto out;
 *   if (head > 63)
 *           rc = smolvm_state_bad(&in, "head", "%u is out of range (at most 63)", head);
 * out:
 *   smolvm_state_in_done(&in); // leaves the sections still entered
 *
 * Missing fields and sections: smolvm_state_get() and smolvm_state_enter()
 * report them as errors (-ENOENT); the _opt variants return -ENOENT (or
 * set *missing) silently, for state a newer version added.
 */

#define SMOLVM_STATE_MAX_DEPTH 8 /* sections entered at once */
#define SMOLVM_STATE_PATH_MAX 128

struct smolvm_state_out {
	const struct smolvm_host_api *api;
	smolvm_ctx *ctx;
	struct smolvm_state_writer *w;
	const char *prefix; /* put before each message ("vcpu 0 state: "), or NULL */
	int rc;             /* the first failure, -errno; 0 so far */
	int reported;       /* set_error() was called for it */
};

void smolvm_state_out_init(struct smolvm_state_out *o, const struct smolvm_host_api *api,
			   smolvm_ctx *ctx, struct smolvm_state_writer *w);
void smolvm_state_put(struct smolvm_state_out *o, const char *name,
		      enum smolvm_state_type type, const void *data, uint32_t len);
void smolvm_state_put_u8(struct smolvm_state_out *o, const char *name, uint8_t v);
void smolvm_state_put_u16(struct smolvm_state_out *o, const char *name, uint16_t v);
void smolvm_state_put_u32(struct smolvm_state_out *o, const char *name, uint32_t v);
void smolvm_state_put_u64(struct smolvm_state_out *o, const char *name, uint64_t v);
void smolvm_state_put_bytes(struct smolvm_state_out *o, const char *name, const void *data,
			    uint32_t len);
/* Every field of the table, from `base` (whatever its `since`). */
void smolvm_state_put_fields(struct smolvm_state_out *o, const struct smolvm_state_field *f,
			     size_t n, const void *base);
/* A section: required (a reader that does not know it refuses the state)
 * or optional (skipped by a reader that does not know it). */
void smolvm_state_begin(struct smolvm_state_out *o, const char *name);
void smolvm_state_begin_opt(struct smolvm_state_out *o, const char *name);
void smolvm_state_end(struct smolvm_state_out *o);
/* The save fails for a reason of the plugin's own: set_error() with the
 * prefix, and the failure sticks. Returns `rc` (-errno). */
int smolvm_state_out_fail(struct smolvm_state_out *o, int rc, const char *fmt, ...)
	SMOLVM_PRINTF(3, 4);
/* 0, or the first failure: -errno after set_error() ("cannot write the
 * state: ..." unless smolvm_state_out_fail() said why). */
int smolvm_state_out_done(struct smolvm_state_out *o);

struct smolvm_state_in {
	const struct smolvm_host_api *api;
	smolvm_ctx *ctx;
	struct smolvm_state_reader *r;
	const char *prefix; /* put before each message ("vcpu 0 state: "), or NULL */
	char path[SMOLVM_STATE_PATH_MAX]; /* the sections entered: "sregs.cs" */
	size_t mark[SMOLVM_STATE_MAX_DEPTH];
	int depth;
};

void smolvm_state_in_init(struct smolvm_state_in *in, const struct smolvm_host_api *api,
			  smolvm_ctx *ctx, struct smolvm_state_reader *r);
/* Leaves every section still entered. */
void smolvm_state_in_done(struct smolvm_state_in *in);
/* Enters section `name` of the current one: 0, or -errno (-ENOENT when it
 * is absent: "section a.b: missing"). */
int smolvm_state_enter(struct smolvm_state_in *in, const char *name);
/* The same, for a section that may be absent: then 0 with *missing set
 * (nothing entered). */
int smolvm_state_enter_opt(struct smolvm_state_in *in, const char *name, int *missing);
void smolvm_state_leave(struct smolvm_state_in *in);
/* A field of the current section, of exactly this type and length:
 * 0, -ENOENT ("field missing"), -EBADMSG ("wrong type or size"). */
int smolvm_state_get(struct smolvm_state_in *in, const char *name,
		     enum smolvm_state_type type, void *data, uint32_t len);
/* The same, but -ENOENT without a message when the field is absent. */
int smolvm_state_get_opt(struct smolvm_state_in *in, const char *name,
			 enum smolvm_state_type type, void *data, uint32_t len);
int smolvm_state_get_u8(struct smolvm_state_in *in, const char *name, uint8_t *v);
int smolvm_state_get_u16(struct smolvm_state_in *in, const char *name, uint16_t *v);
int smolvm_state_get_u32(struct smolvm_state_in *in, const char *name, uint32_t *v);
int smolvm_state_get_u64(struct smolvm_state_in *in, const char *name, uint64_t *v);
/* The fields of the table that state version `version` has (since <=
 * version), into `base`; the others keep their values. */
int smolvm_state_get_fields(struct smolvm_state_in *in, const struct smolvm_state_field *f,
			    size_t n, void *base, uint32_t version);

/* An upper bound for an integer member, checked after loading it. */
struct smolvm_state_limit {
	const char *name;
	uint32_t offset, size;
	uint64_t max;
};

/* A bound for member `member` of `type_` (an integer member). */
#define SMOLVM_LIMIT(type_, member, max_)                                       \
	{ #member,                                                              \
	  (uint32_t)(offsetof(type_, member) +                                  \
		     SMOLVM_STATE_CHECK_LIMIT_(((type_ *)0)->member)),           \
	  (uint32_t)sizeof(((type_ *)0)->member), (max_) }
#ifdef SMOLVM_STATE_TYPE_OF
#define SMOLVM_STATE_CHECK_LIMIT_(lv)                                           \
	(0 * sizeof(struct {                                                    \
		int smolvm_limit_check_;                                        \
		_Static_assert(SMOLVM_STATE_TYPE_OF(lv) != SMOLVM_STATE_BYTES,  \
			       "SMOLVM_LIMIT: not an integer member");          \
	}))
#else
#define SMOLVM_STATE_CHECK_LIMIT_(lv) 0
#endif

/* Each member at most its limit: 0, or -EINVAL ("<path>.<name>: 9 is out
 * of range (at most 7)"). */
int smolvm_state_check_limits(struct smolvm_state_in *in, const struct smolvm_state_limit *l,
			      size_t n, const void *base);
/* A value that fails validation: set_error("<prefix><path>.<field>: <why>")
 * and -EINVAL. */
int smolvm_state_bad(struct smolvm_state_in *in, const char *field, const char *fmt, ...)
	SMOLVM_PRINTF(3, 4);
/* Any other failure: set_error("<prefix><message>"), returns `rc` (-errno). */
int smolvm_state_in_fail(struct smolvm_state_in *in, int rc, const char *fmt, ...)
	SMOLVM_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif
#endif
