/* Registry credentials: $SMOLVM_REGISTRY_AUTH (USER:PASSWORD, for any
 * registry that asks), else the "auths" of $DOCKER_CONFIG/config.json
 * (default ~/.docker/config.json: what `docker login` writes), matched by
 * host. Credential helpers (credsStore) are not run. */
#ifndef SMOLVM_REG_AUTH_H
#define SMOLVM_REG_AUTH_H

#include <stddef.h>

#include "lib/err.h"

/* 1 and "user:password" in out (and where it came from in src), 0 when
 * there is none for host, -errno when a config cannot be read. */
int auth_lookup(const char *host, char *out, size_t len, char *src, size_t srclen,
		struct err *e) WARN_UNUSED;

/* From a WWW-Authenticate header value: the scheme (Basic/Bearer) and the
 * Bearer parameters; 0, or -EBADMSG. */
struct auth_challenge {
	char scheme[16];
	char realm[1024], service[256], scope[512];
};
int auth_parse_challenge(const char *h, struct auth_challenge *c) WARN_UNUSED;

#endif
