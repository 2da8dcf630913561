/* Disks in the bundle: the base image of every virtio-blk disk travels as
 * a section "disk.NAME" (chunked, zero chunks left out, each chunk
 * compressed and hashed as memory is: snapmem.h), so a bundle runs where
 * its images are not. A restore unpacks it once into the cache, named by
 * its hash (later restores and other bundles with the same disk find it
 * there), and the device reads that file; the guest's writes go to a
 * private overlay, as for any restored disk. */
#ifndef SMOLVM_DISKS_H
#define SMOLVM_DISKS_H

#include "lib/err.h"
#include "machine/config.h"
#include "snapshot/bundle.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"

/* Writes a "disk.NAME" section for each virtio-blk device of cfg whose
 * image is a regular file; st adds up what they stored. plan: what the
 * machine was restored from (NULL after a boot): a disk that came out of
 * it is taken from its section, not read again; parent: the bundle the
 * new one names as its parent (NULL: none), whose chunks are not stored
 * again. */
int disks_save(struct bundle_writer *w, const struct machine_config *cfg,
	       const struct restore_plan *plan, const struct bundle *parent,
	       struct snapmem_stats *st, struct err *e) WARN_UNUSED;

/* Points each virtio-blk device of cfg that has a disk section at that
 * disk, unpacked into the cache (or a memory file without one), and marks
 * it (from_bundle). `ms` gets the time it took, `unpacked` how many were
 * not in the cache yet. */
int disks_bind(const struct restore_plan *p, struct machine_config *cfg, double *ms,
	       unsigned *unpacked, struct err *e) WARN_UNUSED;

#endif
