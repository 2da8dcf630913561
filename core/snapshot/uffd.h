/* userfaultfd and PAGEMAP_SCAN, for the lazy restore (lazy.c) and the
 * tracking of written memory (dirty.c). Definitions newer than this
 * system's headers (Linux 6.7) are spelled out here. */
#ifndef SMOLVM_UFFD_H
#define SMOLVM_UFFD_H

#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdint.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PFNZERO (1 << 5)
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* Write tracking without faults to serve: the kernel lifts the protection
 * on a first write and PAGEMAP_SCAN reports the page written. With
 * WP_UNPOPULATED a page not mapped yet is protected too (a mapping of the
 * cache image, whose pages come in clean as they are read). A lazy
 * restore serves its write-protect faults itself (lazy.c): with async
 * write-protect, chunks copied in protected stalled the guest here. */
#define UFFD_TRACK_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/* A userfaultfd that also sees faults taken in the kernel (KVM's), with
 * `features` if the kernel has them all (*got says whether), else none.
 * Returns the fd or -errno. */
int uffd_open(uint64_t features, int *got);

#endif
