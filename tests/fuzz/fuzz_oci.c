/* Fuzz what a registry sends (core/registry/oci.h, auth.h): the input is
 * split at the first NUL into a manifest and a config; both are parsed,
 * and when both parse, checked against each other as a pull would. The
 * manifest bytes also go through the reference and challenge parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/auth.h"
#include "registry/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t mlen = nul ? (size_t)(nul - data) : size;
	struct oci_artifact a;
	struct oci_index x;
	struct oci_ref r;
	struct auth_challenge ch;
	struct err e;
	char *s = malloc(mlen + 1);

	if (!s)
		return 0;
	memcpy(s, data, mlen);
	s[mlen] = 0;
	(void)oci_ref_parse(s, &r, &e);
	(void)auth_parse_challenge(s, &ch);
	free(s);
	int ma = oci_manifest_parse((const char *)data, mlen, &a, &e);
	int xa = nul ? oci_index_parse((const char *)nul + 1, size - mlen - 1, &x, &e) : -1;
	if (!ma && !xa)
		(void)oci_plan_check(&a, &x, &e);
	if (!ma)
		oci_artifact_free(&a);
	if (!xa)
		oci_index_free(&x);
	return 0;
}
