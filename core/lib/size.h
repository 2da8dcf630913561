/* Sizes as people write them. */
#ifndef SMOLVM_SIZE_H
#define SMOLVM_SIZE_H

#include <stdint.h>

/* "256M", "1G", "4096K", "1073741824B" or a bare number of MiB; 0 or
 * -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

#endif
