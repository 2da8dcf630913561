#include "lib/holes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint8_t *holes_by_chunk(int fd, uint64_t offset, uint64_t size, uint32_t chunk)
{
	uint64_t n = (size + chunk - 1) / chunk, end = offset + size;
	uint8_t *z = malloc(n ? n : 1);
	off_t at = (off_t)offset, to;

	if (!z)
		return NULL;
	memset(z, 1, n);
	/* (a file system without holes reports all of it as data) */
	while ((uint64_t)at < end && (at = lseek(fd, at, SEEK_DATA)) >= 0 && (uint64_t)at < end) {
		to = lseek(fd, at, SEEK_HOLE);
		if (to < 0 || (uint64_t)to > end)
			to = (off_t)end;
		for (uint64_t i = ((uint64_t)at - offset) / chunk;
		     i < n && i * chunk < (uint64_t)to - offset; i++)
			z[i] = 0;
		at = to;
	}
	if (at < 0 && errno != ENXIO) { /* ENXIO: no data after `at` */
		free(z);
		return NULL;
	}
	return z;
}
