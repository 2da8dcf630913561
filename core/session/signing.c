#include "session/signing.h"

#include <stdio.h>
#include <string.h>

#include "snapshot/sign.h"

int signatures_judge(const struct bundle *b, struct sig_verdict *v, int print, struct err *e)
{
	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < b->nsigs; i++) {
		char name[KEY_NAME_MAX + 1] = "", text[KEY_TEXT_MAX];
		int ok = bundle_signature_valid(b, i);
		int known = key_trusted(b->sigs[i].key, name, sizeof(name), e);
		if (known < 0)
			return known;
		key_text(b->sigs[i].key, text);
		if (!ok)
			v->bad++;
		else if (known && !v->trusted)
			v->trusted = 1, snprintf(v->who, sizeof(v->who), "%s", name);
		else if (!known)
			v->unknown++;
		if (print)
			printf("signature %zu: key %s%s%s%s: %s\n", i + 1, text, known ? " (" : "",
			       name, known ? ")" : "",
			       !ok ? "DOES NOT MATCH the bundle (changed after it was signed)"
			       : known ? "valid, a key you trust" : "valid, by a key you do not trust");
	}
	return 0;
}

int session_sign(const char *path, const char *key, const char *out)
{
	struct bundle_signature sigs[BUNDLE_SIG_MAX], mine;
	uint8_t sk[64], msg[BUNDLE_SIGNED_SIZE];
	char text[KEY_TEXT_MAX];
	struct bundle b;
	struct err e;
	size_t n = 0;
	int rc;

	if (bundle_open(&b, path, &e)) {
		fprintf(stderr, "smolvm sign: %s\n", e.msg);
		return 1;
	}
	if (b.version < 2) {
		fprintf(stderr, "smolvm sign: %s is a format %u bundle, which has no cryptographic "
			"hashes to sign: restore it and save it again with this smolvm (smolvm run "
			"%s, then SIGUSR1), or pack it again\n", path, b.version, path);
		bundle_close(&b);
		return 1;
	}
	/* Vouch only for what is whole. */
	rc = snapshot_verify(&b, &e);
	if (!rc)
		rc = key_secret(key, sk, &e);
	if (rc) {
		fprintf(stderr, "smolvm sign: %s\n", e.msg);
		bundle_close(&b);
		return 1;
	}
	crypto_sign_ed25519_sk_to_pk(mine.key, sk);
	bundle_signed_message(b.id, msg);
	crypto_sign_detached(mine.sig, NULL, msg, sizeof(msg), sk);
	sodium_memzero(sk, sizeof(sk));
	/* The others' stay; an earlier one of this key is replaced. */
	for (size_t i = 0; i < b.nsigs; i++)
		if (memcmp(b.sigs[i].key, mine.key, 32) && n < BUNDLE_SIG_MAX - 1)
			sigs[n++] = b.sigs[i];
	sigs[n++] = mine;
	rc = bundle_write_signed(&b, out ? out : path, sigs, n, &e);
	bundle_close(&b);
	if (rc) {
		fprintf(stderr, "smolvm sign: %s\n", e.msg);
		return 1;
	}
	key_text(mine.key, text);
	printf("%s: signed with key %s (%s)\n", out ? out : path, key, text);
	return 0;
}

int session_verify(const char *path)
{
	struct sig_verdict v;
	struct bundle b;
	struct err e;
	char id[2 * BUNDLE_HASH_SIZE + 1];
	int rc;

	if (bundle_open(&b, path, &e)) {
		fprintf(stderr, "smolvm verify: %s\n", e.msg);
		return 2;
	}
	if (b.version < 2) {
		printf("%s: format %u: checksums only, no cryptographic hashes, not signed\n", path,
		       b.version);
		rc = snapshot_verify(&b, &e);
		if (rc)
			fprintf(stderr, "smolvm verify: %s\n", e.msg);
		bundle_close(&b);
		return rc ? 2 : 1;
	}
	sodium_bin2hex(id, sizeof(id), b.id, sizeof(b.id));
	printf("%s: bundle %s\n", path, id);
	rc = snapshot_verify(&b, &e);
	if (rc) {
		fprintf(stderr, "smolvm verify: %s\n", e.msg);
		bundle_close(&b);
		return 2;
	}
	printf("contents: every section and memory chunk matches its hash\n");
	rc = signatures_judge(&b, &v, 1, &e);
	bundle_close(&b);
	if (rc) {
		fprintf(stderr, "smolvm verify: %s\n", e.msg);
		return 2;
	}
	if (v.bad) {
		fprintf(stderr, "smolvm verify: %s: a signature does not match: it was changed "
			"after it was signed; do not run it\n", path);
		return 2;
	}
	if (v.trusted) {
		printf("trusted: signed by %s\n", v.who);
		return 0;
	}
	printf("not trusted: %s (smolvm key trust FILE adds a key you know to be its "
	       "author's)\n", v.unknown ? "signed only by keys you do not trust" : "not signed");
	return 1;
}
