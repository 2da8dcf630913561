#include "session/keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/dirs.h"

#define PUB_TAG "smolvm-ed25519"
#define SECRET_TAG "smolvm-ed25519-secret"
#define B64 sodium_base64_VARIANT_ORIGINAL

int key_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > KEY_NAME_MAX || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    name[i]))
			return 0;
	return 1;
}

void key_text(const uint8_t pk[32], char out[KEY_TEXT_MAX])
{
	sodium_bin2base64(out, KEY_TEXT_MAX, pk, 32, B64);
}

static int dir_of(char *buf, size_t len, const char *sub, struct err *e)
{
	if (sodium_init() < 0)
		return err_set(e, -EIO, "libsodium could not start");
	return config_dir_private(buf, len, sub, e);
}

static int check_name(const char *name, struct err *e)
{
	if (!key_name_ok(name))
		return err_set(e, -EINVAL, "key name \"%s\": use 1 to %d letters, digits, '.', "
			       "'_' or '-', not starting with '.'", name, KEY_NAME_MAX);
	return 0;
}

/* sub/NAME.ext under the configuration directory, for a valid name. */
static int key_file(const char *name, const char *sub, const char *ext, char *path, size_t len,
		    struct err *e)
{
	char dir[4096];
	int rc = check_name(name, e);

	if (!rc)
		rc = dir_of(dir, sizeof(dir), sub, e);
	if (!rc && snprintf(path, len, "%s/%s.%s", dir, name, ext) >= (int)len)
		rc = err_set(e, -ENAMETOOLONG, "%s: path too long", dir);
	return rc;
}

/* A whole small file, read without following a link; NUL-terminated. */
static int slurp(const char *path, char *buf, size_t len, struct err *e)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : 0;
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			if (fd)
				close(fd);
			return err_set(e, (int)n, "%s: %s", path, strerror((int)-n));
		}
		got += (size_t)n;
	}
	if (fd)
		close(fd);
	buf[got] = 0;
	return 0;
}

/* "TAG BASE64 [NAME]": the key's bytes and its name. */
static int parse_line(const char *text, const char *tag, uint8_t *key, size_t key_len,
		      char *name, size_t name_len)
{
	char t[32], b64[128], nm[KEY_NAME_MAX + 2] = "";
	size_t got;
	int k = sscanf(text, "%31s %127s %65s", t, b64, nm);

	if (k < 2 || strcmp(t, tag))
		return -EINVAL;
	if (sodium_base642bin(key, key_len, b64, strlen(b64), NULL, &got, NULL, B64) ||
	    got != key_len)
		return -EINVAL;
	if (name)
		snprintf(name, name_len, "%s", k == 3 && key_name_ok(nm) ? nm : "");
	return 0;
}

static int write_new(const char *path, const char *text, mode_t mode, struct err *e)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	size_t len = strlen(text);

	if (fd < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		int rc = errno ? -errno : -EIO;
		close(fd);
		unlink(path);
		return err_set(e, rc, "%s: %s", path, strerror(-rc));
	}
	close(fd);
	return 0;
}

static void pub_line(const uint8_t pk[32], const char *name, char *out, size_t len)
{
	char b64[KEY_TEXT_MAX];

	key_text(pk, b64);
	snprintf(out, len, PUB_TAG " %s %s\n", b64, name);
}

int key_generate(const char *name, struct err *e)
{
	char dir[4096], tdir[4096], path[4400], line[256];
	char sk64[sodium_base64_ENCODED_LEN(64, B64)];
	uint8_t pk[32], sk[64];
	int rc = check_name(name, e);

	if (!rc)
		rc = dir_of(dir, sizeof(dir), "keys", e);
	if (!rc)
		rc = dir_of(tdir, sizeof(tdir), "trusted-keys", e);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	if (access(path, F_OK) == 0)
		return err_set(e, -EEXIST, "key %s exists already (%s): choose another name, or "
			       "remove it yourself if you mean to lose it", name, path);
	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(sk64, sizeof(sk64), sk, sizeof(sk), B64);
	snprintf(line, sizeof(line), SECRET_TAG " %s\n", sk64);
	sodium_memzero(sk, sizeof(sk));
	rc = write_new(path, line, 0600, e);
	sodium_memzero(line, sizeof(line));
	sodium_memzero(sk64, sizeof(sk64));
	if (rc)
		return rc;
	pub_line(pk, name, line, sizeof(line));
	snprintf(path, sizeof(path), "%s/%s.pub", dir, name);
	rc = write_new(path, line, 0644, e);
	/* Your own signatures make bundles trusted here too. */
	if (!rc) {
		snprintf(path, sizeof(path), "%s/%s.pub", tdir, name);
		unlink(path);
		rc = write_new(path, line, 0644, e);
	}
	if (rc)
		return rc;
	printf("key %s: secret key %s/%s.key (keep it), public key %s/%s.pub\n%s", name, dir,
	       name, dir, name, line);
	return 0;
}

int key_secret(const char *name, uint8_t sk[64], struct err *e)
{
	char path[4400], text[512];
	struct stat st;
	int rc = key_file(name, "keys", "key", path, sizeof(path), e);

	if (rc)
		return rc;
	if (lstat(path, &st) < 0)
		return err_set(e, -errno, "key %s: %s (smolvm key generate %s makes one)", name,
			       strerror(errno), name);
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return err_set(e, -EPERM, "key %s: %s must be a file of yours that only you can "
			       "read (chmod 600)", name, path);
	rc = slurp(path, text, sizeof(text), e);
	if (!rc && parse_line(text, SECRET_TAG, sk, 64, NULL, 0))
		rc = err_set(e, -EINVAL, "key %s: %s is not a smolvm secret key", name, path);
	sodium_memzero(text, sizeof(text));
	return rc;
}

int key_trust(const char *file, const char *as, struct err *e)
{
	char path[4400], text[512], name[KEY_NAME_MAX + 1], line[256], b64[KEY_TEXT_MAX];
	uint8_t pk[32];
	int rc = slurp(file, text, sizeof(text), e);

	if (rc)
		return rc;
	if (parse_line(text, PUB_TAG, pk, sizeof(pk), name, sizeof(name)))
		return err_set(e, -EINVAL, "%s: not a smolvm public key (a line \"" PUB_TAG
			       " BASE64 NAME\", as smolvm key export prints)", file);
	if (as)
		snprintf(name, sizeof(name), "%s", as);
	if (!*name)
		return err_set(e, -EINVAL, "%s: the key has no name: give one with --as NAME", file);
	rc = key_file(name, "trusted-keys", "pub", path, sizeof(path), e);
	if (rc)
		return rc;
	if (access(path, F_OK) == 0)
		return err_set(e, -EEXIST, "a trusted key named %s exists already: smolvm key "
			       "untrust %s first, or give another name with --as", name, name);
	pub_line(pk, name, line, sizeof(line));
	rc = write_new(path, line, 0644, e);
	if (!rc) {
		key_text(pk, b64);
		printf("trusted: %s %s\n", name, b64);
	}
	return rc;
}

int key_untrust(const char *name, struct err *e)
{
	char path[4400];
	int rc = key_file(name, "trusted-keys", "pub", path, sizeof(path), e);

	if (rc)
		return rc;
	if (unlink(path) < 0)
		return err_set(e, -errno, "trusted key %s: %s", name, strerror(errno));
	return 0;
}

/* Calls fn for each parsable NAME.pub in dir; stops when fn returns non-zero. */
static int each_pub(const char *dir, int (*fn)(const char *name, const uint8_t pk[32], void *),
		    void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return 0;
	while (!rc && (de = readdir(d))) {
		char path[4400], text[512], name[KEY_NAME_MAX + 1];
		uint8_t pk[32];
		struct err ignored;
		size_t n = strlen(de->d_name);
		if (n < 5 || n - 4 > KEY_NAME_MAX || strcmp(de->d_name + n - 4, ".pub"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(n - 4), de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!key_name_ok(name) || slurp(path, text, sizeof(text), &ignored) ||
		    parse_line(text, PUB_TAG, pk, sizeof(pk), NULL, 0))
			continue;
		rc = fn(name, pk, arg);
	}
	closedir(d);
	return rc;
}

static int print_key(const char *name, const uint8_t pk[32], void *arg)
{
	char b64[KEY_TEXT_MAX];

	(void)arg;
	key_text(pk, b64);
	printf("  %-20s %s\n", name, b64);
	return 0;
}

int key_list(struct err *e)
{
	char dir[4096];
	int rc = dir_of(dir, sizeof(dir), "keys", e);

	if (rc)
		return rc;
	printf("your keys (%s):\n", dir);
	each_pub(dir, print_key, NULL);
	rc = dir_of(dir, sizeof(dir), "trusted-keys", e);
	if (rc)
		return rc;
	printf("trusted keys (%s):\n", dir);
	each_pub(dir, print_key, NULL);
	return 0;
}

int key_export(const char *name, struct err *e)
{
	char path[4400], text[512];
	uint8_t pk[32];
	int rc = key_file(name, "keys", "pub", path, sizeof(path), e);

	if (rc)
		return rc;
	rc = slurp(path, text, sizeof(text), e);
	if (rc)
		return err_wrap(e, rc, "key %s", name);
	if (parse_line(text, PUB_TAG, pk, sizeof(pk), NULL, 0))
		return err_set(e, -EINVAL, "%s is not a smolvm public key", path);
	pub_line(pk, name, text, sizeof(text));
	fputs(text, stdout);
	return 0;
}

struct find {
	const uint8_t *pk;
	char *name;
	size_t len;
};

static int match(const char *name, const uint8_t pk[32], void *arg)
{
	struct find *f = arg;

	if (memcmp(pk, f->pk, 32))
		return 0;
	snprintf(f->name, f->len, "%s", name);
	return 1;
}

int key_trusted(const uint8_t pk[32], char *name, size_t len, struct err *e)
{
	char dir[4096];
	struct find f = { pk, name, len };
	int rc = dir_of(dir, sizeof(dir), "trusted-keys", e);

	return rc ? rc : each_pub(dir, match, &f);
}
