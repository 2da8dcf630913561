/* The guest's console lines as hooks see them: a ring of the last complete
 * lines by sequence number, and the line being written. Not locked: the
 * hooks runner holds its lock around every call. */
#ifndef SMOLVM_LINES_H
#define SMOLVM_LINES_H

#include <stddef.h>
#include <stdint.h>

#define LINES_RING 256    /* lines kept for on_console / wait_console */
#define LINES_MAX_LEN 512

struct lines {
	/* seq n lives in ring[n % LINES_RING] while n + LINES_RING > next */
	char ring[LINES_RING][LINES_MAX_LEN];
	uint64_t next_seq;
	char partial[LINES_MAX_LEN];
	uint64_t partial_gen;
	/* the reader: the script thread */
	uint64_t delivered;    /* next line for on_console */
	uint64_t cursor;       /* next line for wait_console in this hook call */
	uint64_t partial_seen;
	uint64_t last_seq;     /* of the line next_wait gave last */
	int last_partial;
	int waiting;           /* in vm:wait_console: the partial line matters */
};

/* The writer (any thread). */
void lines_complete(struct lines *l, const char *line);
void lines_partial(struct lines *l, const char *line);

/* A hook call begins: wait_console sees lines from here on. */
void lines_begin_call(struct lines *l);
void lines_set_waiting(struct lines *l, int on);
/* The next line for on_console into out; 0 when there is none. */
int lines_next_console(struct lines *l, char out[LINES_MAX_LEN]);
/* The next line for wait_console (a complete one, else the line being
 * written if it changed); 0 when there is none. */
int lines_next_wait(struct lines *l, char out[LINES_MAX_LEN], int *partial);
/* The line next_wait gave last matched: a matched prompt is not matched
 * again once its line ends. */
void lines_matched(struct lines *l);

/* The last n complete lines, each on its own indented line, for a
 * message. */
void lines_recent(const struct lines *l, unsigned n, char *out, size_t len);

#endif
