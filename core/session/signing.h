/* Signed bundles: `smolvm sign`, `smolvm verify`, and what a restore
 * makes of a bundle's signatures (snapshot/sign.h for what is signed,
 * session/keys.h for the keys). */
#ifndef SMOLVM_SIGNING_H
#define SMOLVM_SIGNING_H

#include "session/keys.h"
#include "snapshot/bundle.h"

struct sig_verdict {
	int trusted;  /* a valid signature by a key in the trust store */
	int unknown;  /* valid signatures by keys not in it */
	int bad;      /* signatures that do not match the bundle */
	char who[KEY_NAME_MAX + 1]; /* the trusted signer */
};

/* Judges b's signatures; with `print`, a line each on stdout. */
int signatures_judge(const struct bundle *b, struct sig_verdict *v, int print,
		     struct err *e) WARN_UNUSED;

/* smolvm sign: verifies every byte, then adds a signature by key `key`
 * (replacing an earlier one by the same key); writes `out` or, when NULL,
 * replaces the bundle. */
int session_sign(const char *bundle, const char *key, const char *out);
/* smolvm verify: 0 when intact and signed by a trusted key, 1 when
 * intact but not (unsigned, or by keys not trusted), 2 when corrupt or a
 * signature does not match. */
int session_verify(const char *bundle);

#endif
