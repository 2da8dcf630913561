/* The bundle manifest: INI text (parsed with inih) describing the machine,
 * the host contract and every device plugin with its state version. */
#ifndef SMOLVM_MANIFEST_H
#define SMOLVM_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define MANIFEST_MAX_DEVICES 64

struct manifest_dev {
	char name[64], type[65], version[32];
	uint32_t abi_major, abi_minor, state_version;
};

struct manifest {
	uint32_t format;
	char smolvm[32], created[40];
	char name[64], arch[16], backend[65];
	uint32_t cpus, page_size, quirks;
	uint64_t memory;
	char script[4096]; /* where the script lived: relative paths start there */
	char rootfs[4096]; /* the id of the root filesystem image it booted from, or "" */
	struct manifest_dev devs[MANIFEST_MAX_DEVICES];
	size_t ndevs;
};

/* INI text for `m`; the caller frees it. */
char *manifest_format(const struct manifest *m);
int manifest_parse(const char *text, size_t len, struct manifest *m, struct err *e) WARN_UNUSED;

#endif
