/* The OCI side of a bundle in a registry: references, the image manifest
 * and the config blob (the index of the frames cut out of the bundle),
 * built on push and parsed, as untrusted input, on pull. No I/O here.
 *
 * Manifest (application/vnd.oci.image.manifest.v1+json):
 *   artifactType application/vnd.smolvm.bundle.v1
 *   config: OCI_CONFIG_TYPE, the index below
 *   layers[0]: OCI_SKELETON_TYPE, the bundle with every frame cut out
 *   layers[1..n]: OCI_FRAME_TYPE, the frames, in the order of the file
 * Config (JSON): {"format": 1, "size": file size, "identity": hex of the
 *   bundle's identity, "signatures": count, "manifest": the bundle's
 *   manifest text, "frames": [file offset of each frame, ascending]} */
#ifndef SMOLVM_OCI_H
#define SMOLVM_OCI_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define OCI_MANIFEST_TYPE "application/vnd.oci.image.manifest.v1+json"
#define OCI_ARTIFACT_TYPE "application/vnd.smolvm.bundle.v1"
#define OCI_CONFIG_TYPE "application/vnd.smolvm.bundle.config.v1+json"
#define OCI_SKELETON_TYPE "application/vnd.smolvm.bundle.skeleton.v1"
#define OCI_FRAME_TYPE "application/vnd.smolvm.bundle.frame.v1+zstd"

/* Bounds on what a registry may send. */
#define OCI_MANIFEST_MAX (8u << 20)
#define OCI_CONFIG_MAX (32u << 20)
#define OCI_SKELETON_MAX (1ull << 30)
#define OCI_FRAME_MAX (2u << 20)      /* a 1 MiB chunk compresses to less */
#define OCI_LAYERS_MAX (1u << 22)     /* 4 TiB of 1 MiB chunks */
#define OCI_BUNDLE_MAX (1ull << 42)

#define OCI_DIGEST_LEN 71 /* "sha256:" + 64 hex */

struct oci_ref {
	char host[256];  /* host[:port] */
	char repo[256];  /* path components */
	char tag[129];   /* "" with a digest */
	char digest[OCI_DIGEST_LEN + 1]; /* "" with a tag */
};

/* HOST/NAME[:TAG][@sha256:HEX]; TAG defaults to latest. */
int oci_ref_parse(const char *s, struct oci_ref *r, struct err *e) WARN_UNUSED;
/* "sha256:" + 64 lower-case hex digits */
int oci_digest_valid(const char *d);
void oci_digest_of(const void *p, size_t len, char out[OCI_DIGEST_LEN + 1]);

struct oci_desc {
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
};

struct oci_artifact {
	struct oci_desc config;
	struct oci_desc *layers; /* [0] the skeleton, then the frames */
	size_t nlayers;
};

struct oci_index {
	uint64_t size;
	uint8_t id[32];
	uint64_t nsigs;
	uint64_t *frames; /* file offsets, one per layer after the skeleton */
	size_t n;
};

/* Returns a malloc'd manifest; NULL when out of memory. */
char *oci_manifest_build(const struct oci_artifact *a, const char *title);
int oci_manifest_parse(const char *json, size_t len, struct oci_artifact *a,
		       struct err *e) WARN_UNUSED;
void oci_artifact_free(struct oci_artifact *a);

char *oci_index_build(const struct oci_index *x, const char *manifest_text);
int oci_index_parse(const char *json, size_t len, struct oci_index *x, struct err *e) WARN_UNUSED;
void oci_index_free(struct oci_index *x);

/* The manifest and the index describe one file: a frame per layer after
 * the skeleton, ascending and apart, inside the file, every size bounded,
 * and skeleton plus frames exactly the file. */
int oci_plan_check(const struct oci_artifact *a, const struct oci_index *x,
		   struct err *e) WARN_UNUSED;

#endif
