#include "session/watchdog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/clock.h"

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;

	pthread_setname_np(pthread_self(), "watchdog");
	pthread_mutex_lock(&w->lock);
	while (!w->done) {
		struct timespec dl, now;
		deadline_after(&dl, 0.5);
		pthread_cond_timedwait(&w->cond, &w->lock, &dl);
		if (w->done || !w->in_call || clock_gettime(w->cid, &now))
			continue;
		double used = (double)(now.tv_sec - w->cpu0.tv_sec) +
			      (now.tv_nsec - w->cpu0.tv_nsec) / 1e9;
		if (used > w->limit_s) {
			char msg[256];
			snprintf(msg, sizeof(msg),
				 "hook %s: still running after %.0f s of CPU time (a library call "
				 "that never ends, such as a pathological string pattern?)",
				 w->what, w->limit_s);
			pthread_mutex_unlock(&w->lock);
			w->on_hung(w->opaque, msg);
			return NULL;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int watchdog_start(struct watchdog *w, pthread_t watched, double limit_s,
		   void (*on_hung)(void *opaque, const char *msg), void *opaque)
{
	pthread_condattr_t ca;
	int rc;

	memset(w, 0, sizeof(*w));
	w->limit_s = limit_s;
	w->on_hung = on_hung;
	w->opaque = opaque;
	rc = pthread_getcpuclockid(watched, &w->cid);
	if (rc)
		return -rc;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&w->thread, NULL, watchdog_main, w);
	if (rc) {
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		return -rc;
	}
	w->started = 1;
	return 0;
}

void watchdog_enter(struct watchdog *w, const char *what)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->in_call = 1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &w->cpu0);
	snprintf(w->what, sizeof(w->what), "%s", what);
	pthread_mutex_unlock(&w->lock);
}

void watchdog_leave(struct watchdog *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->in_call = 0;
	pthread_mutex_unlock(&w->lock);
}

void watchdog_stop(struct watchdog *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->done = 1;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	w->started = 0;
}
