/* Parallel blob transfers: n jobs over a few threads, each with its own
 * CURL handle; the first failure stops the rest. On a terminal, stdout
 * shows how many are done and how many bytes moved. */
#ifndef SMOLVM_REG_POOL_H
#define SMOLVM_REG_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct pool {
	const char *label; /* "pushing", "pulling" */
	unsigned threads;
	int progress;      /* show it (stdout is a terminal) */
	/* job i with the thread's CURL handle; adds what it moved to *bytes */
	int (*fn)(void *ctx, void *curl, size_t i, uint64_t *bytes, struct err *e);
	void *ctx;
};

int pool_run(const struct pool *p, size_t n, struct err *e) WARN_UNUSED;

#endif
