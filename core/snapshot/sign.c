#include "snapshot/sign.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/dirs.h"
#include "snapshot/lineage.h"
#include "snapshot/snapmem.h"

int snapshot_verify(const struct bundle *b, struct err *e)
{
	struct chunked *c = malloc(sizeof(*c));
	struct lineage l;
	int rc = c ? bundle_verify_all(b, e) : err_set(e, -ENOMEM, "out of memory");

	/* a child's chunks in its parents are part of it */
	if (!rc)
		rc = lineage_open(b, &l, e);
	if (rc) {
		free(c);
		return rc;
	}
	for (size_t i = 0; !rc && i < b->n; i++) {
		const struct bundle_section *s = &b->secs[i];
		if (!bundle_chunked(s->type))
			continue;
		rc = lineage_view(b, &l, s, c, e);
		if (!rc)
			rc = snapmem_verify_view(&c->v[0], e);
	}
	lineage_close(&l);
	free(c);
	return rc;
}

int bundle_signature_valid(const struct bundle *b, size_t i)
{
	uint8_t msg[BUNDLE_SIGNED_SIZE];

	if (b->version < 2 || i >= b->nsigs)
		return 0;
	bundle_signed_message(b->id, msg);
	return crypto_sign_verify_detached(b->sigs[i].sig, msg, sizeof(msg), b->sigs[i].key) == 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sections and TOC as they are: in the kernel (a reflink where the
 * filesystem shares extents). */
static int copy_body(int in, int out, uint64_t from, uint64_t len)
{
	loff_t ip = (loff_t)from, op = (loff_t)from;

	while (len) {
		ssize_t n = copy_file_range(in, &ip, out, &op, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP))
			break; /* fall back to read/write below */
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		len -= (uint64_t)n;
	}
	if (len && lseek(out, op, SEEK_SET) < 0)
		return -errno;
	while (len) {
		uint8_t buf[1 << 16];
		ssize_t n = pread(in, buf, len < sizeof(buf) ? len : sizeof(buf), ip);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		int rc = write_all(out, buf, (size_t)n);
		if (rc)
			return rc;
		ip += n;
		len -= (uint64_t)n;
	}
	return 0;
}

int bundle_write_signed(const struct bundle *b, const char *path,
			const struct bundle_signature *v, size_t n, struct err *e)
{
	uint8_t hdr[BUNDLE_HEADER_SIZE], block[8 + 96 * BUNDLE_SIG_MAX];
	uint64_t body = b->toc_offset + b->toc_size, size, x;
	size_t blen;
	struct stat st;
	char *tmp;
	int fd, rc;

	if (b->version < 2 || b->fd < 0 || n > BUNDLE_SIG_MAX)
		return err_set(e, -EINVAL, "%s: cannot be signed", b->path);
	blen = n ? bundle_sigblock_encode(block, v, n) : 0;
	fd = tmp_beside(path, &tmp);
	if (fd < 0)
		return err_set(e, fd, "%s: cannot create a file beside it: %s", path, strerror(-fd));
	/* The header with the new block's size and the file's. */
	memcpy(hdr, b->map, sizeof(hdr));
	size = htole64(body + blen);
	memcpy(hdr + 32, &size, 8);
	x = htole64(blen);
	memcpy(hdr + 48, &x, 8);
	x = htole64(XXH3_64bits(hdr, 56));
	memcpy(hdr + 56, &x, 8);
	rc = write_all(fd, hdr, sizeof(hdr));
	if (!rc)
		rc = copy_body(b->fd, fd, BUNDLE_HEADER_SIZE, body - BUNDLE_HEADER_SIZE);
	if (!rc && lseek(fd, (off_t)body, SEEK_SET) < 0)
		rc = -errno;
	if (!rc)
		rc = write_all(fd, block, blen);
	/* The mode the bundle had. */
	if (!rc && fstat(b->fd, &st) == 0 && fchmod(fd, st.st_mode & 0777) < 0)
		rc = -errno;
	rc = tmp_finish(fd, tmp, path, rc, 1);
	return rc ? err_set(e, rc, "%s: %s", path, strerror(-rc)) : 0;
}
