#include "session/kept.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "machine/state.h"
#include "snapshot/snapshot.h"

void kept_init(struct kept *k)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
}

void kept_free(struct kept *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i].val);
	k->n = 0;
	pthread_mutex_destroy(&k->lock);
}

static int key_ok(const char *key, size_t n)
{
	if (!n || n > KEPT_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
			    key[i]) || !key[i])
			return 0;
	return 1;
}

/* With the lock held. */
static int set_locked(struct kept *k, const char *key, const char *val, size_t len,
		      struct err *e)
{
	size_t i;
	char *copy = NULL;

	if (!key_ok(key, strlen(key)))
		return err_set(e, -EINVAL, "kept value name \"%.80s\": use 1 to %d letters, digits, "
			       "'_', '.' or '-'", key, KEPT_KEY_MAX);
	if (val && len > KEPT_VALUE_MAX)
		return err_set(e, -E2BIG, "kept value %s: %zu bytes, at most %d", key, len,
			       KEPT_VALUE_MAX);
	if (val && memchr(val, 0, len))
		return err_set(e, -EINVAL, "kept value %s: text only (it holds a NUL byte)", key);
	for (i = 0; i < k->n && strcmp(k->v[i].key, key); i++)
		;
	if (!val) {
		if (i < k->n) {
			free(k->v[i].val);
			k->v[i] = k->v[--k->n];
		}
		return 0;
	}
	if (i == k->n && k->n == KEPT_MAX)
		return err_set(e, -ENOSPC, "kept value %s: at most %d values are kept", key, KEPT_MAX);
	copy = malloc(len + 1);
	if (!copy)
		return err_set(e, -ENOMEM, "out of memory");
	memcpy(copy, val, len);
	copy[len] = 0;
	if (i == k->n)
		strcpy(k->v[k->n++].key, key);
	else
		free(k->v[i].val);
	k->v[i].val = copy;
	k->v[i].len = len;
	return 0;
}

int kept_set(struct kept *k, const char *key, const char *val, size_t len, struct err *e)
{
	pthread_mutex_lock(&k->lock);
	int rc = set_locked(k, key, val, len, e);
	pthread_mutex_unlock(&k->lock);
	return rc;
}

int kept_encode(struct kept *k, uint8_t **buf, size_t *len, struct err *e)
{
	struct smolvm_state_writer w;
	int rc = 0;

	*buf = NULL;
	*len = 0;
	state_writer_init(&w);
	pthread_mutex_lock(&k->lock);
	for (size_t i = 0; !rc && i < k->n; i++)
		rc = state_put(&w, k->v[i].key, SMOLVM_STATE_BYTES, k->v[i].val,
			       (uint32_t)k->v[i].len);
	pthread_mutex_unlock(&k->lock);
	if (rc) {
		state_writer_free(&w);
		return err_set(e, rc, "kept values: cannot encode them");
	}
	*buf = w.buf; /* the writer's buffer is ours now */
	*len = w.len;
	return 0;
}

int kept_decode(struct kept *k, const void *buf, size_t len, struct err *e)
{
	struct smolvm_state_reader r;
	char key[KEPT_KEY_MAX + 1];
	int rc = state_reader_init(&r, buf, len, e);

	for (size_t i = 0; !rc && i < r.n; i++) {
		const struct state_rec *s = &r.recs[i];
		if (s->kind != REC_FIELD || s->type != SMOLVM_STATE_BYTES || s->parent != -1 ||
		    s->name_len > KEPT_KEY_MAX) {
			rc = err_set(e, -EBADMSG, "kept values: record %zu is not a value", i);
			break;
		}
		memcpy(key, s->name, s->name_len);
		key[s->name_len] = 0;
		rc = kept_set(k, key, (const char *)s->data, s->data_len, e);
	}
	state_reader_free(&r);
	return rc;
}

char **kept_list(struct kept *k)
{
	char **v;

	pthread_mutex_lock(&k->lock);
	v = calloc(2 * k->n + 1, sizeof(*v));
	for (size_t i = 0; v && i < k->n; i++) {
		v[2 * i] = strdup(k->v[i].key);
		v[2 * i + 1] = malloc(k->v[i].len + 1);
		if (v[2 * i + 1]) {
			memcpy(v[2 * i + 1], k->v[i].val, k->v[i].len + 1);
		}
		if (!v[2 * i] || !v[2 * i + 1]) {
			free(v[2 * i]);
			free(v[2 * i + 1]);
			v[2 * i] = v[2 * i + 1] = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&k->lock);
	return v;
}

void kept_list_free(char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}

int kept_snapshot_save(struct vm *vm, const char *path, int then_stop, struct kept *k,
		       struct err *e)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = k ? kept_encode(k, &buf, &len, e) : 0;

	if (!rc)
		rc = snapshot_save(vm, path, then_stop, buf, len, e);
	free(buf);
	return rc;
}
