/* Which bundles this user trusts: those packed (or saved from a trusted
 * one) by this user on this host. A save records the bundle's BLAKE2b
 * hash and its file's identity (device, inode, size, mtime, ctime: a
 * ctime nobody can set back) in the private data directory; a restore
 * finds the identity (a stat and one small read), or, for a copy or a
 * moved file of a size some trusted bundle has, hashes the file once.
 * Anything else is untrusted: its hooks do not run (docs/security.md). */
#ifndef SMOLVM_TRUST_H
#define SMOLVM_TRUST_H

#include "lib/err.h"

#include <stddef.h>

/* Records `path` (a bundle just written by this user) as trusted, with
 * the absolute path of the script it was made from (or NULL): a bundle
 * names no host path, and a restore of it here resolves the script's
 * relative device paths where the script was. */
int trust_record(const char *path, const char *script, struct err *e) WARN_UNUSED;
/* After a save to `path` by a session whose source is trusted (a script
 * of this user's, or a trusted bundle): records it; says on stderr when
 * that failed. A save from an untrusted bundle is not recorded. */
void trust_saved(const char *path, int trusted, const char *script);
/* 1 when `path` is a bundle this user trusts (its recorded script in
 * `script`, "" when none), 0 when not, -errno (e says why) when that
 * cannot be told. */
int trust_check(const char *path, char *script, size_t len, struct err *e) WARN_UNUSED;

#endif
