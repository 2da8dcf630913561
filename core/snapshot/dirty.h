/* Which guest memory chunks a restored machine wrote since its restore, so
 * a save compresses only those and takes the rest from the bundle it came
 * from. The kernel tracks it (userfaultfd write-protect in async mode):
 * the range is protected once before the restore's state is applied; a
 * first write to a page lifts the protection by itself (no fault to
 * serve) and PAGEMAP_SCAN reports the page written. That sees every write
 * (vCPUs through KVM, devices, the core) to pages of the cache image, to
 * zero pages and to pages a lazy restore put in protected. */
#ifndef SMOLVM_DIRTY_H
#define SMOLVM_DIRTY_H

#include <stdint.h>

#include "lib/err.h"

/* Protects [base, base+size) on `uffd` (opened with UFFD_TRACK_FEATURES);
 * registers the range first unless `registered`. */
int dirty_track(int uffd, void *base, uint64_t size, int registered,
		struct err *e) WARN_UNUSED;
/* dirty[i] = 1 for every chunk of `chunk` bytes with a page written since
 * dirty_track (size / chunk entries, rounded up). */
int dirty_read(const void *base, uint64_t size, uint64_t chunk, uint8_t *dirty,
	       struct err *e) WARN_UNUSED;

#endif
