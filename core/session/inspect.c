/* inspect and plugins: what a bundle holds, what plugins this host has. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/loader.h"
#include "machine/state.h"
#include "script/script.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/kept.h"
#include "session/volumes.h"
#include "session/session.h"
#include "session/signing.h"
#include "session/trust.h"
#include "snapshot/sign.h"
#include "snapshot/snapshot.h"

/* What the bundle asks of the host, and whether this user trusts it. */
/* The volume slots after the script's devices, and the host directories
 * its snapshot had mounted (volumes.h): lines of "asks of the host". */
static int volumes_asks(const struct restore_plan *plan, size_t script_devs)
{
	size_t slots = 0, mounted = 0;
	struct kept k;
	struct err e;

	for (size_t i = script_devs; i < plan->m.ndevs; i++)
		slots += !strcmp(plan->m.devs[i].type, VOLUME_TYPE);
	kept_init(&k);
	if (plan->kept && !kept_decode(&k, plan->kept, plan->kept_len, &e))
		for (size_t i = 0; i < k.n; i++) {
			size_t pl = strlen(VOLUME_KEPT_PREFIX);
			if (strncmp(k.v[i].key, VOLUME_KEPT_PREFIX, pl))
				continue;
			printf("  %-14s a host directory at %.*s in the guest, mounted when saved "
			       "(required: --volume HOSTDIR:%.*s)\n", k.v[i].key + pl,
			       (int)k.v[i].len, k.v[i].val, (int)k.v[i].len, k.v[i].val);
			mounted++;
		}
	kept_free(&k);
	if (slots > mounted)
		printf("  %-14s %zu volume slot%s free for --volume HOSTDIR:GUESTDIR\n", "virtio-9p",
		       slots - mounted, slots - mounted == 1 ? "" : "s");
	return slots > 0;
}

static void print_asks(const char *path, const struct restore_plan *plan)
{
	static const char *const hooks[] = { SCRIPT_HOOKS };
	struct machine_config cfg;
	struct script *sc = NULL;
	struct err e;
	struct sig_verdict sv;
	int t = trust_check(path, NULL, 0, &e), any = 0;

	if (signatures_judge(&plan->b, &sv, 0, &e) == 0 && sv.bad)
		printf("trust: none: a signature does not match (changed after it was signed); "
		       "it is not run\n");
	else if (sv.trusted)
		printf("trust: signed by %s, a key you trust: its hooks run, its devices get what "
		       "its script names\n", sv.who);
	else
		printf("trust: %s\n", t == 1 ? "yours (packed, or saved from a bundle you trust, on "
					      "this host): its hooks run, its devices get what "
					      "its script names"
				      : t == 0 ? "not yours: its hooks do not run without --trust, "
						 "and its host resources need grants "
						 "(docs/security.md)"
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
		char sec[80];
		snprintf(sec, sizeof(sec), "disk.%s", d->name);
		const struct bundle_section *own = bundle_find(&plan->b, sec);
		if (!strcmp(d->type, "virtio-blk") && own) {
			const char *name = dev_config_get(d, "serial");
			printf("  %-14s disk \"%s\": its own, in the bundle (%.1f MiB, %.1f MiB stored; "
			       "--disk %s=PATH gives another)\n", d->name, name ? name : d->name,
			       own->raw_size / 1048576.0, own->size / 1048576.0, name ? name : d->name);
			any++;
		} else if (!strcmp(d->type, "virtio-blk") && !(i == 0 && cfg.rootfs)) {
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
		} else if (!strcmp(d->type, VOLUME_TYPE) && dev_config_get(d, "path")) {
			printf("  %-14s the host directory %s (--volume HOSTDIR:GUESTDIR)\n", d->name,
			       dev_config_path(d, "path", cfg.script));
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
	any += volumes_asks(plan, cfg.ndevices);
	printf("%s\n", any || cfg.rootfs ? "" : "  nothing\n");
	script_close(sc);
	machine_config_free(&cfg);
}

/* Its parents, and where each chunked section's chunks are stored. */
static void print_lineage(const struct restore_plan *plan)
{
	struct chunked *c = malloc(sizeof(*c));
	struct chunk_costs cc;
	struct parent_ref ref;
	struct err e;

	for (size_t k = 0; k < plan->up.n; k++) {
		const struct bundle *child = k ? &plan->up.up[k - 1] : &plan->b;
		char id[2 * BUNDLE_HASH_SIZE + 1];
		if (lineage_parent(child, &ref, &e) != 1)
			break;
		sodium_bin2hex(id, sizeof(id), ref.id, sizeof(ref.id));
		printf("%*sparent: %s (id %.16s..., %llu bytes), found at %s\n", (int)(2 * k), "",
		       ref.name, id, (unsigned long long)plan->up.up[k].size,
		       plan->up.up[k].path);
	}
	for (size_t i = 0; c && i < plan->b.n; i++) {
		const struct bundle_section *s = &plan->b.secs[i];
		if (!bundle_chunked(s->type))
			continue;
		if (lineage_view(&plan->b, &plan->up, s, c, &e)) {
			printf("%s: %s\n", s->name, e.msg);
			continue;
		}
		lineage_costs(c, &cc);
		printf("%s: %u chunks of 1 MiB, %llu zero; stored here: %llu (%.1f MiB)", s->name,
		       c->v[0].nchunks, (unsigned long long)cc.zero,
		       (unsigned long long)cc.chunks[0], cc.bytes[0] / 1048576.0);
		for (size_t k = 1; k <= plan->up.n; k++)
			if (cc.chunks[k])
				printf("; in %s: %llu (%.1f MiB)", plan->up.up[k - 1].path,
				       (unsigned long long)cc.chunks[k], cc.bytes[k] / 1048576.0);
		printf("\n");
	}
	free(c);
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
	printf("%s: smolvm bundle, format %u, %llu bytes\n", path, plan.b.version,
	       (unsigned long long)plan.b.size);
	if (plan.b.version >= 2) {
		char id[2 * BUNDLE_HASH_SIZE + 1];
		sodium_bin2hex(id, sizeof(id), plan.b.id, sizeof(plan.b.id));
		printf("bundle id %s\n", id);
	}
	print_lineage(&plan);
	printf("\n");
	man = bundle_find(&plan.b, "manifest");
	printf("%.*s\n", (int)man->size, (const char *)plan.b.map + man->offset);
	print_asks(path, &plan);
	printf("%-20s %-9s %-5s %12s %12s %s\n", "SECTION", "TYPE", "COMP", "STORED", "SIZE",
	       plan.b.version >= 2 ? "HASH (BLAKE2b-256, of its first COVERED bytes)" : "CHECKSUM");
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = &plan.b.secs[i];
		char h[2 * BUNDLE_HASH_SIZE + 1];
		if (plan.b.version >= 2)
			sodium_bin2hex(h, sizeof(h), s->digest, sizeof(s->digest));
		else
			snprintf(h, sizeof(h), "%016llx", (unsigned long long)s->hash);
		printf("%-20s %-9s %-5s %12llu %12llu %s", s->name, bundle_type_name(s->type),
		       s->compression ? "zstd" : "-", (unsigned long long)s->size,
		       (unsigned long long)s->raw_size, h);
		if (s->covered != s->size)
			printf(" (%llu; its chunks by their own)", (unsigned long long)s->covered);
		printf("\n");
	}
	/* What the hooks kept (vm:keep). */
	if (plan.kept) {
		struct kept k;
		kept_init(&k);
		if (kept_decode(&k, plan.kept, plan.kept_len, &e)) {
			printf("\nkept: %s\n", e.msg);
		} else {
			printf("\nkept (vm.kept):\n");
			for (size_t i = 0; i < k.n; i++)
				printf("  %s = \"%.*s\"%s\n", k.v[i].key,
				       k.v[i].len > 200 ? 200 : (int)k.v[i].len, k.v[i].val,
				       k.v[i].len > 200 ? "..." : "");
		}
		kept_free(&k);
	}
	/* What each device saved, decoded (the fields are named and typed). */
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = &plan.b.secs[i];
		const uint8_t *data;
		if (s->type != SEC_DEVICE || bundle_section_data(&plan.b, s, &data, &e))
			continue;
		printf("\n%s:\n", s->name);
		if (state_dump(stdout, data, (size_t)s->size, "  ", &e))
			printf("  (cannot be decoded: %s)\n", e.msg);
	}
	printf("\n");
	struct sig_verdict v = { 0 };
	if (!plan.b.nsigs)
		printf("not signed\n");
	else if (signatures_judge(&plan.b, &v, 1, &e))
		printf("signatures: %s\n", e.msg);
	/* (the memory chunks decompress, too) */
	rc = snapshot_verify(&plan.b, &e);
	if (!rc && v.bad)
		rc = err_set(&e, -EBADMSG, "a signature does not match: the bundle was changed after "
			     "it was signed");
	printf("%s\n", rc ? e.msg : "ok: every hash and checksum matches and the memory decompresses");
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
