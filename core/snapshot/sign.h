/* What a signature vouches for, and adding one. A format 2 bundle's
 * identity is the BLAKE2b-256 of its table of contents, which holds the
 * hash of every section, and the memory section's chunk table the hash of
 * every chunk: an Ed25519 signature of the identity covers every byte a
 * restore reads, checked as it is read. Keys and which of them this user
 * trusts: session/keys.h. */
#ifndef SMOLVM_SIGN_H
#define SMOLVM_SIGN_H

#include "snapshot/bundle.h"

/* Every section against its hash and checksum, and every memory chunk
 * against its hash, decompressed: what `inspect`, `verify` and `sign`
 * check before they vouch for anything. */
int snapshot_verify(const struct bundle *b, struct err *e) WARN_UNUSED;

/* 1 when signature i is a valid signature of b's identity by its key. */
int bundle_signature_valid(const struct bundle *b, size_t i);

/* Writes b (opened from a file) to `path` with the signatures v[0..n)
 * in place of its own, atomically (a temporary file renamed over path). */
int bundle_write_signed(const struct bundle *b, const char *path,
			const struct bundle_signature *v, size_t n, struct err *e) WARN_UNUSED;

#endif
