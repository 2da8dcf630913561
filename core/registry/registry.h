/* Bundles through OCI registries (docs/registry.md): `smolvm push` splits a
 * bundle into blobs (a skeleton: the file with every stored zstd frame cut
 * out, and one blob per frame, named by its sha256 so a registry stores a
 * chunk once across versions and bundles) and an OCI image manifest with
 * artifactType application/vnd.smolvm.bundle.v1; `smolvm pull` fetches
 * what the local blob store lacks, rebuilds the file byte for byte (so its
 * identity and signatures hold), verifies it whole and renames it into
 * place. Everything a registry sends is untrusted input: sizes bounded,
 * digests checked before a byte is used. */
#ifndef SMOLVM_REGISTRY_H
#define SMOLVM_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct registry_opts {
	int insecure; /* plain HTTP (a localhost registry without TLS) */
	int quiet;    /* no summary line on stdout */
	unsigned jobs; /* parallel transfers (0: the default, 4) */
};

/* What crossed the wire. */
struct registry_stats {
	uint64_t blobs, bytes;    /* transferred */
	uint64_t had, had_bytes;  /* already there (registry or blob store) */
	char digest[72];          /* the manifest's, sha256:HEX */
	uint8_t id[32];           /* the bundle's identity */
};

/* 1 when `arg` reads as a registry reference (HOST/NAME[:TAG|@DIGEST],
 * HOST with a dot, a port or "localhost"), 0 when not. */
int registry_is_ref(const char *arg);

int registry_push(const char *bundle, const char *ref, const struct registry_opts *o,
		  struct registry_stats *st, struct err *e) WARN_UNUSED;
int registry_pull(const char *ref, const char *out, const struct registry_opts *o,
		  struct registry_stats *st, struct err *e) WARN_UNUSED;
/* Pulls `ref` into the cache ($CACHE/pulled/MANIFEST-DIGEST.smolmachine,
 * reused when it is there and whole) and names that file in path. */
int registry_pull_cached(const char *ref, const struct registry_opts *o, char *path,
			 size_t len, struct err *e) WARN_UNUSED;

#endif
