/* Lazy first restore: guest RAM (anonymous, registered with userfaultfd)
 * is filled chunk by chunk from the bundle's memory section as the guest,
 * a device or a save first touches it, while the same thread fills the
 * rest in the background and writes every chunk into the cache image, which
 * it publishes once complete (later restores map it, as after an eager
 * restore). One thread serves faults and fills, so a chunk is decompressed
 * once; it never touches guest memory itself. */
#ifndef SMOLVM_LAZY_H
#define SMOLVM_LAZY_H

#include <stdint.h>

#include "lib/err.h"
#include "snapshot/bundle.h"
#include "snapshot/snapmem.h"

struct lazy_mem;

/* 0 when this process may fault guest memory in with userfaultfd (an fd
 * for kernel-mode faults too, which KVM's are); -errno and why otherwise. */
int lazy_mem_probe(struct err *e);

/* Takes over [ram, ram + v->mem_size): registers it, starts the thread.
 * cache_path: where the complete image goes (NULL: no cache); it is
 * published only once section s of b (which must outlive l) matches its
 * checksum. on_error is
 * called on the thread when a chunk cannot be read (the machine must stop:
 * the faulting thread then gets zeros after the callback has returned). */
int lazy_mem_start(const struct snapmem_view *v, uint8_t *ram, const struct bundle *b,
		   const struct bundle_section *s, const char *cache_path,
		   void (*on_error)(void *opaque, const char *msg), void *opaque,
		   struct lazy_mem **out, struct err *e) WARN_UNUSED;
/* Stops serving (a later touch of a missing page reads zeros), joins the
 * thread, drops an unfinished image. Safe with NULL. */
void lazy_mem_stop(struct lazy_mem *l);

/* 1 when what it puts in is write-protected until first written, so
 * dirty_read() sees which chunks the machine wrote; 0 when this kernel
 * cannot (then a save compresses everything). */
int lazy_mem_tracks(struct lazy_mem *l);

struct lazy_stats {
	uint32_t chunks, faulted, filled; /* filled: by the background fill */
	int complete;                     /* every chunk is in */
	double first_fault_ms;            /* after start; 0 if none */
};
void lazy_mem_stats(struct lazy_mem *l, struct lazy_stats *st);

#endif
