/* What a machine is made of: filled from the Lua script, then from the
 * command line, then handed to vm_create(). */
#ifndef SMOLVM_MACHINE_H
#define SMOLVM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/board.h"
#include "lib/size.h"

struct dev_config {
	char *type;
	char *name; /* "uart0": type plus index among its type */
	size_t n;
	char **keys, **vals;
	char **paths; /* config_path() results, parallel to vals, made on demand */
	int line;     /* the script's line of its table (for messages), or 0 */
	int from_bundle; /* a disk whose image came out of the bundle */
};

/* Where a root filesystem comes from (docs/rootfs.md). */
enum rootfs_kind { ROOTFS_DEBIAN = 1, ROOTFS_OCI, ROOTFS_DOCKER_ARCHIVE, ROOTFS_DIR, ROOTFS_TAR,
		   ROOTFS_IMAGE };

struct rootfs_copy {
	char *from; /* host path, absolute */
	char *to;   /* path inside the root filesystem, absolute */
};

struct rootfs_spec {
	enum rootfs_kind kind;
	char *source;      /* suite, or an absolute path (OCI: "path:tag") */
	char *mirror;      /* debian: the archive, NULL: deb.debian.org */
	char **packages;   /* debian */
	size_t npackages;
	struct rootfs_copy *copy; /* before run, in order */
	size_t ncopy;
	char **run;        /* shell commands run on the host inside it */
	size_t nrun;
	uint64_t size;     /* bytes of the image, 0: what it holds plus room */
};

/* The other ways than console text (`ready`) to tell `pack` that the
 * machine is ready to save. */
struct machine_ready {
	char *exec;     /* a guest command that exits 0 */
	uint32_t port;  /* a TCP port the guest listens on */
	uint32_t timeout_s; /* exec, port and start: give up after (0: default) */
};

struct machine_config {
	char *script;  /* path of the machine script */
	char *script_src; /* its text (stored in bundles) */
	size_t script_len;
	char *ready;   /* pack: console text that means "ready" */
	struct machine_ready ready_when; /* the exec and port forms */
	char **start;  /* guest commands run in order once it is up */
	size_t nstart;
	struct rootfs_spec *rootfs; /* NULL: the initrd is all there is */
	char *rootfs_id; /* the cached image it boots from (rootfs/rootfs.h) */
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

#define MACHINE_DEFAULT_READY_TIMEOUT_S 600

void machine_config_free(struct machine_config *c);
void rootfs_spec_free(struct rootfs_spec *r);
const char *dev_config_get(const struct dev_config *d, const char *key);
/* Adds or replaces an option (a host resource re-bound at run time). */
int dev_config_set(struct dev_config *d, const char *key, const char *val);
/* Appends a device of `type` with no options, named as the script's are
 * (type plus its index among devices of that type); NULL when out of
 * memory. Pointers to cfg->devices may move. */
struct dev_config *machine_config_add_device(struct machine_config *c, const char *type);
/* Removes an option (nothing when it is not there). */
void dev_config_unset(struct dev_config *d, const char *key);
/* The value of `key` as a path, relative ones taken from `base_dir`. */
const char *dev_config_path(struct dev_config *d, const char *key, const char *script);

#endif
