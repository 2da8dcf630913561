/* inspect and plugins: what a bundle holds, what plugins this host has. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/loader.h"
#include "script/script.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/session.h"
#include "session/trust.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"

/* What the bundle asks of the host, and whether this user trusts it. */
static void print_asks(const char *path, const struct restore_plan *plan)
{
	static const char *const hooks[] = { SCRIPT_HOOKS };
	struct machine_config cfg;
	struct script *sc = NULL;
	struct err e;
	int t = trust_check(path, &e), any = 0;

	printf("trust: %s\n", t == 1 ? "yours (packed, or saved from a bundle you trust, on "
				      "this host): its hooks run, its devices get what its "
				      "script names"
			      : t == 0 ? "not yours: its hooks do not run without --trust, and "
					 "its host resources need grants (docs/security.md)"
				       : e.msg);
	if (script_open(plan->m.script, plan->lua, plan->lua_len, &cfg, &sc, &e)) {
		printf("its script: %s\n\n", e.msg);
		return;
	}
	printf("hooks:");
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++)
		if (script_has_hook(sc, hooks[i]))
			printf("%s %s", any++ ? "," : "", hooks[i]);
	printf("%s\nasks of the host:\n", any ? "" : " none");
	any = 0;
	for (size_t i = 0; i < cfg.ndevices; i++) {
		struct dev_config *d = &cfg.devices[i];
		const char *v;
		if (!strcmp(d->type, "virtio-blk") && !(i == 0 && cfg.rootfs)) {
			const char *name = dev_config_get(d, "serial");
			const char *ro = dev_config_get(d, "readonly");
			if (!name)
				name = d->name;
			printf("  %-14s disk \"%s\": the host file %s%s (--disk %s=PATH)\n", d->name,
			       name, dev_config_path(d, "path", cfg.script),
			       ro && strcmp(ro, "false") ? ", read-only" : "", name);
			any++;
		} else if (!strcmp(d->type, "virtio-net")) {
			printf("  %-14s the network and the host's loopback (--net)\n", d->name);
			for (size_t k = 0; k < d->n; k++)
				if (!strncmp(d->keys[k], "forward", 7))
					printf("  %-14s the host port of forward %s (--publish)\n", d->name,
					       d->vals[k]);
			any++;
		} else if (!strcmp(d->type, "virtio-vsock") && (v = dev_config_get(d, "socket"))) {
			printf("  %-14s the socket path %s\n", d->name,
			       dev_config_path(d, "socket", cfg.script));
			any++;
		}
	}
	if (cfg.rootfs)
		printf("  %-14s its root filesystem, from your cache: %s\n", "virtio-blk0",
		       plan->m.rootfs);
	printf("%s\n", any || cfg.rootfs ? "" : "  nothing\n");
	script_close(sc);
	machine_config_free(&cfg);
}

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
	print_asks(path, &plan);
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
