#include "session/lines.h"

#include <stdio.h>
#include <string.h>

void lines_complete(struct lines *l, const char *line)
{
	snprintf(l->ring[l->next_seq % LINES_RING], LINES_MAX_LEN, "%s", line);
	l->next_seq++;
	l->partial[0] = 0;
}

void lines_partial(struct lines *l, const char *line)
{
	snprintf(l->partial, sizeof(l->partial), "%s", line);
	l->partial_gen++;
}

void lines_begin_call(struct lines *l)
{
	l->cursor = l->next_seq;
}

void lines_set_waiting(struct lines *l, int on)
{
	l->waiting = on;
	l->partial[0] = 0; /* only a line being written from now on counts */
}

int lines_next_console(struct lines *l, char out[LINES_MAX_LEN])
{
	if (l->delivered + LINES_RING < l->next_seq)
		l->delivered = l->next_seq - LINES_RING;
	if (l->delivered >= l->next_seq)
		return 0;
	memcpy(out, l->ring[l->delivered++ % LINES_RING], LINES_MAX_LEN);
	return 1;
}

int lines_next_wait(struct lines *l, char out[LINES_MAX_LEN], int *partial)
{
	if (l->cursor + LINES_RING < l->next_seq)
		l->cursor = l->next_seq - LINES_RING; /* lost lines: the oldest kept */
	if (l->cursor < l->next_seq) {
		l->last_seq = l->cursor++;
		memcpy(out, l->ring[l->last_seq % LINES_RING], LINES_MAX_LEN);
		*partial = l->last_partial = 0;
		return 1;
	}
	if (l->partial[0] && l->partial_seen != l->partial_gen) {
		l->partial_seen = l->partial_gen;
		memcpy(out, l->partial, LINES_MAX_LEN);
		l->last_seq = l->next_seq;
		*partial = l->last_partial = 1;
		return 1;
	}
	return 0;
}

void lines_matched(struct lines *l)
{
	if (l->last_partial && l->cursor <= l->last_seq)
		l->cursor = l->last_seq + 1;
}

void lines_recent(const struct lines *l, unsigned n, char *out, size_t len)
{
	uint64_t first = l->next_seq > n ? l->next_seq - n : 0;
	size_t off = 0;

	out[0] = 0;
	if (l->next_seq > LINES_RING && first < l->next_seq - LINES_RING)
		first = l->next_seq - LINES_RING;
	for (uint64_t s = first; s < l->next_seq && off < len; s++)
		off += (size_t)snprintf(out + off, len - off, "\n    %s", l->ring[s % LINES_RING]);
}
