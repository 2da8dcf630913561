/* Parallel blob transfers (pool.h). */
#include "registry/pool.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct run {
	const struct pool *p;
	size_t n, next, done;
	uint64_t bytes;
	int failed;
	struct err e;
	pthread_mutex_t lock;
};

static void show(struct run *r)
{
	printf("\r%s: %zu/%zu blobs, %.1f MiB ", r->p->label, r->done, r->n,
	       (double)r->bytes / (1 << 20));
	fflush(stdout);
}

static void *worker(void *arg)
{
	struct run *r = arg;
	CURL *h = curl_easy_init();
	struct err e = { "" };

	for (;;) {
		uint64_t b = 0;
		size_t i;
		int rc;

		pthread_mutex_lock(&r->lock);
		if (r->failed || r->next >= r->n || !h) {
			if (!h && !r->failed) {
				r->failed = 1;
				err_set(&r->e, -ENOMEM, "out of memory (curl)");
			}
			pthread_mutex_unlock(&r->lock);
			break;
		}
		i = r->next++;
		pthread_mutex_unlock(&r->lock);
		rc = r->p->fn(r->p->ctx, h, i, &b, &e);
		pthread_mutex_lock(&r->lock);
		if (rc && !r->failed) {
			r->failed = rc;
			r->e = e;
		}
		r->done++;
		r->bytes += b;
		if (r->p->progress)
			show(r);
		pthread_mutex_unlock(&r->lock);
	}
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

int pool_run(const struct pool *p, size_t n, struct err *e)
{
	struct run r = { .p = p, .n = n };
	pthread_t t[16];
	unsigned k = p->threads ? p->threads : 4, started = 0;

	if (k > 16)
		k = 16;
	if (k > n)
		k = n ? (unsigned)n : 1;
	pthread_mutex_init(&r.lock, NULL);
	for (unsigned i = 0; i < k; i++)
		if (!pthread_create(&t[started], NULL, worker, &r))
			started++;
	if (!started)
		worker(&r);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&r.lock);
	if (p->progress && n) {
		printf("\n");
		fflush(stdout);
	}
	if (r.failed) {
		if (e)
			*e = r.e;
		return r.failed < 0 ? r.failed : -EIO;
	}
	return 0;
}
