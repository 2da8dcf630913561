/* The instruction budget cannot see time spent inside one C function of
 * the Lua library (string.find with a pathological pattern on a long
 * string). The watchdog measures one thread's CPU time per call it is told
 * of: past the limit it reports the call as hung (once); the thread, which
 * cannot be interrupted, is then abandoned to the process exit. */
#ifndef SMOLVM_WATCHDOG_H
#define SMOLVM_WATCHDOG_H

#include <pthread.h>
#include <time.h>

struct watchdog {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	clockid_t cid;       /* CPU clock of the watched thread */
	double limit_s;
	int started, done, in_call;
	struct timespec cpu0;
	char what[32];
	/* Called on the watchdog's thread with a message naming the call. */
	void (*on_hung)(void *opaque, const char *msg);
	void *opaque;
};

/* Watches `watched`; returns 0 or -errno (then nothing is watched). */
int watchdog_start(struct watchdog *w, pthread_t watched, double limit_s,
		   void (*on_hung)(void *opaque, const char *msg), void *opaque);
/* From the watched thread, around each call. */
void watchdog_enter(struct watchdog *w, const char *what);
void watchdog_leave(struct watchdog *w);
/* Ends and joins the watchdog (safe if it never started). */
void watchdog_stop(struct watchdog *w);

#endif
