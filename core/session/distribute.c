/* push, pull, and references to run (distribute.h). A pulled bundle is
 * never recorded as this user's (session/trust.h): a restore trusts it
 * only when a key the user trusts signed it. */
#include "session/distribute.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "registry/registry.h"
#include "session/signing.h"
#include "snapshot/bundle.h"

static void summary(const char *verb, const char *ref, const struct registry_stats *st)
{
	char id[65];

	sodium_bin2hex(id, sizeof(id), st->id, sizeof(st->id));
	printf("%s %s (%s)\n", verb, ref, st->digest);
	if (!strcmp(verb, "pushed"))
		printf("uploaded %llu blobs, %llu bytes; %llu already there (%llu bytes)\n",
		       (unsigned long long)st->blobs, (unsigned long long)st->bytes,
		       (unsigned long long)st->had, (unsigned long long)st->had_bytes);
	else
		printf("fetched %llu blobs, %llu bytes; %llu from the cache (%llu bytes); "
		       "identity %s\n", (unsigned long long)st->blobs, (unsigned long long)st->bytes,
		       (unsigned long long)st->had, (unsigned long long)st->had_bytes, id);
}

int session_push(const char *bundle, const char *ref, int insecure, unsigned jobs)
{
	struct registry_opts o = { .insecure = insecure, .jobs = jobs };
	struct registry_stats st = { 0 };
	struct err e = { "" };

	if (registry_push(bundle, ref, &o, &st, &e)) {
		fprintf(stderr, "smolvm push: %s\n", e.msg);
		return 1;
	}
	summary("pushed", ref, &st);
	return 0;
}

int session_pull(const char *ref, const char *out, int insecure, unsigned jobs)
{
	struct registry_opts o = { .insecure = insecure, .jobs = jobs };
	struct registry_stats st = { 0 };
	struct err e = { "" };

	if (registry_pull(ref, out, &o, &st, &e)) {
		fprintf(stderr, "smolvm pull: %s\n", e.msg);
		return 1;
	}
	summary("pulled", ref, &st);
	/* who signed it: what a restore will make of it */
	struct sig_verdict v;
	struct bundle b;
	if (bundle_open(&b, out, &e) || signatures_judge(&b, &v, 0, &e)) {
		fprintf(stderr, "smolvm pull: %s: %s\n", out, e.msg);
		return 1;
	}
	if (v.trusted)
		printf("signed by %s, a key you trust\n", v.who);
	else
		printf("%s: untrusted (its hooks do not run, it gets no host resources "
		       "unless you grant them; docs/security.md)\n",
		       v.unknown ? "signed by no key you trust" : "not signed");
	bundle_close(&b);
	return 0;
}

int session_bundle_arg(const char *arg, int insecure, char *path, size_t len)
{
	struct registry_opts o = { .insecure = insecure, .quiet = 0 };
	struct err e = { "" };

	if (!access(arg, F_OK) || !registry_is_ref(arg)) {
		snprintf(path, len, "%s", arg);
		return 0;
	}
	if (registry_pull_cached(arg, &o, path, len, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	return 1;
}
