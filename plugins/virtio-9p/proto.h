/* 9P2000.L messages: decoding requests and encoding replies, over byte
 * buffers only (no I/O), so tests/fuzz/fuzz_9p.c can drive the decoder
 * with hostile bytes. Every length is checked against the buffer; strings
 * point into the request and are never NUL-terminated there. */
#ifndef SMOLVM_P9_PROTO_H
#define SMOLVM_P9_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum p9_type {
	P9_TLERROR = 6, P9_RLERROR = 7,
	P9_TSTATFS = 8, P9_RSTATFS = 9,
	P9_TLOPEN = 12, P9_RLOPEN = 13,
	P9_TLCREATE = 14, P9_RLCREATE = 15,
	P9_TSYMLINK = 16, P9_RSYMLINK = 17,
	P9_TMKNOD = 18, P9_RMKNOD = 19,
	P9_TRENAME = 20, P9_RRENAME = 21,
	P9_TREADLINK = 22, P9_RREADLINK = 23,
	P9_TGETATTR = 24, P9_RGETATTR = 25,
	P9_TSETATTR = 26, P9_RSETATTR = 27,
	P9_TXATTRWALK = 30, P9_RXATTRWALK = 31,
	P9_TXATTRCREATE = 32, P9_RXATTRCREATE = 33,
	P9_TREADDIR = 40, P9_RREADDIR = 41,
	P9_TFSYNC = 50, P9_RFSYNC = 51,
	P9_TLOCK = 52, P9_RLOCK = 53,
	P9_TGETLOCK = 54, P9_RGETLOCK = 55,
	P9_TLINK = 70, P9_RLINK = 71,
	P9_TMKDIR = 72, P9_RMKDIR = 73,
	P9_TRENAMEAT = 74, P9_RRENAMEAT = 75,
	P9_TUNLINKAT = 76, P9_RUNLINKAT = 77,
	P9_TVERSION = 100, P9_RVERSION = 101,
	P9_TAUTH = 102, P9_RAUTH = 103,
	P9_TATTACH = 104, P9_RATTACH = 105,
	P9_TFLUSH = 108, P9_RFLUSH = 109,
	P9_TWALK = 110, P9_RWALK = 111,
	P9_TREAD = 116, P9_RREAD = 117,
	P9_TWRITE = 118, P9_RWRITE = 119,
	P9_TCLUNK = 120, P9_RCLUNK = 121,
	P9_TREMOVE = 122, P9_RREMOVE = 123,
};

#define P9_HDR 7          /* size[4] type[1] tag[2] */
#define P9_MAXWELEM 16    /* names in one Twalk */
#define P9_NOFID 0xffffffffu
#define P9_QID_SIZE 13

/* qid.type */
#define P9_QTDIR 0x80
#define P9_QTSYMLINK 0x02
#define P9_QTFILE 0x00

/* Tsetattr valid bits */
#define P9_SETATTR_MODE 0x1
#define P9_SETATTR_UID 0x2
#define P9_SETATTR_GID 0x4
#define P9_SETATTR_SIZE 0x8
#define P9_SETATTR_ATIME 0x10
#define P9_SETATTR_MTIME 0x20
#define P9_SETATTR_CTIME 0x40
#define P9_SETATTR_ATIME_SET 0x80
#define P9_SETATTR_MTIME_SET 0x100

#define P9_GETATTR_BASIC 0x7ffull /* mode .. blocks */

/* A string of the request: `len` bytes at `s`, no NUL among them. */
struct p9_str {
	const char *s;
	uint16_t len;
};

/* A decoded request. Which members mean something depends on `type`
 * (see p9_decode); the rest are zero. */
struct p9_req {
	uint8_t type;
	uint16_t tag;
	uint32_t fid, newfid, dfid, afid;
	uint32_t msize, flags, mode, gid, uid, count, valid, n_uname;
	uint32_t major, minor, datasync, proc_id;
	uint8_t lock_type;
	uint64_t offset, mask, size, start, length, attr_size;
	uint64_t atime_sec, atime_nsec, mtime_sec, mtime_nsec;
	struct p9_str version, uname, aname, name, name2, target, client_id;
	uint16_t nwname;
	struct p9_str wnames[P9_MAXWELEM];
	const uint8_t *data; /* Twrite: `count` bytes */
};

/* Decodes one request of `len` bytes (its size field must say `len`).
 * 0; -EBADMSG for a malformed message (short, lengths out of bounds, a
 * string with a NUL, too many walk names); -EOPNOTSUPP for a type this
 * server does not know. With either error, r->tag is set when the header
 * was readable (so an Rlerror can answer it), else 0xffff. */
int p9_decode(const uint8_t *buf, size_t len, struct p9_req *r);

/* Reply encoding into a caller's buffer: the first write that does not
 * fit sets `err` and later writes do nothing. */
struct p9_out {
	uint8_t *p;
	size_t cap, len;
	int err;
};

struct p9_qid {
	uint8_t type;
	uint32_t version;
	uint64_t path;
};

void p9_begin(struct p9_out *o, uint8_t *buf, size_t cap, uint8_t type, uint16_t tag);
void p9_put_u8(struct p9_out *o, uint8_t v);
void p9_put_u16(struct p9_out *o, uint16_t v);
void p9_put_u32(struct p9_out *o, uint32_t v);
void p9_put_u64(struct p9_out *o, uint64_t v);
void p9_put_str(struct p9_out *o, const char *s, size_t len);
void p9_put_qid(struct p9_out *o, const struct p9_qid *q);
/* Room for `n` bytes the caller fills itself (Rread data); NULL if none. */
uint8_t *p9_reserve(struct p9_out *o, size_t n);
/* Stores the size field; returns the message's length, 0 if it did not fit. */
size_t p9_end(struct p9_out *o);
/* A whole Rlerror for `tag` with Linux errno `ecode` (positive). */
size_t p9_error(uint8_t *buf, size_t cap, uint16_t tag, uint32_t ecode);

/* Reading helpers, exposed for the readdir encoder's tests. */
static inline uint32_t p9_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
