/* HTTP to a registry (http.h). */
#include "registry/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "registry/auth.h"

#define ERR_BODY_MAX (64u << 10)
#define TOKEN_MAX (16u << 10)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int reg_client_init(struct reg_client *c, const struct oci_ref *r, int push, int insecure,
		    struct err *e)
{
	int rc;

	pthread_once(&curl_once, curl_init_once);
	memset(c, 0, sizeof(*c));
	c->ref = *r;
	c->push = push;
	c->insecure = insecure;
	snprintf(c->base, sizeof(c->base), "%s://%s", insecure ? "http" : "https", r->host);
	rc = auth_lookup(r->host, c->creds, sizeof(c->creds), c->creds_src, sizeof(c->creds_src), e);
	if (rc < 0)
		return rc;
	c->have_creds = rc;
	const char *rate = getenv("SMOLVM_REGISTRY_LIMIT_RATE");
	if (rate && *rate) {
		char *end;
		c->rate = strtoll(rate, &end, 10);
		if (*end || c->rate < 1024)
			return err_set(e, -EINVAL, "SMOLVM_REGISTRY_LIMIT_RATE=%s: not a number of "
				       "bytes per second (1024 or more)", rate);
	}
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

void reg_client_fini(struct reg_client *c)
{
	sodium_memzero(c->creds, sizeof(c->creds));
	sodium_memzero(c->authz, sizeof(c->authz));
	pthread_mutex_destroy(&c->lock);
}

void reg_resp_free(struct reg_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

struct sink {
	CURL *h;
	struct reg_resp *r;
	int fd;
	crypto_hash_sha256_state *sha;
	uint64_t limit;
	size_t cap;
	int over, werr;
	int err_cut; /* an error body cut at ERR_BODY_MAX: the transfer ends */
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = sz * n;
	long status = 0;

	curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
	int ok = status >= 200 && status < 300;
	if (ok && s->fd >= 0) {
		if (len > s->limit - s->r->got) {
			s->over = 1;
			return 0;
		}
		if (s->sha)
			crypto_hash_sha256_update(s->sha, (const unsigned char *)p, len);
		for (size_t done = 0; done < len;) {
			ssize_t w = write(s->fd, p + done, len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				s->werr = errno ? errno : EIO;
				return 0;
			}
			done += (size_t)w;
		}
		s->r->got += len;
		return len;
	}
	uint64_t limit = ok ? s->limit : ERR_BODY_MAX;
	if (len > limit - s->r->len) {
		if (!ok)
			s->err_cut = 1; /* an error body: its head is enough */
		else
			s->over = 1;
		return 0;
	}
	if (s->r->len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->r->len + len + 1)
			cap *= 2;
		uint8_t *nb = realloc(s->r->body, cap);
		if (!nb) {
			s->werr = ENOMEM;
			return 0;
		}
		s->r->body = nb;
		s->cap = cap;
	}
	memcpy(s->r->body + s->r->len, p, len);
	s->r->len += len;
	s->r->body[s->r->len] = 0;
	if (ok)
		s->r->got += len;
	return len;
}

struct hdrs {
	char www[1024];
	struct reg_resp *r;
};

static void header_value(const char *p, size_t n, const char *name, char *out, size_t len)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(p, name, k))
		return;
	p += k;
	n -= k;
	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
		n--;
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct hdrs *h = arg;
	size_t len = sz * n;

	if (len > 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (a redirect) */
		h->www[0] = 0;
		h->r->location[0] = 0;
	}
	header_value(p, len, "www-authenticate:", h->www, sizeof(h->www));
	header_value(p, len, "location:", h->r->location, sizeof(h->r->location));
	header_value(p, len, "content-type:", h->r->ctype, sizeof(h->r->ctype));
	return len;
}

static void common_opts(CURL *h, char *errbuf)
{
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a registry that trickles (under 512 bytes/s for a minute) is given up */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 512L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "smolvm");
}

static int curl_fail(struct reg_client *c, CURLcode cc, const char *errbuf, struct err *e)
{
	const char *hint = "";

	if (!c->insecure && (cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_PEER_FAILED_VERIFICATION))
		hint = " (a registry without TLS, on localhost: --insecure)";
	return err_set(e, cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO, "%s: %s%s",
		       c->ref.host, errbuf[0] ? errbuf : curl_easy_strerror(cc), hint);
}

/* localhost or a loopback address: where plain HTTP may carry a password */
static int loopback(const char *host)
{
	return !strncmp(host, "localhost", 9) || !strncmp(host, "127.", 4) ||
	       !strncmp(host, "[::1]", 5);
}

/* A token for the Bearer challenge ch, into c->authz. */
static int fetch_token(struct reg_client *c, const struct auth_challenge *ch, struct err *e)
{
	char errbuf[CURL_ERROR_SIZE] = "", scope[700], *url;
	struct reg_resp r = { 0 };
	struct sink s = { 0 };
	struct hdrs hd = { .r = &r };
	CURL *h = curl_easy_init();
	CURLcode cc;
	int rc = 0;

	if (!h)
		return err_set(e, -ENOMEM, "out of memory");
	if (!strncmp(ch->realm, "http://", 7) && !c->insecure) {
		curl_easy_cleanup(h);
		return err_set(e, -EACCES, "%s: its token service %s is not HTTPS: refused "
			       "(--insecure allows it)", c->ref.host, ch->realm);
	}
	if (!strncmp(ch->realm, "http://", 7) && c->have_creds && !loopback(ch->realm + 7)) {
		curl_easy_cleanup(h);
		return err_set(e, -EACCES, "%s: its token service %s would get your password over "
			       "plain HTTP: refused", c->ref.host, ch->realm);
	}
	snprintf(scope, sizeof(scope), "repository:%s:%s", c->ref.repo, c->push ? "pull,push" : "pull");
	char *sv = curl_easy_escape(h, ch->service, 0), *sc = curl_easy_escape(h, scope, 0);
	url = malloc(strlen(ch->realm) + (sv ? strlen(sv) : 0) + (sc ? strlen(sc) : 0) + 32);
	if (!sv || !sc || !url) {
		rc = err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	sprintf(url, "%s%cservice=%s&scope=%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?', sv, sc);
	common_opts(h, errbuf);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (c->have_creds) {
		curl_easy_setopt(h, CURLOPT_USERPWD, c->creds);
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	}
	s.h = h;
	s.r = &r;
	s.fd = -1;
	s.limit = TOKEN_MAX;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
	if (cc == CURLE_WRITE_ERROR && s.err_cut)
		cc = CURLE_OK;
	if (cc != CURLE_OK) {
		rc = s.over ? err_set(e, -EFBIG, "%s: a token larger than %u bytes", ch->realm, TOKEN_MAX)
			    : curl_fail(c, cc, errbuf, e);
		goto out;
	}
	if (r.status == 401 || r.status == 403) {
		rc = c->have_creds
			     ? err_set(e, -EACCES, "%s refused the credentials from %s for %s",
				       c->ref.host, c->creds_src, scope)
			     : err_set(e, -EACCES, "%s requires credentials for %s and none were "
				       "found: set SMOLVM_REGISTRY_AUTH=USER:PASSWORD, or log in "
				       "(docker login %s writes ~/.docker/config.json)",
				       c->ref.host, scope, c->ref.host);
		goto out;
	}
	if (r.status != 200) {
		rc = err_set(e, -EIO, "%s: its token service answered %ld", c->ref.host, r.status);
		goto out;
	}
	json_error_t je;
	json_t *j = json_loadb((const char *)r.body, r.len, 0, &je), *t;
	t = json_object_get(j, "token");
	if (!json_is_string(t))
		t = json_object_get(j, "access_token");
	if (!json_is_string(t) || !json_string_length(t) ||
	    strcspn(json_string_value(t), "\r\n") != json_string_length(t))
		rc = err_set(e, -EBADMSG, "%s: its token service sent no token", c->ref.host);
	else if (snprintf(c->authz, sizeof(c->authz), "Authorization: Bearer %s",
			  json_string_value(t)) >= (int)sizeof(c->authz))
		rc = err_set(e, -EFBIG, "%s: a token too long", c->ref.host);
	json_decref(j);
out:
	curl_free(sv);
	curl_free(sc);
	free(url);
	reg_resp_free(&r);
	curl_easy_cleanup(h);
	return rc;
}

/* After a 401 to a request sent with authz generation `gen`. */
static int answer_challenge(struct reg_client *c, const char *www, unsigned gen, struct err *e)
{
	struct auth_challenge ch;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (c->gen != gen) /* another thread answered it meanwhile */
		goto out;
	if (!www[0] || auth_parse_challenge(www, &ch)) {
		rc = err_set(e, -EACCES, "%s answered 401 with no challenge it can be given",
			     c->ref.host);
		goto out;
	}
	if (!strcasecmp(ch.scheme, "Basic")) {
		char b64[sizeof(c->creds) * 4 / 3 + 8];
		if (!c->have_creds) {
			rc = err_set(e, -EACCES, "%s requires credentials and none were found: set "
				     "SMOLVM_REGISTRY_AUTH=USER:PASSWORD, or log in (docker login "
				     "%s writes ~/.docker/config.json)", c->ref.host, c->ref.host);
			goto out;
		}
		if (!strncmp(c->authz, "Authorization: Basic ", 21)) {
			rc = err_set(e, -EACCES, "%s refused the credentials from %s", c->ref.host,
				     c->creds_src);
			goto out;
		}
		if (!c->insecure || loopback(c->ref.host)) {
			sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)c->creds,
					  strlen(c->creds), sodium_base64_VARIANT_ORIGINAL);
			snprintf(c->authz, sizeof(c->authz), "Authorization: Basic %s", b64);
		} else {
			rc = err_set(e, -EACCES, "%s asks for a password over plain HTTP: refused",
				     c->ref.host);
			goto out;
		}
	} else if (!strcasecmp(ch.scheme, "Bearer")) {
		if (!ch.realm[0]) {
			rc = err_set(e, -EACCES, "%s: a Bearer challenge without a realm", c->ref.host);
			goto out;
		}
		rc = fetch_token(c, &ch, e);
	} else {
		rc = err_set(e, -EACCES, "%s asks for %s authentication, which smolvm does not speak",
			     c->ref.host, ch.scheme);
	}
	if (!rc)
		c->gen++;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int reg_do_h(struct reg_client *c, CURL *h, const char *method, const char *path,
		    const char *accept, const struct reg_body *body, int fd,
		    crypto_hash_sha256_state *sha, uint64_t limit, struct reg_resp *r,
		    struct err *e)
{
	char url[4600], errbuf[CURL_ERROR_SIZE], ctype[300], acc[300];
	int rc = 0;

	if (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8)) {
		/* a Location: only on the same registry */
		size_t bl = strlen(c->base);
		if (strncmp(path, c->base, bl) || (path[bl] && path[bl] != '/'))
			return err_set(e, -EPROTO, "%s sent a location on another host: %.200s",
				       c->ref.host, path);
		snprintf(url, sizeof(url), "%s", path);
	} else if ((size_t)snprintf(url, sizeof(url), "%s%s", c->base, path) >= sizeof(url)) {
		return err_set(e, -ENAMETOOLONG, "a URL too long");
	}
	for (int attempt = 0;; attempt++) {
		struct curl_slist *hl = NULL;
		struct sink s = { .h = h, .r = r, .fd = fd, .sha = sha, .limit = limit };
		struct hdrs hd = { .r = r };
		unsigned gen;
		CURLcode cc;

		reg_resp_free(r);
		memset(r, 0, sizeof(*r));
		errbuf[0] = 0;
		if (fd >= 0 && (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET)))
			return err_set(e, -errno, "a temporary file: %s", strerror(errno));
		if (sha)
			crypto_hash_sha256_init(sha);
		pthread_mutex_lock(&c->lock);
		gen = c->gen;
		if (c->authz[0])
			hl = curl_slist_append(hl, c->authz);
		pthread_mutex_unlock(&c->lock);
		if (accept) {
			snprintf(acc, sizeof(acc), "Accept: %s", accept);
			hl = curl_slist_append(hl, acc);
		}
		if (body && body->ctype) {
			snprintf(ctype, sizeof(ctype), "Content-Type: %s", body->ctype);
			hl = curl_slist_append(hl, ctype);
		}
		hl = curl_slist_append(hl, "Expect:");
		curl_easy_reset(h);
		common_opts(h, errbuf);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
		if (c->rate) {
			curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)c->rate);
			curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)c->rate);
		}
		if (!strcmp(method, "HEAD")) {
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		} else if (!strcmp(method, "GET")) {
			curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
			curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
		} else {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body->p : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)(body ? body->len : 0));
		}
		cc = curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		curl_slist_free_all(hl);
		if (cc == CURLE_WRITE_ERROR && s.err_cut)
			cc = CURLE_OK;
		if (cc != CURLE_OK) {
			if (s.over)
				return err_set(e, -EFBIG, "%s: %s: more than the %llu bytes expected",
					       c->ref.host, path, (unsigned long long)limit);
			if (s.werr)
				return err_set(e, -s.werr, "writing what %s sent: %s", c->ref.host,
					       strerror(s.werr));
			return curl_fail(c, cc, errbuf, e);
		}
		if (r->status != 401 || attempt >= 2)
			break;
		rc = answer_challenge(c, hd.www, gen, e);
		if (rc)
			return rc;
	}
	return 0;
}

int reg_status_err(const struct reg_resp *r, const char *what, struct err *e)
{
	char msg[300] = "";

	if (r->body && r->len) {
		json_t *j = json_loadb((const char *)r->body, r->len, 0, NULL);
		json_t *m = json_object_get(json_array_get(json_object_get(j, "errors"), 0),
					    "message");
		if (json_is_string(m))
			snprintf(msg, sizeof(msg), ": %s", json_string_value(m));
		json_decref(j);
	}
	return err_set(e, r->status == 404 ? -ENOENT : (r->status == 401 || r->status == 403) ?
		       -EACCES : -EIO, "%s: the registry answered %ld%s", what, r->status, msg);
}

int reg_do(struct reg_client *c, void *curl, const char *method, const char *path,
	   const char *accept, const struct reg_body *body, int fd,
	   crypto_hash_sha256_state *sha, uint64_t limit, struct reg_resp *r, struct err *e)
{
	CURL *h = curl ? curl : curl_easy_init();
	int rc;

	if (!h)
		return err_set(e, -ENOMEM, "out of memory (curl)");
	rc = reg_do_h(c, h, method, path, accept, body, fd, sha, limit, r, e);
	if (!curl)
		curl_easy_cleanup(h);
	return rc;
}
