/* Values hooks keep across a snapshot (vm:keep): a few short strings by
 * name, saved into the bundle's "kept" section and handed to the hooks of
 * the restored machine as vm.kept (a script's globals do not survive: the
 * script runs afresh at restore). Shared by the hooks' thread and the main
 * thread (SIGUSR1 saves), hence the lock. */
#ifndef SMOLVM_KEPT_H
#define SMOLVM_KEPT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define KEPT_MAX 64          /* values */
#define KEPT_KEY_MAX 64      /* bytes of a name */
#define KEPT_VALUE_MAX 4096  /* bytes of a value */

struct kept {
	pthread_mutex_t lock;
	size_t n;
	struct {
		char key[KEPT_KEY_MAX + 1];
		char *val;
		size_t len;
	} v[KEPT_MAX];
};

void kept_init(struct kept *k);
void kept_free(struct kept *k);
/* Sets key to val (NULL: removes it); refuses bad names and sizes. */
int kept_set(struct kept *k, const char *key, const char *val, size_t len,
	     struct err *e) WARN_UNUSED;
/* The section's bytes (typed state encoding, a bytes field a value), or
 * *len = 0 when nothing is kept; free(*buf). */
int kept_encode(struct kept *k, uint8_t **buf, size_t *len, struct err *e) WARN_UNUSED;
/* Fills k from a bundle's section (untrusted: every value checked). */
int kept_decode(struct kept *k, const void *buf, size_t len, struct err *e) WARN_UNUSED;
/* "key", "value", ..., NULL: a copy for the vm objects (free with
 * kept_list_free). */
char **kept_list(struct kept *k);
void kept_list_free(char **list);

struct vm;
/* snapshot_save() with k's values in the bundle (k may be NULL). */
int kept_snapshot_save(struct vm *vm, const char *path, int then_stop, struct kept *k,
		       struct err *e) WARN_UNUSED;

#endif
