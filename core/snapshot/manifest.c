#include "snapshot/manifest.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT 1

/* inih reads lines of at most 199 bytes (INI_MAX_LINE), and a script's
 * absolute path can be longer: such a value goes on as indented
 * continuation lines, which the reader joins back. inih strips blanks
 * around each line and reads a leading ';' or '#' as a comment, so a
 * piece never starts or ends next to one of those. */
#define PIECE 120
#define INI_LINE_MAX 199 /* bytes inih reads of a line, its newline included */

static int cut_ok(const char *p)
{
	return !strchr(" \t\r\n\v\f", p[-1]) && !strchr(" \t\r\n\v\f;#", p[0]);
}

static void put_value(FILE *f, const char *key, const char *v)
{
	size_t len = strlen(v), at = 0;

	fprintf(f, "%s = ", key);
	/* A line inih reads whole stays one line, so a reader from before
	 * continuation lines reads it as before. */
	if (strlen(key) + 3 + len < INI_LINE_MAX) {
		fprintf(f, "%s\n", v);
		return;
	}
	while (len - at > PIECE) {
		size_t n = PIECE;
		while (n > 1 && !cut_ok(v + at + n))
			n--;
		if (n == 1)
			n = PIECE; /* a run of 120 blanks: cut anyway, losing the blanks at the cut */
		fprintf(f, "%.*s\n  ", (int)n, v + at);
		at += n;
	}
	fprintf(f, "%s\n", v + at);
}

char *manifest_format(const struct manifest *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "; smolvm bundle manifest\n[bundle]\nformat = %u\nsmolvm = %s\ncreated = %s\n\n",
		FORMAT, m->smolvm, m->created);
	fprintf(f, "[machine]\nname = %s\narch = %s\ncpus = %u\nmemory = %llu\n",
		m->name, m->arch, m->cpus, (unsigned long long)m->memory);
	put_value(f, "script", m->script);
	if (m->rootfs[0])
		put_value(f, "rootfs", m->rootfs);
	fputc('\n', f);
	fprintf(f, "[host]\nbackend = %s\npage_size = %u\nquirks = %u\n", m->backend,
		m->page_size, m->quirks);
	for (size_t i = 0; i < m->ndevs; i++) {
		const struct manifest_dev *d = &m->devs[i];
		fprintf(f, "\n[device.%s]\ntype = %s\nversion = %s\nabi = %u.%u\nstate_version = %u\n",
			d->name, d->type, d->version, d->abi_major, d->abi_minor, d->state_version);
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

struct pctx {
	struct manifest *m;
	struct err *e;
	int rc;
	uint32_t seen;
	char *cont; /* the last value was a long one ([machine] script, rootfs): a
		     * continuation line appends to it */
};

enum { S_FORMAT = 1, S_CPUS = 2, S_MEMORY = 4, S_BACKEND = 8, S_ARCH = 16 };

static int copy(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -1;
	strcpy(dst, v);
	return 0;
}

static int append(char *dst, size_t cap, const char *v)
{
	size_t have = strlen(dst);

	if (strlen(v) >= cap - have)
		return -1;
	strcpy(dst + have, v);
	return 0;
}

static int num(const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || n > max)
		return -1;
	*out = n;
	return 0;
}

static struct manifest_dev *device(struct manifest *m, const char *section)
{
	const char *name = section + strlen("device.");

	for (size_t i = 0; i < m->ndevs; i++)
		if (!strcmp(m->devs[i].name, name))
			return &m->devs[i];
	if (m->ndevs == MANIFEST_MAX_DEVICES || strlen(name) >= sizeof(m->devs[0].name) || !*name)
		return NULL;
	struct manifest_dev *d = &m->devs[m->ndevs++];
	memset(d, 0, sizeof(*d));
	strcpy(d->name, name);
	return d;
}

static int on_kv(void *user, const char *section, const char *key, const char *v)
{
	struct pctx *c = user;
	struct manifest *m = c->m;
	uint64_t n = 0;
	int bad = 0;
	char *cont = NULL;

	if (!strcmp(section, "bundle")) {
		if (!strcmp(key, "format")) {
			bad = num(v, 1000, &n);
			m->format = (uint32_t)n;
			c->seen |= S_FORMAT;
		} else if (!strcmp(key, "smolvm")) {
			bad = copy(m->smolvm, sizeof(m->smolvm), v);
		} else if (!strcmp(key, "created")) {
			bad = copy(m->created, sizeof(m->created), v);
		}
	} else if (!strcmp(section, "machine")) {
		if (!strcmp(key, "name")) {
			bad = copy(m->name, sizeof(m->name), v);
		} else if (!strcmp(key, "arch")) {
			bad = copy(m->arch, sizeof(m->arch), v);
			c->seen |= S_ARCH;
		} else if (!strcmp(key, "cpus")) {
			bad = num(v, 64, &n) || !n;
			m->cpus = (uint32_t)n;
			c->seen |= S_CPUS;
		} else if (!strcmp(key, "memory")) {
			bad = num(v, UINT64_MAX, &m->memory);
			c->seen |= S_MEMORY;
		} else if (!strcmp(key, "script") || !strcmp(key, "rootfs")) {
			/* both buffers are PATH_MAX long */
			cont = !strcmp(key, "script") ? m->script : m->rootfs;
			bad = c->cont == cont ? append(cont, sizeof(m->script), v)
					      : copy(cont, sizeof(m->script), v);
		}
	} else if (!strcmp(section, "host")) {
		if (!strcmp(key, "backend")) {
			bad = copy(m->backend, sizeof(m->backend), v);
			c->seen |= S_BACKEND;
		} else if (!strcmp(key, "page_size")) {
			bad = num(v, 1u << 30, &n);
			m->page_size = (uint32_t)n;
		} else if (!strcmp(key, "quirks")) {
			bad = num(v, UINT32_MAX, &n);
			m->quirks = (uint32_t)n;
		}
	} else if (!strncmp(section, "device.", 7)) {
		struct manifest_dev *d = device(m, section);
		if (!d) {
			bad = 1;
		} else if (!strcmp(key, "type")) {
			bad = copy(d->type, sizeof(d->type), v);
		} else if (!strcmp(key, "version")) {
			bad = copy(d->version, sizeof(d->version), v);
		} else if (!strcmp(key, "abi")) {
			bad = sscanf(v, "%u.%u", &d->abi_major, &d->abi_minor) != 2;
		} else if (!strcmp(key, "state_version")) {
			bad = num(v, UINT32_MAX, &n);
			d->state_version = (uint32_t)n;
		}
	}
	c->cont = cont;
	/* Unknown keys are tolerated: a newer smolvm may add some. */
	if (bad) {
		c->rc = err_set(c->e, -EBADMSG, "manifest: [%s] %s = \"%.64s\" is invalid", section, key, v);
		return 0;
	}
	return 1;
}

int manifest_parse(const char *text, size_t len, struct manifest *m, struct err *e)
{
	struct pctx c = { m, e, 0, 0, 0 };
	char *s;
	int line;

	memset(m, 0, sizeof(*m));
	if (memchr(text, 0, len))
		return err_set(e, -EBADMSG, "manifest: contains a NUL byte");
	s = strndup(text, len);
	if (!s)
		return err_set(e, -ENOMEM, "out of memory");
	line = ini_parse_string(s, on_kv, &c);
	free(s);
	if (c.rc)
		return c.rc;
	if (line)
		return err_set(e, -EBADMSG, "manifest: line %d is not valid INI", line);
	if ((c.seen & (S_FORMAT | S_CPUS | S_MEMORY | S_BACKEND | S_ARCH)) !=
	    (S_FORMAT | S_CPUS | S_MEMORY | S_BACKEND | S_ARCH))
		return err_set(e, -EBADMSG, "manifest: missing format, cpus, memory, arch or backend");
	if (m->format != FORMAT)
		return err_set(e, -EPROTO, "manifest format %u, this smolvm reads %d", m->format, FORMAT);
	for (size_t i = 0; i < m->ndevs; i++)
		if (!m->devs[i].type[0])
			return err_set(e, -EBADMSG, "manifest: device %s has no type", m->devs[i].name);
	return 0;
}
