/* Device options: what a plugin declares it takes (struct smolvm_option,
 * ABI 1.2), checked against each device's table in the machine script
 * before the plugin's create() runs. */
#ifndef SMOLVM_MACHINE_OPTIONS_H
#define SMOLVM_MACHINE_OPTIONS_H

#include <stddef.h>

#include <smolvm/plugin.h>

#include "lib/err.h"
#include "machine/config.h"

/* Most options one plugin may declare. */
#define OPTIONS_MAX 128

/* "string", "int", "bool", "path", "list", or "?" for a number we do not
 * know. */
const char *options_type_name(uint32_t type);

/* Edit distance between a and b: insertions, deletions, substitutions and
 * swaps of two neighbours each count 1. Names longer than 64 bytes are
 * "far" (SIZE_MAX). */
size_t options_distance(const char *a, const char *b);

/* The declared name closest to `name` when it is close enough to be a
 * typo of it (1 edit in a name shorter than 6, else 2), else NULL; the
 * first declared of equally close ones. */
const char *options_suggest(const struct smolvm_option *opts, const char *name);

/* Checks a plugin's declarations (at load): names of 1-64 [a-z0-9_] not
 * used twice and not a key the core keeps ("type"), known types and flags,
 * at most OPTIONS_MAX entries before the end. */
int options_check_declared(const struct smolvm_option *opts, struct err *e) WARN_UNUSED;

/* Checks a device's configuration against its plugin's declarations
 * (nothing when `opts` is NULL). The message starts with `where.` (e.g.
 * "devices[2].perod_ms: "), then what is wrong with the option: unknown
 * (with the closest name, or what the plugin takes), a value that is not
 * of its type, a list for one value or one value for a list, a required
 * one missing. When several are wrong the first by name is reported, and
 * *key (when not NULL) is its name as the script writes it (NULL for a
 * missing one). */
int options_check(const struct dev_config *d, const struct smolvm_option *opts,
		  const char *where, const char **key, struct err *e) WARN_UNUSED;

#endif
