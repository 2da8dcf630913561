/* smolvm pull: a bundle out of a registry (registry.h). Frames come
 * through a local blob store ($CACHE/blobs/sha256/HEX): each blob is
 * written to a temporary file, its sha256 and size checked, then renamed
 * in, so an interrupted pull keeps what it had and a later one fetches
 * only the rest; a stored blob is checked again before it is used. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/cache_size.h"
#include "lib/dirs.h"
#include "registry/http.h"
#include "registry/oci.h"
#include "registry/pool.h"
#include "registry/registry.h"
#include "snapshot/bundle.h"
#include "snapshot/sign.h"

struct pull {
	struct reg_client *c;
	char store[4096];
	const struct oci_desc **want; /* unique layers */
	size_t n;
	uint64_t got, got_bytes, had, had_bytes;
	pthread_mutex_t lock;
};

static void blob_path(const struct pull *p, const char *digest, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", p->store, digest + 7);
}

/* 1 when fd holds exactly the blob d (read from the start), 0 when not. */
static int blob_matches(int fd, const struct oci_desc *d)
{
	crypto_hash_sha256_state sha;
	uint8_t buf[1 << 16], h[32];
	char hex[65];
	uint64_t total = 0;
	ssize_t r;

	crypto_hash_sha256_init(&sha);
	while ((r = pread(fd, buf, sizeof(buf), (off_t)total)) > 0) {
		total += (uint64_t)r;
		if (total > d->size)
			return 0;
		crypto_hash_sha256_update(&sha, buf, (size_t)r);
	}
	if (r < 0 || total != d->size)
		return 0;
	crypto_hash_sha256_final(&sha, h);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	return !strcmp(hex, d->digest + 7);
}

static int fetch(void *ctx, void *curl, size_t i, uint64_t *bytes, struct err *e)
{
	struct pull *p = ctx;
	const struct oci_desc *d = p->want[i];
	char path[4200], url[700], *tmp, hex[65];
	crypto_hash_sha256_state sha;
	struct reg_resp r = { 0 };
	uint8_t h[32];
	int fd, rc;

	blob_path(p, d->digest, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		int ok = blob_matches(fd, d);
		if (ok)
			cache_touch(fd);
		close(fd);
		if (ok) {
			pthread_mutex_lock(&p->lock);
			p->had++;
			p->had_bytes += d->size;
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
		unlink(path); /* damaged: fetched again */
	}
	fd = tmp_beside(path, &tmp);
	if (fd < 0)
		return err_set(e, fd, "%s: %s", p->store, strerror(-fd));
	snprintf(url, sizeof(url), "/v2/%s/blobs/%s", p->c->ref.repo, d->digest);
	rc = reg_do(p->c, curl, "GET", url, NULL, NULL, fd, &sha, d->size, &r, e);
	if (!rc && r.status != 200)
		rc = reg_status_err(&r, d->digest, e);
	if (!rc && r.got != d->size)
		rc = err_set(e, -EBADMSG, "blob %s: %llu bytes, not the %llu its manifest says",
			     d->digest, (unsigned long long)r.got, (unsigned long long)d->size);
	if (!rc) {
		crypto_hash_sha256_final(&sha, h);
		sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
		if (strcmp(hex, d->digest + 7))
			rc = err_set(e, -EBADMSG, "blob %s: the registry sent bytes of another "
				     "digest (sha256:%s): refused", d->digest, hex);
	}
	reg_resp_free(&r);
	rc = tmp_finish(fd, tmp, path, rc, 0);
	if (!rc) {
		*bytes = d->size;
		pthread_mutex_lock(&p->lock);
		p->got++;
		p->got_bytes += d->size;
		pthread_mutex_unlock(&p->lock);
	} else if (!e->msg[0]) {
		err_set(e, rc, "%s: %s", path, strerror(-rc));
	}
	return rc;
}

/* Temporary files of pulls killed more than a day ago (a running pull's
 * are younger). */
static void sweep(const char *store)
{
	DIR *d = opendir(store);
	struct dirent *de;
	time_t now = time(NULL);

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat sb;
		if (strstr(de->d_name, ".tmp-") && !fstatat(dirfd(d), de->d_name, &sb,
							     AT_SYMLINK_NOFOLLOW) &&
		    S_ISREG(sb.st_mode) && sb.st_mtime < now - 86400)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static int desc_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct oci_desc *const *)a)->digest,
		      (*(const struct oci_desc *const *)b)->digest);
}

static int copy_blob(int out, const char *path, const struct oci_desc *d, uint64_t from,
		     uint64_t len, struct err *e)
{
	uint8_t buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return err_set(e, -errno, "%s: %s", path, strerror(errno));
	while (len) {
		size_t want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t r = pread(fd, buf, want, (off_t)from);
		if (r <= 0) {
			close(fd);
			return err_set(e, -EIO, "%s: cut short (blob %s)", path, d->digest);
		}
		for (ssize_t done = 0; done < r;) {
			ssize_t w = write(out, buf + done, (size_t)(r - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				close(fd);
				return err_set(e, -errno, "writing the bundle: %s", strerror(errno));
			}
			done += w;
		}
		from += (uint64_t)r;
		len -= (uint64_t)r;
	}
	close(fd);
	return 0;
}

/* The bundle from the skeleton and the frames, into fd. */
static int assemble(const struct pull *p, const struct oci_artifact *a,
		    const struct oci_index *x, int fd, struct err *e)
{
	char skel[4200], path[4200];
	uint64_t pos = 0, sp = 0;
	int rc = 0;

	blob_path(p, a->layers[0].digest, skel, sizeof(skel));
	for (size_t i = 0; !rc && i <= x->n; i++) {
		uint64_t end = i < x->n ? x->frames[i] : x->size;
		rc = copy_blob(fd, skel, &a->layers[0], sp, end - pos, e);
		sp += end - pos;
		if (!rc && i < x->n) {
			blob_path(p, a->layers[i + 1].digest, path, sizeof(path));
			rc = copy_blob(fd, path, &a->layers[i + 1], 0, a->layers[i + 1].size, e);
			pos = end + a->layers[i + 1].size;
		}
	}
	return rc;
}

/* out NULL: into the cache, named by the manifest's digest (cached_path). */
static int pull(const char *refstr, const char *out, const struct registry_opts *o,
		struct registry_stats *st, char *cached_path, size_t cplen, struct err *e)
{
	struct oci_ref ref;
	struct reg_client c;
	struct reg_resp r = { 0 };
	struct oci_artifact a = { 0 };
	struct oci_index x = { 0 };
	struct pull p = { .c = &c };
	struct bundle b;
	char path[700], mdigest[OCI_DIGEST_LEN + 1], target[4200], *tmp = NULL;
	int rc, fd = -1;

	rc = oci_ref_parse(refstr, &ref, e);
	if (rc)
		return rc;
	rc = reg_client_init(&c, &ref, 0, o->insecure, e);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", ref.repo,
		 ref.digest[0] ? ref.digest : ref.tag);
	rc = reg_do(&c, NULL, "GET", path, OCI_MANIFEST_TYPE, NULL, -1, NULL, OCI_MANIFEST_MAX,
		    &r, e);
	if (!rc && r.status == 404)
		rc = err_set(e, -ENOENT, "%s: no such bundle in the registry", refstr);
	else if (!rc && r.status != 200)
		rc = reg_status_err(&r, refstr, e);
	if (rc)
		goto out;
	oci_digest_of(r.body, r.len, mdigest);
	if (ref.digest[0] && strcmp(mdigest, ref.digest)) {
		rc = err_set(e, -EBADMSG, "%s: the registry sent a manifest of digest %s", refstr,
			     mdigest);
		goto out;
	}
	rc = oci_manifest_parse((const char *)r.body, r.len, &a, e);
	if (rc) {
		err_wrap(e, rc, "%s", refstr);
		goto out;
	}
	/* the config: the index of the frames */
	if (a.config.size > OCI_CONFIG_MAX) {
		rc = err_set(e, -EFBIG, "%s: a config of %llu bytes", refstr,
			     (unsigned long long)a.config.size);
		goto out;
	}
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref.repo, a.config.digest);
	rc = reg_do(&c, NULL, "GET", path, NULL, NULL, -1, NULL, a.config.size, &r, e);
	if (!rc && r.status != 200)
		rc = err_wrap(e, reg_status_err(&r, "the config", e), "%s", refstr);
	if (rc)
		goto out;
	char cd[OCI_DIGEST_LEN + 1];
	oci_digest_of(r.body, r.len, cd);
	if (r.len != a.config.size || strcmp(cd, a.config.digest)) {
		rc = err_set(e, -EBADMSG, "%s: the config is not the blob its manifest names: "
			     "refused", refstr);
		goto out;
	}
	p.got = 1; /* the config, on the wire like the blobs */
	p.got_bytes = r.len;
	rc = oci_index_parse((const char *)r.body, r.len, &x, e);
	if (!rc)
		rc = oci_plan_check(&a, &x, e);
	if (rc) {
		err_wrap(e, rc, "%s", refstr);
		goto out;
	}
	if (!out) {
		char dir[4096];
		rc = cache_dir_private(dir, sizeof(dir), "pulled", e);
		if (rc)
			goto out;
		snprintf(target, sizeof(target), "%s/%s.smolmachine", dir, mdigest + 7);
		snprintf(cached_path, cplen, "%s", target);
		/* there already, whole, and the bundle the registry names */
		if (!bundle_open(&b, target, NULL)) {
			int same = b.size == x.size && !memcmp(b.id, x.id, sizeof(x.id));
			bundle_close(&b);
			if (same) {
				cache_touch_path(target);
				if (st) {
					memset(st, 0, sizeof(*st));
					strcpy(st->digest, mdigest);
					memcpy(st->id, x.id, sizeof(x.id));
				}
				goto out;
			}
		}
		out = target;
	}
	/* the blobs the store lacks */
	rc = cache_dir_private(p.store, sizeof(p.store), "blobs", e);
	if (rc)
		goto out;
	strncat(p.store, "/sha256", sizeof(p.store) - strlen(p.store) - 1);
	if ((rc = mkdirs(p.store, 0700))) {
		err_set(e, rc, "%s: %s", p.store, strerror(-rc));
		goto out;
	}
	sweep(p.store);
	p.want = calloc(a.nlayers, sizeof(*p.want));
	if (!p.want) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < a.nlayers; i++)
		p.want[i] = &a.layers[i];
	qsort(p.want, a.nlayers, sizeof(*p.want), desc_cmp);
	for (size_t i = 0; i < a.nlayers; i++)
		if (!p.n || strcmp(p.want[p.n - 1]->digest, p.want[i]->digest))
			p.want[p.n++] = p.want[i];
	pthread_mutex_init(&p.lock, NULL);
	struct pool pl = { "pulling", o->jobs, !o->quiet && isatty(1), fetch, &p };
	rc = pool_run(&pl, p.n, e);
	pthread_mutex_destroy(&p.lock);
	if (rc) {
		err_wrap(e, rc, "%s", refstr);
		goto out;
	}
	/* the file, whole and verified, then in place */
	fd = tmp_beside(out, &tmp);
	if (fd < 0) {
		rc = err_set(e, fd, "%s: %s", out, strerror(-fd));
		fd = -1;
		goto out;
	}
	rc = assemble(&p, &a, &x, fd, e);
	if (!rc && !(rc = bundle_open(&b, tmp, e))) {
		rc = snapshot_verify(&b, e);
		if (!rc && memcmp(b.id, x.id, sizeof(x.id)))
			rc = err_set(e, -EBADMSG, "not the bundle its config names");
		if (!rc && b.nsigs != x.nsigs)
			rc = err_set(e, -EBADMSG, "%zu signatures, its config says %llu", b.nsigs,
				     (unsigned long long)x.nsigs);
		for (size_t i = 0; !rc && i < b.nsigs; i++)
			if (!bundle_signature_valid(&b, i))
				rc = err_set(e, -EBADMSG, "signature %zu does not match the bundle "
					     "(it was changed after it was signed)", i + 1);
		bundle_close(&b);
		if (rc)
			err_wrap(e, rc, "%s: the bundle rebuilt is refused", refstr);
	}
	rc = tmp_finish(fd, tmp, out, rc, 1);
	fd = -1;
	if (!rc) /* what this pull added, within the quota */
		cache_added(out);
	if (rc && !e->msg[0])
		err_set(e, rc, "%s: %s", out, strerror(-rc));
	if (!rc && st) {
		st->blobs = p.got;
		st->bytes = p.got_bytes;
		st->had = p.had;
		st->had_bytes = p.had_bytes;
		strcpy(st->digest, mdigest);
		memcpy(st->id, x.id, sizeof(x.id));
	}
out:
	reg_resp_free(&r);
	free(p.want);
	oci_artifact_free(&a);
	oci_index_free(&x);
	reg_client_fini(&c);
	return rc;
}

int registry_pull(const char *ref, const char *out, const struct registry_opts *o,
		  struct registry_stats *st, struct err *e)
{
	return pull(ref, out, o, st, NULL, 0, e);
}

int registry_pull_cached(const char *ref, const struct registry_opts *o, char *path,
			 size_t len, struct err *e)
{
	struct registry_stats st = { 0 };
	int rc = pull(ref, NULL, o, &st, path, len, e);

	if (!rc && st.blobs && !o->quiet)
		fprintf(stderr, "smolvm: pulled %s: fetched %llu blobs, %llu bytes; %llu in the "
			"cache\n", ref, (unsigned long long)st.blobs, (unsigned long long)st.bytes,
			(unsigned long long)st.had);
	return rc;
}

int registry_is_ref(const char *arg)
{
	const char *slash = strchr(arg, '/');
	size_t n = slash ? (size_t)(slash - arg) : 0;

	if (!n || arg[0] == '.' || arg[0] == '/')
		return 0;
	if (memchr(arg, '.', n) || memchr(arg, ':', n) || (n == 9 && !strncmp(arg, "localhost", 9)))
		return 1;
	return 0;
}
