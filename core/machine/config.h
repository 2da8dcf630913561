/* What a machine is made of: filled from the Lua script, then from the
 * command line, then handed to vm_create(). */
#ifndef SMOLVM_MACHINE_H
#define SMOLVM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/board.h"

struct dev_config {
	char *type;
	char *name; /* "uart0": type plus index among its type */
	size_t n;
	char **keys, **vals;
	char **paths; /* config_path() results, parallel to vals, made on demand */
};

struct machine_config {
	char *script;  /* path of the machine script */
	char *script_src; /* its text (stored in bundles) */
	size_t script_len;
	char *ready;   /* pack: console text that means "ready" */
	char *name;
	uint32_t cpus;
	uint64_t memory; /* bytes */
	char *kernel, *initrd, *cmdline, *append;
	struct dev_config *devices;
	size_t ndevices;
	char *backend;
	uint32_t quirk_mode; /* enum smolvm_quirk_mode */
	int reboot_restart;  /* reboot = "restart": boot again instead of exiting */
};

#define MACHINE_DEFAULT_CPUS 1
#define MACHINE_MAX_CPUS BOARD_MAX_CPUS
#define MACHINE_DEFAULT_MEMORY (256ull << 20)

void machine_config_free(struct machine_config *c);
const char *dev_config_get(const struct dev_config *d, const char *key);
/* Adds or replaces an option (a host resource re-bound at run time). */
int dev_config_set(struct dev_config *d, const char *key, const char *val);
/* The value of `key` as a path, relative ones taken from `base_dir`. */
const char *dev_config_path(struct dev_config *d, const char *key, const char *script);

/* "256M", "1G", "4096K", "1073741824B" or a bare number of MiB. */
int parse_size(const char *s, uint64_t *out);

#endif
