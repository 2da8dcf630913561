#include "machine/options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys of a device's table that are the core's, never a plugin's. */
static const char *const core_keys[] = { "type" };

#define NAME_MAX_LEN 64

const char *options_type_name(uint32_t type)
{
	switch (type) {
	case SMOLVM_OPT_STRING:
		return "string";
	case SMOLVM_OPT_INT:
		return "int";
	case SMOLVM_OPT_BOOL:
		return "bool";
	case SMOLVM_OPT_PATH:
		return "path";
	case SMOLVM_OPT_LIST:
		return "list";
	}
	return "?";
}

static size_t min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;
	return m < c ? m : c;
}

/* Optimal string alignment, three rows of the usual table. */
size_t options_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t rows[3][NAME_MAX_LEN + 1];
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

	if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < cur[j])
				cur[j] = prev2[j - 2] + 1;
		}
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

const char *options_suggest(const struct smolvm_option *opts, const char *name)
{
	const char *best = NULL;
	/* One edit in a short name ("prot" for "port", "cd" for "cid"), two
	 * in a longer one ("perod_ms" for "period_ms"); not "x" for "irq". */
	size_t best_d = SIZE_MAX, limit = strlen(name) < 6 ? 1 : 2;

	for (size_t i = 0; opts && opts[i].name && i < OPTIONS_MAX; i++) {
		size_t d = options_distance(name, opts[i].name);
		if (d <= limit && d < best_d) {
			best = opts[i].name;
			best_d = d;
		}
	}
	return best;
}

static int valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return 0;
	return n >= 1 && n <= NAME_MAX_LEN;
}

int options_check_declared(const struct smolvm_option *opts, struct err *e)
{
	size_t i;

	if (!opts)
		return 0;
	for (i = 0; i < OPTIONS_MAX && opts[i].name; i++) {
		const struct smolvm_option *o = &opts[i];
		if (!valid_name(o->name))
			return err_set(e, -EINVAL, "option \"%.80s\": a name is 1-64 of [a-z0-9_]",
				       o->name);
		for (size_t k = 0; k < sizeof(core_keys) / sizeof(core_keys[0]); k++)
			if (!strcmp(o->name, core_keys[k]))
				return err_set(e, -EINVAL, "option \"%s\" is the core's (a device's "
					       "plugin name), not a plugin's", o->name);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(opts[k].name, o->name))
				return err_set(e, -EINVAL, "option \"%s\" declared twice", o->name);
		if (o->type < SMOLVM_OPT_STRING || o->type > SMOLVM_OPT_LIST)
			return err_set(e, -EINVAL, "option \"%s\": unknown type %u", o->name, o->type);
		if (o->flags & ~(SMOLVM_OPT_REQUIRED | SMOLVM_OPT_ONE_OR_LIST))
			return err_set(e, -EINVAL, "option \"%s\": unknown flags %#x", o->name,
				       o->flags & ~(SMOLVM_OPT_REQUIRED | SMOLVM_OPT_ONE_OR_LIST));
		if ((o->flags & SMOLVM_OPT_ONE_OR_LIST) && o->type != SMOLVM_OPT_LIST)
			return err_set(e, -EINVAL, "option \"%s\": SMOLVM_OPT_ONE_OR_LIST on type %s "
				       "(it goes with lists)", o->name, options_type_name(o->type));
	}
	if (i == OPTIONS_MAX && opts[i].name)
		return err_set(e, -EINVAL, "more than %d options, or no entry with a NULL name "
			       "to end them", OPTIONS_MAX);
	return 0;
}

/* "k[N]" -> 1 with the length of "k"; anything else -> 0, the whole key. */
static int split_key(const char *key, size_t *base_len)
{
	size_t n = strlen(key);
	const char *open = strrchr(key, '[');

	*base_len = n;
	if (!open || open == key || n < 4 || key[n - 1] != ']' || open + 1 == key + n - 1)
		return 0;
	for (const char *p = open + 1; p < key + n - 1; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	*base_len = (size_t)(open - key);
	return 1;
}

static const struct smolvm_option *find(const struct smolvm_option *opts, const char *name,
					size_t len)
{
	for (size_t i = 0; i < OPTIONS_MAX && opts[i].name; i++)
		if (strlen(opts[i].name) == len && !memcmp(opts[i].name, name, len))
			return &opts[i];
	return NULL;
}

/* What strtoll / strtoull with base 0 read whole: "-3", "0x3f8", "1792". */
static int is_int(const char *s)
{
	char *end;

	if (!*s || isspace((unsigned char)*s))
		return 0;
	errno = 0;
	(void)strtoll(s, &end, 0);
	if (!errno && !*end)
		return 1;
	if (*s == '-' || *s == '+')
		return 0;
	errno = 0;
	(void)strtoull(s, &end, 0);
	return !errno && !*end;
}

static int unknown(const struct smolvm_option *opts, const char *name, const char *where,
		   struct err *e)
{
	const char *near = options_suggest(opts, name);
	char known[512];
	size_t used = 0;

	if (near)
		return err_set(e, -EINVAL, "%s.%s: unknown option (did you mean %s?)", where, name,
			       near);
	known[0] = 0;
	for (size_t i = 0; i < OPTIONS_MAX && opts[i].name && used < sizeof(known); i++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
					 opts[i].name);
	if (!known[0])
		return err_set(e, -EINVAL, "%s.%s: unknown option (this device takes none)", where,
			       name);
	return err_set(e, -EINVAL, "%s.%s: unknown option (known: %s)", where, name, known);
}

/* The problem with one key, or 0. */
static int check_key(const struct smolvm_option *opts, const char *key, const char *val,
		     const char *where, struct err *e)
{
	char name[NAME_MAX_LEN + 1];
	size_t len;
	int indexed = split_key(key, &len);
	const struct smolvm_option *o = find(opts, key, len);

	if (!o) {
		if (len > NAME_MAX_LEN)
			return unknown(opts, key, where, e);
		memcpy(name, key, len);
		name[len] = 0;
		return unknown(opts, name, where, e);
	}
	if (o->type == SMOLVM_OPT_LIST) {
		if (!indexed && !(o->flags & SMOLVM_OPT_ONE_OR_LIST))
			return err_set(e, -EINVAL, "%s.%s: expected a list such as { \"a\", \"b\" }, "
				       "got one value \"%.80s\"", where, o->name, val);
		return 0;
	}
	if (indexed)
		return err_set(e, -EINVAL, "%s.%s: expected %s, got a list", where, o->name,
			       o->type == SMOLVM_OPT_INT ? "an integer"
			       : o->type == SMOLVM_OPT_BOOL ? "true or false"
			       : o->type == SMOLVM_OPT_PATH ? "a file name" : "one value");
	if (o->type == SMOLVM_OPT_INT && !is_int(val))
		return err_set(e, -EINVAL, "%s.%s: expected an integer, got \"%.80s\"", where,
			       o->name, val);
	if (o->type == SMOLVM_OPT_BOOL && strcmp(val, "true") && strcmp(val, "false"))
		return err_set(e, -EINVAL, "%s.%s: expected true or false, got \"%.80s\"", where,
			       o->name, val);
	return 0;
}

static int present(const struct dev_config *d, const struct smolvm_option *o)
{
	char key[NAME_MAX_LEN + 8];

	if (dev_config_get(d, o->name))
		return 1;
	snprintf(key, sizeof(key), "%s[1]", o->name);
	return o->type == SMOLVM_OPT_LIST && dev_config_get(d, key);
}

int options_check(const struct dev_config *d, const struct smolvm_option *opts,
		  const char *where, const char **key, struct err *e)
{
	const char *first = NULL;

	if (key)
		*key = NULL;
	if (!opts)
		return 0;
	/* The first bad key by name, so that the message does not depend on
	 * the order Lua handed the table's keys over in. */
	for (size_t i = 0; i < d->n; i++) {
		struct err tmp;
		int core = 0;
		for (size_t k = 0; k < sizeof(core_keys) / sizeof(core_keys[0]); k++)
			core |= !strcmp(d->keys[i], core_keys[k]);
		if (core || (first && strcmp(d->keys[i], first) >= 0))
			continue;
		if (check_key(opts, d->keys[i], d->vals[i], where, &tmp)) {
			first = d->keys[i];
			if (e)
				*e = tmp;
		}
	}
	if (first) {
		if (key)
			*key = first;
		return -EINVAL;
	}
	for (size_t i = 0; i < OPTIONS_MAX && opts[i].name; i++)
		if ((opts[i].flags & SMOLVM_OPT_REQUIRED) && !present(d, &opts[i]))
			return err_set(e, -EINVAL, "%s.%s: missing (required%s%s)", where,
				       opts[i].name, opts[i].help ? ": " : "",
				       opts[i].help ? opts[i].help : "");
	return 0;
}
