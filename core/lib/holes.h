/* Which chunks of a file are holes: a sparse disk image of 2 GiB with 64
 * MiB of data need not be read to find its 2 GiB of zeros. */
#ifndef SMOLVM_HOLES_H
#define SMOLVM_HOLES_H

#include <stdint.h>

/* Per chunk of `chunk` bytes of [offset, offset + size) of fd: 1 when the
 * file has no data there (a hole, or past its end), 0 when it may have.
 * malloc'd (the caller frees); NULL when that cannot be told (the caller
 * then reads everything). */
uint8_t *holes_by_chunk(int fd, uint64_t offset, uint64_t size, uint32_t chunk);

#endif
