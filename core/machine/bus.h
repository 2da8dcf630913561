/* An address space (port I/O or MMIO) of device regions. Regions are added
 * while the machine is built and never change while vCPUs run, so lookups
 * from vCPU threads take no lock. */
#ifndef SMOLVM_BUS_H
#define SMOLVM_BUS_H

#include <smolvm/plugin.h>

#include "lib/err.h"

struct bus_region {
	uint64_t base, len;
	struct smolvm_io_ops ops;
	void *opaque;
	const char *owner;
};

struct bus {
	struct bus_region *r; /* sorted by base */
	size_t n;
};

int bus_add(struct bus *b, uint64_t base, uint64_t len,
	    const struct smolvm_io_ops *ops, void *opaque, const char *owner,
	    struct err *e) WARN_UNUSED;
/* Dispatches one access; returns -ENOENT when no region claims it. */
int bus_access(const struct bus *b, uint64_t addr, void *data, uint32_t size,
	       int is_write);
void bus_free(struct bus *b);

#endif
