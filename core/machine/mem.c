#include "machine/mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static int map(struct guest_mem *m, uint64_t size, int fd, struct err *e)
{
	void *p;

	memset(m, 0, sizeof(*m));
	if (size < MEM_MIN_SIZE || size > MEM_MAX_SIZE || size % 4096)
		return err_set(e, -EINVAL, "memory: %llu MiB is outside %llu MiB..%llu MiB",
			       (unsigned long long)(size >> 20),
			       (unsigned long long)(MEM_MIN_SIZE >> 20),
			       (unsigned long long)(MEM_MAX_SIZE >> 20));
	/* NORESERVE: untouched guest pages cost nothing. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
	if (p == MAP_FAILED)
		return err_set(e, -errno, "memory: cannot map %llu MiB: %s",
			       (unsigned long long)(size >> 20), strerror(errno));
	madvise(p, size, MADV_MERGEABLE);
	m->base = p;
	m->size = size;
	return 0;
}

int mem_init(struct guest_mem *m, uint64_t size, struct err *e)
{
	return map(m, size, -1, e);
}

int mem_init_fd(struct guest_mem *m, uint64_t size, int fd, struct err *e)
{
	return map(m, size, fd, e);
}

void mem_free(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->size);
	memset(m, 0, sizeof(*m));
}
