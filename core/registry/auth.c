/* Registry credentials and challenges (auth.h). */
#include "registry/auth.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "https://host/v1/" -> "host" */
static void bare_host(const char *k, char *out, size_t len)
{
	const char *p = strstr(k, "://");
	size_t n;

	p = p ? p + 3 : k;
	n = strcspn(p, "/");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = 0;
}

int auth_lookup(const char *host, char *out, size_t len, char *src, size_t srclen,
		struct err *e)
{
	const char *env = getenv("SMOLVM_REGISTRY_AUTH"), *dir = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME"), *key;
	char path[4096];
	json_error_t je;
	json_t *j, *auths, *v;
	int rc = 0;

	if (env && *env) {
		if (!strchr(env, ':') || strlen(env) >= len)
			return err_set(e, -EINVAL, "SMOLVM_REGISTRY_AUTH is not USER:PASSWORD");
		snprintf(out, len, "%s", env);
		snprintf(src, srclen, "SMOLVM_REGISTRY_AUTH");
		return 1;
	}
	if (dir && *dir)
		snprintf(path, sizeof(path), "%s/config.json", dir);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.docker/config.json", home);
	else
		return 0;
	j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		FILE *f = fopen(path, "r");
		if (!f)
			return 0; /* no config: no credentials */
		fclose(f);
		return err_set(e, -EBADMSG, "%s: %s (line %d)", path, je.text, je.line);
	}
	auths = json_object_get(j, "auths");
	json_object_foreach(auths, key, v) {
		char h[256], dec[1024];
		size_t dlen;
		json_t *a = json_object_get(v, "auth"), *u = json_object_get(v, "username"),
		       *p = json_object_get(v, "password");
		bare_host(key, h, sizeof(h));
		if (strcmp(h, host))
			continue;
		if (json_is_string(a) && json_string_length(a)) {
			if (sodium_base642bin((unsigned char *)dec, sizeof(dec) - 1, json_string_value(a),
					      json_string_length(a), NULL, &dlen, NULL,
					      sodium_base64_VARIANT_ORIGINAL) ||
			    !memchr(dec, ':', dlen) || dlen >= len) {
				rc = err_set(e, -EBADMSG, "%s: auths.\"%s\".auth is not base64 of "
					     "USER:PASSWORD", path, key);
				break;
			}
			memcpy(out, dec, dlen);
			out[dlen] = 0;
			sodium_memzero(dec, sizeof(dec));
		} else if (json_is_string(u) && json_is_string(p)) {
			if ((size_t)snprintf(out, len, "%s:%s", json_string_value(u),
					     json_string_value(p)) >= len) {
				rc = err_set(e, -EINVAL, "%s: the credentials for %s are too long",
					     path, host);
				break;
			}
		} else {
			continue;
		}
		snprintf(src, srclen, "%s", path);
		rc = 1;
		break;
	}
	json_decref(j);
	return rc;
}

/* Copies the quoted or bare value at *p into out; advances *p. */
static void param_value(const char **p, char *out, size_t len)
{
	const char *s = *p;
	size_t n = 0;

	if (*s == '"') {
		s++;
		while (*s && *s != '"') {
			if (*s == '\\' && s[1])
				s++;
			if (n + 1 < len)
				out[n++] = *s;
			s++;
		}
		if (*s == '"')
			s++;
	} else {
		while (*s && *s != ',' && *s != ' ') {
			if (n + 1 < len)
				out[n++] = *s;
			s++;
		}
	}
	out[n] = 0;
	*p = s;
}

int auth_parse_challenge(const char *h, struct auth_challenge *c)
{
	const char *p = h;
	size_t n;

	memset(c, 0, sizeof(*c));
	while (*p == ' ')
		p++;
	n = strcspn(p, " ");
	if (!n || n >= sizeof(c->scheme))
		return -EBADMSG;
	memcpy(c->scheme, p, n);
	p += n;
	while (*p) {
		char name[32], value[1024];
		while (*p == ' ' || *p == ',')
			p++;
		n = strcspn(p, "=");
		if (!p[n])
			break;
		if (n >= sizeof(name))
			return -EBADMSG;
		memcpy(name, p, n);
		name[n] = 0;
		p += n + 1;
		param_value(&p, value, sizeof(value));
		if (!strcasecmp(name, "realm"))
			snprintf(c->realm, sizeof(c->realm), "%s", value);
		else if (!strcasecmp(name, "service"))
			snprintf(c->service, sizeof(c->service), "%s", value);
		else if (!strcasecmp(name, "scope"))
			snprintf(c->scope, sizeof(c->scope), "%s", value);
	}
	return 0;
}
