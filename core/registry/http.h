/* HTTP to a registry (libcurl): one client per reference, shared by the
 * transfer threads (each with its own CURL handle), which answers a 401
 * by the registry's challenge: Basic with the user's credentials
 * (registry/auth.h), or Bearer, a token from the realm it names. TLS is
 * verified; `insecure` speaks plain HTTP. Responses are bounded. */
#ifndef SMOLVM_REG_HTTP_H
#define SMOLVM_REG_HTTP_H

#include <pthread.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "registry/oci.h"

struct reg_client {
	char base[300]; /* scheme://host */
	struct oci_ref ref;
	int push, insecure;
	long long rate; /* $SMOLVM_REGISTRY_LIMIT_RATE: bytes/s per transfer, 0: none */
	int have_creds;
	char creds[1024], creds_src[4200];
	pthread_mutex_t lock; /* authz, gen */
	char authz[16384];    /* "Authorization: ..." or "" */
	unsigned gen;
};

int reg_client_init(struct reg_client *c, const struct oci_ref *r, int push, int insecure,
		    struct err *e) WARN_UNUSED;
void reg_client_fini(struct reg_client *c);

struct reg_body {
	const void *p;
	size_t len;
	const char *ctype;
};

struct reg_resp {
	long status;
	char location[4096];
	char ctype[256];
	uint8_t *body; /* a 2xx GET without fd; error bodies (at most 64 KiB) */
	size_t len;
	uint64_t got; /* bytes of a 2xx body received (into fd or body) */
};

/* method on path (under base, or an absolute URL of the same registry: a
 * Location), on curl (the thread's handle; NULL: a fresh one). With
 * fd >= 0 a 2xx body goes to fd, through sha (when not NULL), at most
 * `limit` bytes of it; else into r->body (at most limit). Answers a 401
 * with the registry's challenge and tries again. 0 with r->status filled,
 * whatever the status, or -errno (e says why) when no answer came or the
 * registry refused the credentials. */
int reg_do(struct reg_client *c, void *curl, const char *method, const char *path,
	   const char *accept, const struct reg_body *body, int fd,
	   crypto_hash_sha256_state *sha, uint64_t limit, struct reg_resp *r,
	   struct err *e) WARN_UNUSED;
void reg_resp_free(struct reg_resp *r);
/* An error for an unexpected status: the registry's own error message. */
int reg_status_err(const struct reg_resp *r, const char *what, struct err *e);

#endif
