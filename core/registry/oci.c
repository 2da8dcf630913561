/* OCI references, manifests and the bundle index (oci.h). */
#include "registry/oci.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* path components [a-z0-9]+ joined by one of . _ __ - (any run of -) */
static int repo_valid(const char *s)
{
	const char *p = s;

	if (!*s)
		return 0;
	while (*p) {
		if (!lower_alnum(*p))
			return 0;
		while (lower_alnum(*p))
			p++;
		if (!*p)
			break;
		if (*p == '/') {
			p++;
			continue;
		}
		if (p[0] == '_' && p[1] == '_')
			p += 2;
		else if (*p == '.' || *p == '_')
			p++;
		else if (*p == '-')
			while (*p == '-')
				p++;
		else
			return 0;
	}
	return p[-1] != '/';
}

static int tag_valid(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			 c == '_' || (i && (c == '.' || c == '-'));
		if (!ok)
			return 0;
	}
	return 1;
}

static int host_valid(const char *s, size_t n)
{
	if (!n || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
			return 0;
	}
	return 1;
}

int oci_digest_valid(const char *d)
{
	if (strncmp(d, "sha256:", 7) || strlen(d) != OCI_DIGEST_LEN)
		return 0;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

void oci_digest_of(const void *p, size_t len, char out[OCI_DIGEST_LEN + 1])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, p, len);
	memcpy(out, "sha256:", 7);
	sodium_bin2hex(out + 7, 65, h, sizeof(h));
}

int oci_ref_parse(const char *s, struct oci_ref *r, struct err *e)
{
	const char *slash = strchr(s, '/'), *rest, *at, *colon;
	size_t hn;

	memset(r, 0, sizeof(*r));
	if (!slash)
		return err_set(e, -EINVAL, "\"%s\" is not a reference (HOST/NAME[:TAG])", s);
	hn = (size_t)(slash - s);
	if (!host_valid(s, hn))
		return err_set(e, -EINVAL, "\"%s\": \"%.*s\" is not a registry host", s, (int)hn, s);
	memcpy(r->host, s, hn);
	rest = slash + 1;
	at = strchr(rest, '@');
	if (at) {
		if (!oci_digest_valid(at + 1))
			return err_set(e, -EINVAL, "\"%s\": \"%s\" is not a sha256 digest", s, at + 1);
		strcpy(r->digest, at + 1);
	}
	size_t end = at ? (size_t)(at - rest) : strlen(rest);
	colon = memchr(rest, ':', end);
	if (colon) {
		size_t tn = end - (size_t)(colon - rest) - 1;
		if (tn > 128)
			return err_set(e, -EINVAL, "\"%s\": the tag is longer than 128 bytes", s);
		memcpy(r->tag, colon + 1, tn);
		end = (size_t)(colon - rest);
		if (!tag_valid(r->tag))
			return err_set(e, -EINVAL, "\"%s\": \"%s\" is not a tag", s, r->tag);
	} else if (!at) {
		strcpy(r->tag, "latest");
	}
	if (end >= sizeof(r->repo))
		return err_set(e, -EINVAL, "\"%s\": the name is longer than 255 bytes", s);
	memcpy(r->repo, rest, end);
	if (!repo_valid(r->repo))
		return err_set(e, -EINVAL, "\"%s\": \"%s\" is not a repository name (lower-case "
			       "letters and digits, separated by / . _ -)", s, r->repo);
	return 0;
}

static int desc_parse(json_t *j, const char *what, const char *want_type, struct oci_desc *d,
		      struct err *e)
{
	json_t *mt = json_object_get(j, "mediaType"), *dg = json_object_get(j, "digest"),
	       *sz = json_object_get(j, "size");

	if (!json_is_object(j) || !json_is_string(dg) || !json_is_integer(sz))
		return err_set(e, -EBADMSG, "%s: not a descriptor (digest, size)", what);
	if (want_type && (!json_is_string(mt) || strcmp(json_string_value(mt), want_type)))
		return err_set(e, -EBADMSG, "%s: media type %s, not %s", what,
			       json_is_string(mt) ? json_string_value(mt) : "missing", want_type);
	if (!oci_digest_valid(json_string_value(dg)))
		return err_set(e, -EBADMSG, "%s: the digest is not sha256:HEX", what);
	if (json_integer_value(sz) < 0)
		return err_set(e, -EBADMSG, "%s: a negative size", what);
	strcpy(d->digest, json_string_value(dg));
	d->size = (uint64_t)json_integer_value(sz);
	return 0;
}

static json_t *desc_json(const char *type, const struct oci_desc *d)
{
	return json_pack("{s:s, s:s, s:I}", "mediaType", type, "digest", d->digest, "size",
			 (json_int_t)d->size);
}

char *oci_manifest_build(const struct oci_artifact *a, const char *title)
{
	json_t *layers = json_array(), *m;
	char *out = NULL;

	if (!layers)
		return NULL;
	for (size_t i = 0; i < a->nlayers; i++)
		if (json_array_append_new(layers, desc_json(i ? OCI_FRAME_TYPE : OCI_SKELETON_TYPE,
							    &a->layers[i]))) {
			json_decref(layers);
			return NULL;
		}
	m = json_pack("{s:i, s:s, s:s, s:o, s:o, s:{s:s}}", "schemaVersion", 2, "mediaType",
		      OCI_MANIFEST_TYPE, "artifactType", OCI_ARTIFACT_TYPE, "config",
		      desc_json(OCI_CONFIG_TYPE, &a->config), "layers", layers, "annotations",
		      "org.opencontainers.image.title", title);
	if (m)
		out = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return out;
}

void oci_artifact_free(struct oci_artifact *a)
{
	free(a->layers);
	a->layers = NULL;
	a->nlayers = 0;
}

int oci_manifest_parse(const char *json, size_t len, struct oci_artifact *a, struct err *e)
{
	json_error_t je;
	json_t *m, *v, *layers;
	int rc = 0;

	memset(a, 0, sizeof(*a));
	if (len > OCI_MANIFEST_MAX)
		return err_set(e, -EFBIG, "the manifest is larger than %u bytes", OCI_MANIFEST_MAX);
	m = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!m)
		return err_set(e, -EBADMSG, "the manifest is not JSON: %s", je.text);
	v = json_object_get(m, "schemaVersion");
	if (!json_is_integer(v) || json_integer_value(v) != 2) {
		rc = err_set(e, -EBADMSG, "the manifest is not schema version 2");
		goto out;
	}
	v = json_object_get(m, "mediaType");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), OCI_MANIFEST_TYPE))) {
		rc = err_set(e, -EBADMSG, "the manifest is a %s, not an OCI image manifest",
			     json_is_string(v) ? json_string_value(v) : "(not a string)");
		goto out;
	}
	v = json_object_get(m, "artifactType");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), OCI_ARTIFACT_TYPE))) {
		rc = err_set(e, -EBADMSG, "an artifact of type %s, not a smolvm bundle (%s)",
			     json_is_string(v) ? json_string_value(v) : "(not a string)",
			     OCI_ARTIFACT_TYPE);
		goto out;
	}
	rc = desc_parse(json_object_get(m, "config"), "the manifest's config", OCI_CONFIG_TYPE,
			&a->config, e);
	if (rc) {
		if (!v)
			rc = err_set(e, -EBADMSG, "not a smolvm bundle (no artifactType %s; an "
				     "image?)", OCI_ARTIFACT_TYPE);
		goto out;
	}
	layers = json_object_get(m, "layers");
	if (!json_is_array(layers) || !json_array_size(layers) ||
	    json_array_size(layers) > OCI_LAYERS_MAX) {
		rc = err_set(e, -EBADMSG, "the manifest's layers: not 1 to %u of them", OCI_LAYERS_MAX);
		goto out;
	}
	a->nlayers = json_array_size(layers);
	a->layers = calloc(a->nlayers, sizeof(*a->layers));
	if (!a->layers) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; !rc && i < a->nlayers; i++) {
		char what[64];
		snprintf(what, sizeof(what), "layer %zu", i);
		rc = desc_parse(json_array_get(layers, i), what,
				i ? OCI_FRAME_TYPE : OCI_SKELETON_TYPE, &a->layers[i], e);
	}
out:
	if (rc)
		oci_artifact_free(a);
	json_decref(m);
	return rc;
}

char *oci_index_build(const struct oci_index *x, const char *manifest_text)
{
	json_t *fr = json_array(), *j;
	char id[65], *out = NULL;

	if (!fr)
		return NULL;
	for (size_t i = 0; i < x->n; i++)
		if (json_array_append_new(fr, json_integer((json_int_t)x->frames[i]))) {
			json_decref(fr);
			return NULL;
		}
	sodium_bin2hex(id, sizeof(id), x->id, sizeof(x->id));
	j = json_pack("{s:i, s:I, s:s, s:I, s:s, s:o}", "format", 1, "size", (json_int_t)x->size,
		      "identity", id, "signatures", (json_int_t)x->nsigs, "manifest",
		      manifest_text ? manifest_text : "", "frames", fr);
	if (j)
		out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return out;
}

void oci_index_free(struct oci_index *x)
{
	free(x->frames);
	x->frames = NULL;
	x->n = 0;
}

int oci_index_parse(const char *json, size_t len, struct oci_index *x, struct err *e)
{
	json_error_t je;
	json_t *j, *v, *fr;
	const char *id;
	size_t idlen;
	int rc = 0;

	memset(x, 0, sizeof(*x));
	if (len > OCI_CONFIG_MAX)
		return err_set(e, -EFBIG, "the config is larger than %u bytes", OCI_CONFIG_MAX);
	j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return err_set(e, -EBADMSG, "the config is not JSON: %s", je.text);
	v = json_object_get(j, "format");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		rc = err_set(e, -EBADMSG, "the config is not format 1 (a newer smolvm pushed it?)");
		goto out;
	}
	v = json_object_get(j, "size");
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    (uint64_t)json_integer_value(v) > OCI_BUNDLE_MAX) {
		rc = err_set(e, -EBADMSG, "the config: no size, or a size beyond %llu bytes",
			     (unsigned long long)OCI_BUNDLE_MAX);
		goto out;
	}
	x->size = (uint64_t)json_integer_value(v);
	v = json_object_get(j, "signatures");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 16) {
		rc = err_set(e, -EBADMSG, "the config: no count of signatures (0 to 16)");
		goto out;
	}
	x->nsigs = (uint64_t)json_integer_value(v);
	v = json_object_get(j, "identity");
	if (!json_is_string(v) || json_string_length(v) != 64 ||
	    sodium_hex2bin(x->id, sizeof(x->id), json_string_value(v), 64, NULL, &idlen, &id) ||
	    idlen != 32) {
		rc = err_set(e, -EBADMSG, "the config: the identity is not 64 hex digits");
		goto out;
	}
	fr = json_object_get(j, "frames");
	if (!json_is_array(fr) || json_array_size(fr) >= OCI_LAYERS_MAX) {
		rc = err_set(e, -EBADMSG, "the config: the frames are not a list of offsets");
		goto out;
	}
	x->n = json_array_size(fr);
	x->frames = calloc(x->n ? x->n : 1, sizeof(*x->frames));
	if (!x->frames) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->n; i++) {
		v = json_array_get(fr, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			rc = err_set(e, -EBADMSG, "the config: frame %zu has no offset", i);
			goto out;
		}
		x->frames[i] = (uint64_t)json_integer_value(v);
	}
out:
	if (rc)
		oci_index_free(x);
	json_decref(j);
	return rc;
}

int oci_plan_check(const struct oci_artifact *a, const struct oci_index *x, struct err *e)
{
	uint64_t pos = 0, frames = 0;

	if (a->nlayers != x->n + 1)
		return err_set(e, -EBADMSG, "the manifest has %zu frames, its config %zu",
			       a->nlayers - 1, x->n);
	if (a->layers[0].size > OCI_SKELETON_MAX || a->layers[0].size > x->size)
		return err_set(e, -EBADMSG, "the skeleton's size (%llu bytes) is out of bounds",
			       (unsigned long long)a->layers[0].size);
	for (size_t i = 0; i < x->n; i++) {
		uint64_t len = a->layers[i + 1].size;
		if (!len || len > OCI_FRAME_MAX)
			return err_set(e, -EBADMSG, "frame %zu: %llu bytes (1 to %u)", i,
				       (unsigned long long)len, OCI_FRAME_MAX);
		if (x->frames[i] < pos || x->frames[i] < 64 || x->frames[i] > x->size ||
		    len > x->size - x->frames[i])
			return err_set(e, -EBADMSG, "frame %zu: at %llu, out of order or outside "
				       "the bundle", i, (unsigned long long)x->frames[i]);
		pos = x->frames[i] + len;
		frames += len;
	}
	if (frames > x->size || x->size - frames != a->layers[0].size)
		return err_set(e, -EBADMSG, "the skeleton (%llu bytes) and the frames (%llu bytes) "
			       "do not make the bundle's %llu bytes",
			       (unsigned long long)a->layers[0].size, (unsigned long long)frames,
			       (unsigned long long)x->size);
	return 0;
}
