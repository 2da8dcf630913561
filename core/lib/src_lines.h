/* Lines of a Lua script's text for messages: Lua keeps no line for a
 * table's fields, so the best line for `key = ...` is found in the text. */
#ifndef SMOLVM_SRC_LINES_H
#define SMOLVM_SRC_LINES_H

#include <stddef.h>

/* The line (from 1) of the nth (from 1) assignment `key =` (a whole name,
 * not `==`) at or after line `from`; 0 when there is none. */
int src_key_line(const char *src, size_t len, const char *key, int from, int nth);

#endif
