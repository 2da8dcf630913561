/* Guest RAM: one anonymous mapping at guest-physical 0. */
#ifndef SMOLVM_MEM_H
#define SMOLVM_MEM_H

#include <stdint.h>

#include "lib/err.h"

/* RAM stays below the 32-bit MMIO hole (IOAPIC, LAPIC, device windows). */
#define MEM_MAX_SIZE (3ull << 30)
#define MEM_MIN_SIZE (16ull << 20)

struct guest_mem {
	uint8_t *base;
	uint64_t size;
};

int mem_init(struct guest_mem *m, uint64_t size, struct err *e) WARN_UNUSED;
/* RAM as a private, copy-on-write mapping of `fd` (a snapshot's memory
 * image): pages are read in when the guest touches them, never copied up
 * front, and shared with every other VM mapping the same file. */
int mem_init_fd(struct guest_mem *m, uint64_t size, int fd, struct err *e) WARN_UNUSED;
void mem_free(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) when it lies wholly in RAM, else NULL. */
static inline void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa > m->size || len > m->size - gpa)
		return 0;
	return m->base + gpa;
}

#endif
