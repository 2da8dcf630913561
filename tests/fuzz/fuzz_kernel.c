/* Fuzz the kernel loader (ELF vmlinux / bzImage) and boot setup: a kernel
 * file is whatever the user or a bundle points at. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>

#include "arch/x86/boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static int fd = -1;
	struct x86_kernel k;
	struct smolvm_x86_boot regs;
	struct err e;
	char path[64];

	if (!mem.base) {
		mem.size = 32u << 20;
		mem.base = mmap(NULL, mem.size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		fd = memfd_create("kernel", 0);
		if (mem.base == MAP_FAILED || fd < 0)
			abort();
	}
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (x86_load_kernel(&mem, path, &k, &e) == 0)
		(void)x86_setup(&mem, &k, "console=ttyS0", 0, 0, 2, &regs, &e);
	return 0;
}
