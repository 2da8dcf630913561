#include "session/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/dirs.h"

#define HASH_BYTES crypto_generichash_BYTES /* BLAKE2b-256 */

/* The records:
 *   b-<hash>           a bundle of this content is trusted; "script PATH"
 *                      when known: the script it was packed from, whose
 *                      directory its relative device paths start from
 *                      (bundles carry no host path of their own)
 *   s-<size>           some trusted bundle has this size (empty)
 *   i-<dev>-<ino>      "<size> <mtime s.ns> <ctime s.ns> <hash>": the
 *                      file that was that bundle when it was recorded */

static int hash_file(const char *path, char hex[2 * HASH_BYTES + 1], struct err *e)
{
	crypto_generichash_state st;
	unsigned char buf[1 << 16], h[HASH_BYTES];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			close(fd);
			return err_set(e, (int)n, "%s: %s", path, strerror((int)-n));
		}
		crypto_generichash_update(&st, buf, (size_t)n);
	}
	close(fd);
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, 2 * HASH_BYTES + 1, h, sizeof(h));
	return 0;
}

static void identity(const struct stat *st, const char *hex, char *out, size_t len)
{
	snprintf(out, len, "%" PRIu64 " %lld.%09ld %lld.%09ld %s\n", (uint64_t)st->st_size,
		 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		 (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, hex);
}

static int put(const char *dir, const char *name, const char *text, struct err *e)
{
	char path[4400], *tmp;
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = tmp_beside(path, &tmp);
	if (fd < 0)
		return err_set(e, fd, "%s: %s", path, strerror(-fd));
	if (text && write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		rc = -EIO;
	rc = tmp_finish(fd, tmp, path, rc, 0);
	return rc ? err_set(e, rc, "%s: %s", path, strerror(-rc)) : 0;
}

static int has(const char *dir, const char *name)
{
	char path[4400];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* A b- record: 1 when it exists, its script (or "") in `script`. */
static int trusted_hash(const char *dir, const char *hex, char *script, size_t len)
{
	char path[4400], text[4200];
	ssize_t n;
	int fd;

	if (script && len)
		script[0] = 0;
	snprintf(path, sizeof(path), "%s/b-%s", dir, hex);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[n > 0 ? n : 0] = 0;
	if (script && len && !strncmp(text, "script /", 8)) {
		text[strcspn(text, "\n")] = 0;
		snprintf(script, len, "%s", text + 7);
	}
	return 1;
}

static int open_dir(char *dir, size_t len, struct err *e)
{
	if (sodium_init() < 0)
		return err_set(e, -EIO, "libsodium could not start");
	return data_dir_private(dir, len, "trusted", e);
}

int trust_record(const char *path, const char *script, struct err *e)
{
	char dir[4096], hex[2 * HASH_BYTES + 1], name[128], id[256], line[4200] = "";
	struct stat st;
	int rc = open_dir(dir, sizeof(dir), e);

	if (!rc)
		rc = hash_file(path, hex, e);
	if (rc)
		return rc;
	/* after the hash: the file as it is now is what was hashed */
	if (stat(path, &st) < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	identity(&st, hex, id, sizeof(id));
	snprintf(name, sizeof(name), "b-%s", hex);
	char abs[PATH_MAX];
	if (script && realpath(script, abs))
		script = abs;
	if (script && script[0] == '/' && !strchr(script, '\n'))
		snprintf(line, sizeof(line), "script %s\n", script);
	rc = put(dir, name, line, e);
	snprintf(name, sizeof(name), "s-%" PRIu64, (uint64_t)st.st_size);
	if (!rc)
		rc = put(dir, name, NULL, e);
	snprintf(name, sizeof(name), "i-%" PRIu64 "-%" PRIu64, (uint64_t)st.st_dev,
		 (uint64_t)st.st_ino);
	return rc ? rc : put(dir, name, id, e);
}

int trust_check(const char *path, char *script, size_t len, struct err *e)
{
	char dir[4096], hex[2 * HASH_BYTES + 1], name[128], want[256], got[256] = "";
	struct stat st;
	ssize_t n;
	int fd, rc;

	if (stat(path, &st) < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	rc = open_dir(dir, sizeof(dir), e);
	if (rc)
		return rc;
	/* the file that was recorded, unchanged since */
	snprintf(name, sizeof(name), "%s/i-%" PRIu64 "-%" PRIu64, dir, (uint64_t)st.st_dev,
		 (uint64_t)st.st_ino);
	fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, got, sizeof(got) - 1);
		close(fd);
		got[n > 0 ? n : 0] = 0;
		char *sp = strrchr(got, ' ');
		if (sp && strlen(sp + 1) == 2 * HASH_BYTES + 1) {
			memcpy(hex, sp + 1, 2 * HASH_BYTES);
			hex[2 * HASH_BYTES] = 0;
			identity(&st, hex, want, sizeof(want));
			if (!strcmp(want, got) && trusted_hash(dir, hex, script, len))
				return 1;
		}
	}
	/* a copy or a moved file: hashed only if a trusted bundle has its size */
	snprintf(name, sizeof(name), "s-%" PRIu64, (uint64_t)st.st_size);
	if (!has(dir, name))
		return 0;
	rc = hash_file(path, hex, e);
	if (rc)
		return rc;
	char recorded[4200];
	if (!trusted_hash(dir, hex, recorded, sizeof(recorded)))
		return 0;
	/* found: remember this file too (best effort) */
	struct err ignored;
	(void)!trust_record(path, recorded, &ignored);
	if (script && len)
		snprintf(script, len, "%s", recorded);
	return 1;
}

void trust_saved(const char *path, int trusted, const char *script)
{
	struct err e;

	if (trusted && trust_record(path, script, &e))
		fprintf(stderr, "smolvm: %s is not recorded as yours (%s): restoring it will need "
			"--trust to run its hooks\n", path, e.msg);
}
