#include "snapshot/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int raw_open(void)
{
	/* The syscall needs CAP_SYS_PTRACE for kernel-mode faults; the
	 * device only read-write access to /dev/userfaultfd. */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0)
		return fd;
	if (errno != EPERM && errno != ENOSYS)
		return -errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	int code = errno;
	close(dev);
	return fd < 0 ? -code : fd;
}

int uffd_open(uint64_t features, int *got)
{
	*got = 0;
	/* UFFDIO_API is once per fd: ask for the features on this one, and
	 * only if the kernel lacks one, start again without. */
	for (int tries = 0; tries < 2; tries++) {
		struct uffdio_api api = { .api = UFFD_API, .features = tries ? 0 : features };
		int fd = raw_open();

		if (fd < 0)
			return fd;
		if (ioctl(fd, UFFDIO_API, &api) == 0) {
			*got = !tries;
			return fd;
		}
		int code = errno;
		close(fd);
		if (code != EINVAL || !features)
			return -code;
	}
	return -EINVAL;
}
