/* smolvm inspect --json: what `inspect` prints, for scripts (jansson). */
#include "session/session.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/signing.h"
#include "session/trust.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"

static json_t *hex(const uint8_t *p, size_t n)
{
	char h[2 * 64 + 1];

	sodium_bin2hex(h, sizeof(h), p, n < 64 ? n : 64);
	return json_string(h);
}

/* A chunked section (memory, a disk): its size and what its chunks cost,
 * here and in each ancestor ("generations": 0 is this bundle). */
static json_t *chunked(const struct restore_plan *p, const struct bundle_section *s)
{
	struct chunked *c = malloc(sizeof(*c));
	struct chunk_costs cc;
	struct err e;
	json_t *gens, *o;

	if (!c)
		return json_pack("{s:s}", "error", "out of memory");
	if (lineage_view(&p->b, &p->up, s, c, &e)) {
		free(c);
		return json_pack("{s:s}", "error", e.msg);
	}
	lineage_costs(c, &cc);
	gens = json_array();
	for (size_t k = 0; k <= p->up.n; k++)
		json_array_append_new(gens, json_pack("{s:s, s:I, s:I}", "bundle",
						      k ? p->up.up[k - 1].path : p->b.path,
						      "chunks", (json_int_t)cc.chunks[k],
						      "stored", (json_int_t)cc.bytes[k]));
	o = json_pack("{s:I, s:I, s:i, s:I, s:I, s:o}", "size", (json_int_t)c->v[0].mem_size,
		      "stored", (json_int_t)s->size, "chunk_size", SNAPMEM_CHUNK,
		      "chunks", (json_int_t)c->v[0].nchunks, "zero_chunks", (json_int_t)cc.zero,
		      "generations", gens);
	free(c);
	return o;
}

/* Its ancestors, parent first: the name each child recorded, the
 * identity, and where it was found. */
static json_t *lineage(const struct restore_plan *p)
{
	json_t *a = json_array();
	struct parent_ref ref;
	struct err e;

	for (size_t k = 0; k < p->up.n; k++) {
		if (lineage_parent(k ? &p->up.up[k - 1] : &p->b, &ref, &e) != 1)
			break;
		json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:s}", "name", ref.name, "id",
						   hex(ref.id, sizeof(ref.id)), "size",
						   (json_int_t)ref.size, "found", p->up.up[k].path));
	}
	return a;
}

static json_t *sections(const struct bundle *b)
{
	json_t *a = json_array();

	for (size_t i = 0; i < b->n; i++) {
		const struct bundle_section *s = &b->secs[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "name", s->name, "type",
				      bundle_type_name(s->type), "compression",
				      s->compression ? "zstd" : "none", "stored", (json_int_t)s->size,
				      "size", (json_int_t)s->raw_size, "covered",
				      (json_int_t)s->covered);
		if (b->version >= 2)
			json_object_set_new(o, "blake2b", hex(s->digest, sizeof(s->digest)));
		else
			json_object_set_new(o, "xxh3", json_integer((json_int_t)s->hash));
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *manifest(const struct manifest *m)
{
	json_t *devs = json_array();

	for (size_t i = 0; i < m->ndevs; i++)
		json_array_append_new(devs, json_pack("{s:s, s:s, s:s, s:i}", "name",
						      m->devs[i].name, "type", m->devs[i].type,
						      "version", m->devs[i].version, "state_version",
						      (int)m->devs[i].state_version));
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:o}", "smolvm", m->smolvm,
			 "created", m->created, "name", m->name, "arch", m->arch, "cpus",
			 (int)m->cpus, "memory", (json_int_t)m->memory, "script", m->script,
			 "rootfs", m->rootfs, "backend", m->backend, "devices", devs);
}

static json_t *trust(const char *path, const struct bundle *b)
{
	struct sig_verdict v = { 0 };
	struct err e;
	json_t *sigs = json_array();
	int mine = trust_check(path, NULL, 0, &e);
	const char *what;

	for (size_t i = 0; i < b->nsigs; i++)
		json_array_append_new(sigs, json_pack("{s:o, s:b}", "key",
						      hex(b->sigs[i].key, sizeof(b->sigs[i].key)),
						      "valid", bundle_signature_valid(b, i)));
	if (signatures_judge(b, &v, 0, &e) < 0 || v.bad)
		what = "refused";
	else if (v.trusted)
		what = "signed";
	else
		what = mine == 1 ? "yours" : "not-yours";
	return json_pack("{s:s, s:s?, s:o}", "trust", what, "signer", v.trusted ? v.who : NULL,
			 "signatures", sigs);
}

int session_inspect_json(const char *path)
{
	struct restore_plan plan;
	struct err e;
	json_t *o, *disks;
	int rc;

	if (snapshot_open(path, &plan, &e)) {
		o = json_pack("{s:s, s:b, s:s}", "path", path, "ok", 0, "error", e.msg);
		json_dumpf(o, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(o);
		return 1;
	}
	disks = json_array();
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = &plan.b.secs[i];
		if (s->type != SEC_DISK)
			continue;
		json_t *d = chunked(&plan, s);
		json_object_set_new(d, "device", json_string(s->name + strlen("disk.")));
		json_array_append_new(disks, d);
	}
	o = json_pack("{s:s, s:i, s:I}", "path", path, "format", (int)plan.b.version, "size",
		      (json_int_t)plan.b.size);
	if (plan.b.version >= 2)
		json_object_set_new(o, "id", hex(plan.b.id, sizeof(plan.b.id)));
	json_object_set_new(o, "manifest", manifest(&plan.m));
	json_object_update_new(o, trust(path, &plan.b));
	json_object_set_new(o, "lineage", lineage(&plan));
	json_object_set_new(o, "memory", chunked(&plan, plan.memory));
	json_object_set_new(o, "disks", disks);
	json_object_set_new(o, "sections", sections(&plan.b));
	rc = snapshot_verify(&plan.b, &e);
	json_object_set_new(o, "ok", json_boolean(!rc));
	if (rc)
		json_object_set_new(o, "error", json_string(e.msg));
	json_dumpf(o, stdout, JSON_INDENT(2));
	printf("\n");
	json_decref(o);
	snapshot_close(&plan);
	return rc ? 1 : 0;
}
