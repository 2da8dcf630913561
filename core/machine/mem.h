/* Guest RAM: one anonymous mapping at guest-physical 0. */
#ifndef SMOLVM_MEM_H
#define SMOLVM_MEM_H

#include <stdint.h>

#include "arch/x86/board.h"
#include "lib/err.h"
#include "lib/ram.h"

#define MEM_MAX_SIZE BOARD_RAM_MAX
#define MEM_MIN_SIZE (16ull << 20)

int mem_init(struct guest_mem *m, uint64_t size, struct err *e) WARN_UNUSED;
/* RAM as a private, copy-on-write mapping of `fd` (a snapshot's memory
 * image): pages are read in when the guest touches them, never copied up
 * front, and shared with every other VM mapping the same file. */
int mem_init_fd(struct guest_mem *m, uint64_t size, int fd, struct err *e) WARN_UNUSED;
void mem_free(struct guest_mem *m);

#endif
