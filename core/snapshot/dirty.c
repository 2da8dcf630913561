#include "snapshot/dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "snapshot/uffd.h"

int dirty_track(int uffd, void *base, uint64_t size, int registered, struct err *e)
{
	struct uffdio_register reg = { .range = { (uintptr_t)base, size },
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)base, size },
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };

	if (!registered && ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return err_set(e, -errno, "userfaultfd: cannot track writes: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		return err_set(e, -errno, "userfaultfd: cannot write-protect guest memory: %s",
			       strerror(errno));
	return 0;
}

int dirty_read(const void *base, uint64_t size, uint64_t chunk, uint8_t *dirty, struct err *e)
{
	struct page_region r[512];
	uint64_t start = (uintptr_t)base, end = start + size;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return err_set(e, -errno, "/proc/self/pagemap: %s", strerror(errno));
	memset(dirty, 0, (size + chunk - 1) / chunk);
	while (start < end) {
		/* Written and not the shared zero page (which a lazy restore
		 * puts in unprotected). */
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uintptr_t)r, .vec_len = sizeof(r) / sizeof(r[0]),
			.category_inverted = PAGE_IS_PFNZERO,
			.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
			.return_mask = PAGE_IS_WRITTEN,
		};
		int n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0) {
			rc = err_set(e, -errno, "PAGEMAP_SCAN: %s", strerror(errno));
			break;
		}
		for (int k = 0; k < n; k++)
			for (uint64_t i = (r[k].start - (uintptr_t)base) / chunk;
			     i <= (r[k].end - 1 - (uintptr_t)base) / chunk; i++)
				dirty[i] = 1;
		if (a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	close(fd);
	return rc;
}
