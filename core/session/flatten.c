/* smolvm flatten: a child bundle and its parents as one file. */
#include <stdio.h>

#include "session/session.h"
#include "session/trust.h"
#include "snapshot/lineage.h"

int session_flatten(const char *bundle, const char *out)
{
	struct snapmem_stats st;
	char script[4200];
	size_t generations;
	struct err e;
	int trusted;

	/* as trusted as what it was made from, and no more */
	trusted = trust_check(bundle, script, sizeof(script), &e);
	if (lineage_flatten(bundle, out, &generations, &st, &e)) {
		fprintf(stderr, "smolvm flatten: %s\n", e.msg);
		return 1;
	}
	trust_saved(out, trusted == 1, trusted == 1 && script[0] ? script : NULL);
	printf("%s: %s and %zu parent%s in one bundle: %llu chunks (%llu zero), %.1f MiB "
	       "stored\n", out, bundle, generations, generations == 1 ? "" : "s",
	       (unsigned long long)st.chunks, (unsigned long long)st.zero_chunks,
	       st.stored_bytes / 1048576.0);
	return 0;
}
