/* inspect and plugins: what a bundle holds, what plugins this host has. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/loader.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/session.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"

int session_inspect(const char *path)
{
	struct restore_plan plan;
	const struct bundle_section *man;
	struct err e;
	int rc;

	if (snapshot_open(path, &plan, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	printf("%s: smolvm bundle, format %d, %llu bytes\n\n", path, BUNDLE_VERSION,
	       (unsigned long long)plan.b.size);
	man = bundle_find(&plan.b, "manifest");
	printf("%.*s\n", (int)man->size, (const char *)plan.b.map + man->offset);
	printf("%-20s %-9s %-5s %12s %12s %s\n", "SECTION", "TYPE", "COMP", "STORED", "SIZE",
	       "CHECKSUM");
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = &plan.b.secs[i];
		printf("%-20s %-9s %-5s %12llu %12llu %016llx\n", s->name, bundle_type_name(s->type),
		       s->compression ? "zstd" : "-", (unsigned long long)s->size,
		       (unsigned long long)s->raw_size, (unsigned long long)s->hash);
	}
	rc = bundle_verify_all(&plan.b, &e);
	if (!rc) {
		/* The memory chunks must decompress, too. */
		void *tmp = calloc(1, plan.m.memory ? plan.m.memory : 1);
		if (!tmp)
			rc = err_set(&e, -ENOMEM, "out of memory");
		else
			rc = snapmem_read(plan.b.map + plan.memory->offset, plan.memory->size, tmp,
					  plan.m.memory, 0, &e);
		free(tmp);
	}
	printf("\n%s\n", rc ? e.msg : "ok: every checksum matches and the memory decompresses");
	snapshot_close(&plan);
	return rc ? 1 : 0;
}

int session_plugins(void)
{
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct err e;

	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	static const int always = 1;

	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, session_refusal, (void *)&always);
	printf("%-16s %-8s %-8s %-5s %s\n", "NAME", "KIND", "VERSION", "ABI", "PATH");
	for (size_t i = 0; i < set.n; i++) {
		const struct plugin *p = &set.v[i];
		printf("%-16s %-8s %-8s %u.%-3u %s\n", p->desc.name, plugin_kind_name(p->desc.kind),
		       p->desc.version, p->desc.abi_major, p->desc.abi_minor, p->path);
	}
	printf("\nsearch path (host ABI %d.%d):\n", SMOLVM_ABI_MAJOR, SMOLVM_ABI_MINOR);
	for (size_t i = 0; i < hc.nplugin_dirs; i++)
		printf("  %s\n", hc.plugin_dirs[i]);
	plugins_free(&set);
	host_config_free(&hc);
	return 0;
}
