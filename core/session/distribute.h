/* push, pull, and a registry reference where run and exec take a bundle
 * (docs/registry.md). */
#ifndef SMOLVM_DISTRIBUTE_H
#define SMOLVM_DISTRIBUTE_H

#include <stddef.h>

/* Exit statuses: 0 done, 1 refused or failed (the message on stderr). */
int session_push(const char *bundle, const char *ref, int insecure, unsigned jobs);
int session_pull(const char *ref, const char *out, int insecure, unsigned jobs);
/* A bundle argument: a file (when one of that name exists, or arg is no
 * registry reference) as it is, or a reference pulled into the cache and
 * that file named in path; 1 when it was a reference, 0 a file, -1 when
 * the pull failed (said on stderr). */
int session_bundle_arg(const char *arg, int insecure, char *path, size_t len);

#endif
