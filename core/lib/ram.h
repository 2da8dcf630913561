/* A view of guest RAM (one range at guest-physical 0) and the one
 * bounds-checked way to point into it. machine/mem.c owns the mapping;
 * arch/ writes boot structures through this view. */
#ifndef SMOLVM_RAM_H
#define SMOLVM_RAM_H

#include <stdint.h>

struct guest_mem {
	uint8_t *base;
	uint64_t size;
};

/* Host pointer for [gpa, gpa+len) when it lies wholly in RAM, else NULL. */
static inline void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa > m->size || len > m->size - gpa)
		return 0;
	return m->base + gpa;
}

#endif
