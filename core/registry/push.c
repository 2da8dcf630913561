/* smolvm push: a bundle into a registry as blobs (registry.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/dirs.h"
#include "registry/http.h"
#include "registry/oci.h"
#include "registry/pool.h"
#include "registry/registry.h"
#include "snapshot/bundle.h"
#include "snapshot/lineage.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"

struct blob {
	char digest[OCI_DIGEST_LEN + 1];
	const uint8_t *p;
	size_t len;
};

struct push {
	struct reg_client *c;
	struct blob *blobs; /* unique */
	size_t n;
	uint64_t had, had_bytes, sent, sent_bytes;
	pthread_mutex_t lock;
};

static int upload(void *ctx, void *curl, size_t i, uint64_t *bytes, struct err *e)
{
	struct push *ps = ctx;
	struct blob *b = &ps->blobs[i];
	struct reg_resp r = { 0 };
	struct reg_body body = { b->p, b->len, "application/octet-stream" };
	char path[700], put[4200];
	int rc;

	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ps->c->ref.repo, b->digest);
	rc = reg_do(ps->c, curl, "HEAD", path, NULL, NULL, -1, NULL, 0, &r, e);
	if (!rc && r.status == 200) {
		pthread_mutex_lock(&ps->lock);
		ps->had++;
		ps->had_bytes += b->len;
		pthread_mutex_unlock(&ps->lock);
		goto out;
	}
	if (!rc && r.status != 404) {
		rc = reg_status_err(&r, b->digest, e);
		goto out;
	}
	snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", ps->c->ref.repo);
	if (!rc)
		rc = reg_do(ps->c, curl, "POST", path, NULL, &(struct reg_body){ "", 0, NULL }, -1,
			    NULL, 0, &r, e);
	if (!rc && (r.status != 202 || !r.location[0]))
		rc = reg_status_err(&r, "starting an upload", e);
	if (rc)
		goto out;
	if ((size_t)snprintf(put, sizeof(put), "%s%cdigest=%s", r.location,
			     strchr(r.location, '?') ? '&' : '?', b->digest) >= sizeof(put)) {
		rc = err_set(e, -ENAMETOOLONG, "%s: an upload location too long", ps->c->ref.host);
		goto out;
	}
	rc = reg_do(ps->c, curl, "PUT", put, NULL, &body, -1, NULL, 0, &r, e);
	if (!rc && r.status != 201)
		rc = reg_status_err(&r, b->digest, e);
	if (!rc) {
		*bytes = b->len;
		pthread_mutex_lock(&ps->lock);
		ps->sent++;
		ps->sent_bytes += b->len;
		pthread_mutex_unlock(&ps->lock);
	}
out:
	reg_resp_free(&r);
	return rc;
}

struct cut {
	uint64_t off;
	uint32_t len;
};

static int cut_cmp(const void *a, const void *b)
{
	const struct cut *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int blob_cmp(const void *a, const void *b)
{
	return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

/* Every stored frame of b's chunked sections, in file order. */
static int find_cuts(const struct bundle *b, struct cut **out, size_t *n, struct err *e)
{
	struct cut *v = NULL;
	size_t k = 0, cap = 0;

	for (size_t s = 0; s < b->n; s++) {
		const struct bundle_section *sec = &b->secs[s];
		struct snapmem_view view;
		const uint8_t *data;
		int rc;

		if (sec->type != SEC_MEMORY && sec->type != SEC_DISK)
			continue;
		rc = bundle_section_data(b, sec, &data, e);
		if (!rc)
			rc = snapmem_open(data, sec->size, sec->covered, &view, e);
		if (rc) {
			free(v);
			return err_wrap(e, rc, "section %s", sec->name);
		}
		for (uint32_t i = 0; i < view.nchunks; i++) {
			const uint8_t *p;
			uint32_t len;
			snapmem_chunk_frame(&view, i, &p, &len);
			if (!p || !len)
				continue;
			if (k == cap) {
				cap = cap ? cap * 2 : 256;
				struct cut *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					free(v);
					return err_set(e, -ENOMEM, "out of memory");
				}
				v = nv;
			}
			v[k].off = (uint64_t)(p - b->map);
			v[k++].len = len;
		}
	}
	if (k)
		qsort(v, k, sizeof(*v), cut_cmp);
	for (size_t i = 1; i < k; i++)
		if (v[i].off < v[i - 1].off + v[i - 1].len) {
			unsigned long long at = v[i].off;
			free(v);
			return err_set(e, -EBADMSG, "two chunks share bytes at %llu", at);
		}
	*out = v;
	*n = k;
	return 0;
}

static int push_file(const char *path, const char *title, const struct oci_ref *refp,
		     const struct registry_opts *o, struct registry_stats *st, struct err *e)
{
	struct oci_ref ref;
	struct bundle b;
	struct parent_ref pr;
	struct cut *cuts = NULL;
	struct blob *blobs = NULL;
	struct oci_artifact a = { 0 };
	struct oci_index x = { 0 };
	struct reg_client c;
	struct push ps = { 0 };
	uint8_t *skel = NULL;
	char *mtext = NULL, *config = NULL, *manifest = NULL;
	size_t n = 0, nb = 0;
	int rc, client = 0;

	ref = *refp;
	rc = bundle_open(&b, path, e);
	if (rc)
		return err_wrap(e, rc, "%s", path);
	if (b.version < 2) {
		rc = err_set(e, -ENOTSUP, "%s: a format 1 bundle has no chunk hashes to push "
			     "(save it again with this smolvm)", path);
		goto out;
	}
	rc = lineage_parent(&b, &pr, e);
	if (rc == 1)
		rc = err_set(e, -ENOTSUP, "%s is a child bundle (its parent: %s)", path, pr.name);
	if (!rc)
		rc = snapshot_verify(&b, e);
	for (size_t i = 0; !rc && i < b.nsigs; i++)
		if (!bundle_signature_valid(&b, i))
			rc = err_set(e, -EBADMSG, "signature %zu does not match the bundle (it was "
				     "changed after it was signed)", i + 1);
	if (!rc)
		rc = find_cuts(&b, &cuts, &n, e);
	if (rc) {
		err_wrap(e, rc, "%s", path);
		goto out;
	}
	/* the skeleton: the file without its frames */
	uint64_t frames = 0;
	for (size_t i = 0; i < n; i++)
		frames += cuts[i].len;
	size_t slen = (size_t)(b.size - frames), sp = 0;
	uint64_t pos = 0;
	if (slen > OCI_SKELETON_MAX) {
		rc = err_set(e, -EFBIG, "%s: %zu bytes besides its chunks: more than a pull takes",
			     path, slen);
		goto out;
	}
	skel = malloc(slen ? slen : 1);
	blobs = calloc(n + 2, sizeof(*blobs));
	a.nlayers = n + 1;
	a.layers = calloc(n + 1, sizeof(*a.layers));
	x.frames = calloc(n ? n : 1, sizeof(*x.frames));
	if (!skel || !blobs || !a.layers || !x.frames) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i <= n; i++) {
		uint64_t end = i < n ? cuts[i].off : b.size;
		memcpy(skel + sp, b.map + pos, end - pos);
		sp += end - pos;
		if (i < n) {
			blobs[i].p = b.map + cuts[i].off;
			blobs[i].len = cuts[i].len;
			oci_digest_of(blobs[i].p, blobs[i].len, blobs[i].digest);
			strcpy(a.layers[i + 1].digest, blobs[i].digest);
			a.layers[i + 1].size = cuts[i].len;
			x.frames[i] = cuts[i].off;
			pos = cuts[i].off + cuts[i].len;
		}
	}
	blobs[n].p = skel;
	blobs[n].len = slen;
	oci_digest_of(skel, slen, blobs[n].digest);
	strcpy(a.layers[0].digest, blobs[n].digest);
	a.layers[0].size = slen;
	/* the config: the index of the frames, and the bundle's manifest */
	const struct bundle_section *ms = bundle_find(&b, "manifest");
	const uint8_t *md;
	if (ms && !bundle_section_data(&b, ms, &md, e) && ms->size < (1u << 20) &&
	    (mtext = malloc(ms->size + 1))) {
		memcpy(mtext, md, ms->size);
		mtext[ms->size] = 0;
	}
	x.size = b.size;
	memcpy(x.id, b.id, sizeof(x.id));
	x.nsigs = b.nsigs;
	x.n = n;
	config = oci_index_build(&x, mtext);
	if (!config) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	blobs[n + 1].p = (const uint8_t *)config;
	blobs[n + 1].len = strlen(config);
	oci_digest_of(config, blobs[n + 1].len, blobs[n + 1].digest);
	strcpy(a.config.digest, blobs[n + 1].digest);
	a.config.size = blobs[n + 1].len;
	/* each blob once */
	qsort(blobs, n + 2, sizeof(*blobs), blob_cmp);
	for (size_t i = 0; i < n + 2; i++)
		if (!nb || strcmp(blobs[nb - 1].digest, blobs[i].digest))
			blobs[nb++] = blobs[i];
	rc = reg_client_init(&c, &ref, 1, o->insecure, e);
	if (rc)
		goto out;
	client = 1;
	ps.c = &c;
	ps.blobs = blobs;
	ps.n = nb;
	pthread_mutex_init(&ps.lock, NULL);
	struct pool pl = { "pushing", o->jobs, !o->quiet && isatty(1), upload, &ps };
	rc = pool_run(&pl, nb, e);
	pthread_mutex_destroy(&ps.lock);
	if (rc)
		goto out;
	manifest = oci_manifest_build(&a, title);
	if (!manifest) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	char mpath[600];
	struct reg_resp r = { 0 };
	snprintf(mpath, sizeof(mpath), "/v2/%s/manifests/%s", ref.repo, ref.tag);
	rc = reg_do(&c, NULL, "PUT", mpath, NULL,
		    &(struct reg_body){ manifest, strlen(manifest), OCI_MANIFEST_TYPE }, -1, NULL, 0,
		    &r, e);
	if (!rc && r.status != 201)
		rc = reg_status_err(&r, "the manifest", e);
	reg_resp_free(&r);
	if (!rc && st) {
		st->blobs = ps.sent;
		st->bytes = ps.sent_bytes + strlen(manifest);
		st->had = ps.had;
		st->had_bytes = ps.had_bytes;
		oci_digest_of(manifest, strlen(manifest), st->digest);
		memcpy(st->id, b.id, sizeof(st->id));
	}
out:
	if (client)
		reg_client_fini(&c);
	free(manifest);
	free(config);
	free(mtext);
	free(skel);
	free(blobs);
	free(cuts);
	oci_artifact_free(&a);
	oci_index_free(&x);
	bundle_close(&b);
	return rc;
}

int registry_push(const char *path, const char *refstr, const struct registry_opts *o,
		  struct registry_stats *st, struct err *e)
{
	const char *slash = strrchr(path, '/'), *title = slash ? slash + 1 : path;
	char dir[4096], flat[4300], id[65];
	struct parent_ref pr;
	struct snapmem_stats ms;
	struct oci_ref ref;
	struct bundle b;
	size_t gens;
	int rc, child;

	rc = oci_ref_parse(refstr, &ref, e);
	if (rc)
		return rc;
	if (!ref.tag[0])
		return err_set(e, -EINVAL, "%s: push to a tag (HOST/NAME:TAG), not a digest", refstr);
	rc = bundle_open(&b, path, e);
	if (rc)
		return err_wrap(e, rc, "%s", path);
	child = lineage_parent(&b, &pr, e);
	sodium_bin2hex(id, sizeof(id), b.id, sizeof(b.id));
	if (child == 1 && b.nsigs)
		child = err_set(e, -ENOTSUP, "%s is a signed child bundle: its signatures cannot "
				"travel with it flattened (another identity); smolvm flatten %s -o "
				"FLAT, sign FLAT and push that", path, path);
	bundle_close(&b);
	if (child < 0)
		return child;
	if (!child)
		return push_file(path, title, &ref, o, st, e);
	/* A child's chunks in its parents are not in its file: what goes is
	 * the one bundle smolvm flatten writes (frames as they are, so those
	 * of the parents the registry holds are not uploaded again). */
	rc = cache_dir_private(dir, sizeof(dir), "push", e);
	if (rc)
		return rc;
	snprintf(flat, sizeof(flat), "%s/%s.smolmachine", dir, id);
	rc = lineage_flatten(path, flat, &gens, &ms, e);
	if (rc)
		return err_wrap(e, rc, "%s: flattening the child bundle", path);
	if (!o->quiet)
		printf("%s is a child bundle (%zu generation%s): pushing it flattened, as smolvm "
		       "flatten writes it\n", path, gens, gens == 1 ? "" : "s");
	rc = push_file(flat, title, &ref, o, st, e);
	unlink(flat);
	return rc;
}
