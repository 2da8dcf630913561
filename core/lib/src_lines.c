#include "lib/src_lines.h"

#include <ctype.h>
#include <string.h>

static int is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

int src_key_line(const char *src, size_t len, const char *key, int from, int nth)
{
	size_t klen = key ? strlen(key) : 0;
	int line = 1;

	if (!src || !klen || nth < 1)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (line >= from && klen <= len - i && !memcmp(src + i, key, klen) &&
		    (i == 0 || !is_name_char(src[i - 1])) &&
		    (i + klen == len || !is_name_char(src[i + klen]))) {
			size_t j = i + klen;
			while (j < len && (src[j] == ' ' || src[j] == '\t'))
				j++;
			if (j < len && src[j] == '=' && (j + 1 >= len || src[j + 1] != '=') && !--nth)
				return line;
		}
		if (src[i] == '\n')
			line++;
	}
	return 0;
}
