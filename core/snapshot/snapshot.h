/* Snapshots: freeze a running machine into a .smolmachine bundle, and
 * rebuild a machine from one. Restore order: memory (mapped from the
 * cache), interrupt controllers and clock, vCPUs, devices. */
#ifndef SMOLVM_SNAPSHOT_H
#define SMOLVM_SNAPSHOT_H

#include "machine/config.h"
#include "machine/loader.h"
#include "machine/vm.h"
#include "snapshot/bundle.h"
#include "snapshot/cache.h"
#include "snapshot/lineage.h"
#include "snapshot/manifest.h"
#include "snapshot/snapmem.h"

/* Pauses the machine, writes the bundle atomically, resumes it; with
 * `then_stop`, stops it instead (VM_STOP_PACKED) once the bundle is safe. */
/* `kept` (kept_len bytes, may be NULL): the session's section "kept". */
int snapshot_save(struct vm *vm, const char *path, int then_stop, const void *kept,
		  size_t kept_len, struct err *e) WARN_UNUSED;

/* Where a restored machine's memory came from (vm->mem_origin): the
 * memory section of its bundle, kept open by the restore_plan. */
struct lazy_mem;
struct restore_plan;
struct origin {
	struct vm *vm;
	const struct restore_plan *plan; /* the bundle it came from */
	struct snapmem_view v;
	struct lazy_mem *lazy; /* filled on demand, or NULL */
	int tracked;           /* dirty.h tracks its writes */
	int track_fd;          /* the userfaultfd doing it, when not lazy's */
};

struct restore_plan {
	struct bundle b;
	struct manifest m;
	const char *lua;
	size_t lua_len;
	const struct bundle_section *memory;
	struct lineage up;    /* its ancestors, when it is a child */
	struct chunked memv;  /* its memory section, linked to theirs (not to be moved) */
	const uint8_t *kept; /* the "kept" section (verified), or NULL */
	size_t kept_len;
};

/* Opens and verifies a bundle: header, table of contents, manifest, script
 * and every state section (checksums), and finds its ancestors, before
 * anything is built. */
int snapshot_open(const char *path, struct restore_plan *p, struct err *e) WARN_UNUSED;
/* The machine described by the bundle must match the plugins on this host:
 * names, types and state versions. */
int snapshot_check_plugins(const struct restore_plan *p, const struct machine_config *cfg,
			   const struct plugin_set *plugins, struct err *e) WARN_UNUSED;
/* The whole restore of a plan opened above, into `vm`: the bundle's shape
 * (vCPUs, memory, backend) goes into cfg (the machine its script declares,
 * with the session's bindings), the plugins are checked, guest memory is
 * mapped from the cache (mem says how), the machine is built with `opts`
 * and every saved state applied: irqchip and clock, vCPUs, devices. On
 * failure nothing is left to destroy. */
int snapshot_load(const struct restore_plan *p, struct machine_config *cfg,
		  const struct plugin_set *plugins, const struct vm_opts *opts, struct vm *vm,
		  struct cache_result *mem, struct err *e) WARN_UNUSED;
void snapshot_close(struct restore_plan *p);

#endif
