/* The smolvm guest agent protocol, version 1 (docs/agent-protocol.md).
 *
 * The agent runs in the guest and listens on a vsock stream port. A host
 * client connects (through the virtio-vsock device's Unix socket), both
 * sides send HELLO, then the host sends requests one at a time on that
 * connection; many connections may be open at once.
 *
 * Every message is a frame: an 8-byte header then `len` payload bytes.
 *   le32 len      payload bytes, at most SMOLVM_AGENT_MAX_PAYLOAD
 *   u8   type     enum smolvm_agent_type
 *   u8   flags    0 (reserved)
 *   le16 reserved 0
 * All integers are little-endian. Strings inside payloads end with NUL
 * and hold no other NUL.
 *
 * Versioning: HELLO carries the highest version the sender speaks; the
 * session uses the lower of the two, and a side that cannot speak it
 * closes the connection. A feature added without breaking anyone is a new
 * message type, which an older receiver refuses with ERROR ENOSYS (the
 * decoder hands unknown types to the caller for that); an incompatible
 * change bumps SMOLVM_AGENT_VERSION.
 *
 * This file holds the wire constants, an incremental frame decoder and
 * payload encoders/parsers that both sides use; everything that reads bytes
 * from the other side checks every length (both sides are untrusted to each
 * other: a guest may be hostile, and so may a host client). */
#ifndef SMOLVM_AGENT_H
#define SMOLVM_AGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMOLVM_AGENT_VERSION 1
#define SMOLVM_AGENT_PORT 52          /* vsock port the agent listens on */
#define SMOLVM_AGENT_HEADER 8
#define SMOLVM_AGENT_MAX_PAYLOAD 65536u
#define SMOLVM_AGENT_MAX_ARGS 1024    /* argv entries, and env entries */
#define SMOLVM_AGENT_SEED_BYTES 32

enum smolvm_agent_type {
	/* both ways: le32 version, then the sender's name (NUL-terminated).
	 * The host sends it first; the agent answers with its own. */
	SMOLVM_AGENT_HELLO = 1,
	/* host->guest: le64 realtime (ns since the epoch), 32 seed bytes.
	 * The agent mixes the seed into the kernel RNG, forces a reseed and
	 * sets the clock. Reply: OK or ERROR. */
	SMOLVM_AGENT_SYNC = 2,
	/* host->guest: le32 flags (0), le32 argc, le32 envc, then cwd, argv[],
	 * env[] as NUL-terminated strings (cwd "" = "/"). Reply: STARTED or
	 * ERROR; after STARTED, STDOUT/STDERR frames and one EXIT. */
	SMOLVM_AGENT_EXEC = 3,
	/* host->guest: bytes for the command's stdin; empty = end of input */
	SMOLVM_AGENT_STDIN = 4,
	/* guest->host: the command's output; empty = that stream ended */
	SMOLVM_AGENT_STDOUT = 5,
	SMOLVM_AGENT_STDERR = 6,
	/* host->guest: le32 signal number for the running command */
	SMOLVM_AGENT_SIGNAL = 7,
	/* guest->host: le32 how (0 exited, 1 killed by a signal), le32 value;
	 * sent after both output streams ended */
	SMOLVM_AGENT_EXIT = 8,
	/* host->guest: le32 mode, then the path; DATA frames follow, an empty
	 * DATA ends the file. Reply (after the end): OK or ERROR. The file is
	 * written to a temporary name and renamed into place. A mode with the
	 * directory bit (0040000) makes a directory instead (an existing one
	 * is fine): no DATA follows, the reply comes at once. Parent
	 * directories are never created. For a file, ERROR may come before
	 * the end: the agent then discards DATA up to and including the
	 * empty one, which the host still sends. Mode: permission bits 07777
	 * plus optionally the type bits of S_IFREG or S_IFDIR. */
	SMOLVM_AGENT_PUT = 9,
	/* host->guest: the path. Reply: DATA frames, then an empty DATA; or
	 * ERROR (possibly after some DATA: the host discards what it got). */
	SMOLVM_AGENT_GET = 10,
	SMOLVM_AGENT_DATA = 11,
	/* guest->host: empty */
	SMOLVM_AGENT_OK = 12,
	/* guest->host: le32 errno (1..4095), then a message (NUL-terminated) */
	SMOLVM_AGENT_ERROR = 13,
	/* guest->host: le32 pid of the started command */
	SMOLVM_AGENT_STARTED = 14,
	/* host->guest: the path, then the link's target (both NUL-terminated):
	 * a symbolic link, replacing a file or link of that name. Reply: OK or
	 * ERROR. Agents older than this type answer ERROR ENOSYS. */
	SMOLVM_AGENT_LINK = 15,
};
/* The highest type of this version. The decoder accepts any type from 1
 * to 255 (see versioning above); the parsers check the type they expect. */
#define SMOLVM_AGENT_TYPE_MAX 15

/* EXIT: exited with a value 0..255, or killed by signal 1..127. */
enum smolvm_agent_exit_how { SMOLVM_AGENT_EXITED = 0, SMOLVM_AGENT_SIGNALED = 1 };

/* A decoded frame; payload points into the decoder (valid until the next
 * smolvm_agent_feed call). */
struct smolvm_agent_msg {
	uint8_t type;
	uint32_t len;
	const uint8_t *payload;
};

/* Incremental decoder: bytes in, whole frames out. No allocation. */
struct smolvm_agent_decoder {
	uint8_t hdr[SMOLVM_AGENT_HEADER];
	size_t hdr_have;
	uint32_t len, have;
	uint8_t type;
	uint8_t failed; /* sticky: a malformed header was seen */
	uint8_t buf[SMOLVM_AGENT_MAX_PAYLOAD];
};

void smolvm_agent_decoder_init(struct smolvm_agent_decoder *d);
/* Consumes up to n bytes of `data` and sets *used to how many. Returns 1
 * when *out holds a complete frame (call again with the rest of the data),
 * 0 when it needs more bytes, -EPROTO on a malformed header (type 0,
 * length over the maximum, flags or reserved bits set); the stream is then
 * unusable and every later call returns -EPROTO. */
int smolvm_agent_feed(struct smolvm_agent_decoder *d, const uint8_t *data, size_t n,
		      size_t *used, struct smolvm_agent_msg *out);

/* Writes the 8-byte header of a frame. */
void smolvm_agent_header(uint8_t hdr[SMOLVM_AGENT_HEADER], uint8_t type, uint32_t len);

/* Encoders write a whole frame (header + payload) into buf and return its
 * size, or -E2BIG when it does not fit in cap or in one frame, or -EINVAL
 * for arguments the matching parser would refuse (an empty argv or
 * argv[0], more than SMOLVM_AGENT_MAX_ARGS entries, an env entry without
 * "NAME=", an empty path, an errno outside 1..4095, an EXIT out of
 * range, a PUT mode with other bits). NULL strings count as "" where ""
 * is allowed (name, cwd, message); a NULL envp is an empty list. */
long smolvm_agent_build_hello(uint8_t *buf, size_t cap, const char *name);
long smolvm_agent_build_sync(uint8_t *buf, size_t cap, uint64_t realtime_ns,
			     const uint8_t seed[SMOLVM_AGENT_SEED_BYTES]);
long smolvm_agent_build_exec(uint8_t *buf, size_t cap, const char *cwd,
			     const char *const *argv, const char *const *envp);
long smolvm_agent_build_u32(uint8_t *buf, size_t cap, uint8_t type, uint32_t v);
long smolvm_agent_build_exit(uint8_t *buf, size_t cap, uint32_t how, uint32_t value);
long smolvm_agent_build_put(uint8_t *buf, size_t cap, uint32_t mode, const char *path);
long smolvm_agent_build_path(uint8_t *buf, size_t cap, uint8_t type, const char *path);
long smolvm_agent_build_link(uint8_t *buf, size_t cap, const char *path, const char *target);
long smolvm_agent_build_error(uint8_t *buf, size_t cap, uint32_t err, const char *msg);
/* A frame of raw bytes (STDIN, STDOUT, STDERR, DATA; n may be 0). */
long smolvm_agent_build_data(uint8_t *buf, size_t cap, uint8_t type, const void *data,
			     size_t n);

/* Parsers check the frame's type and every length; they return 0 or
 * -EPROTO. Strings point into the frame's payload. */
int smolvm_agent_parse_hello(const struct smolvm_agent_msg *m, uint32_t *version,
			     const char **name);
int smolvm_agent_parse_sync(const struct smolvm_agent_msg *m, uint64_t *realtime_ns,
			    const uint8_t **seed);

struct smolvm_agent_exec {
	uint32_t flags;
	const char *cwd;
	uint32_t argc, envc;
	/* NULL-terminated, pointing into the payload */
	const char *argv[SMOLVM_AGENT_MAX_ARGS + 1];
	const char *envp[SMOLVM_AGENT_MAX_ARGS + 1];
};
/* argc must be at least 1; argv[0] must not be empty; every env entry is
 * NAME=value with a non-empty NAME; the strings fill the payload exactly. */
int smolvm_agent_parse_exec(const struct smolvm_agent_msg *m, struct smolvm_agent_exec *out);
/* A payload that is exactly one le32 (SIGNAL, STARTED). */
int smolvm_agent_parse_u32(const struct smolvm_agent_msg *m, uint8_t type, uint32_t *v);
int smolvm_agent_parse_exit(const struct smolvm_agent_msg *m, uint32_t *how, uint32_t *value);
/* mode: 07777 bits, plus S_IFREG or S_IFDIR type bits or none; the path
 * is not empty. */
int smolvm_agent_parse_put(const struct smolvm_agent_msg *m, uint32_t *mode, const char **path);
/* GET: the payload is one non-empty NUL-terminated path. */
int smolvm_agent_parse_path(const struct smolvm_agent_msg *m, uint8_t type, const char **path);
int smolvm_agent_parse_link(const struct smolvm_agent_msg *m, const char **path,
			    const char **target);
int smolvm_agent_parse_error(const struct smolvm_agent_msg *m, uint32_t *err, const char **msg);

/* "HELLO", "EXEC", ...; "?" for an unknown type. */
const char *smolvm_agent_type_name(uint8_t type);

#ifdef __cplusplus
}
#endif

#endif
