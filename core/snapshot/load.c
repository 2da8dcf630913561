/* Rebuilding a machine from a bundle. */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/cache_size.h"
#include "lib/clock.h"
#include "machine/host_api.h"
#include "machine/state.h"
#include "machine/vm.h"
#include "snapshot/dirty.h"
#include "snapshot/lazy.h"
#include "snapshot/snapmem.h"
#include "snapshot/uffd.h"

int snapshot_open(const char *path, struct restore_plan *p, struct err *e)
{
	const struct bundle_section *man, *lua;
	const uint8_t *data;
	char name[80];
	int rc;

	memset(p, 0, sizeof(*p));
	rc = bundle_open(&p->b, path, e);
	if (rc)
		return rc;
	man = bundle_find(&p->b, "manifest");
	lua = bundle_find(&p->b, "lua");
	p->memory = bundle_find(&p->b, "memory");
	if (!man || !lua || !p->memory || !bundle_find(&p->b, "vm") ||
	    p->memory->type != SEC_MEMORY) {
		rc = err_set(e, -EBADMSG, "%s: missing a manifest, lua, vm or memory section", path);
		goto fail;
	}
	/* (bundle_section_data's messages name the bundle already) */
	rc = bundle_section_data(&p->b, man, &data, e);
	if (rc)
		goto fail;
	rc = manifest_parse((const char *)data, man->size, &p->m, e);
	if (rc) {
		err_wrap(e, rc, "%s", path);
		goto fail;
	}
	rc = bundle_section_data(&p->b, lua, &data, e);
	if (rc)
		goto fail;
	p->lua = (const char *)data;
	p->lua_len = lua->size;
	/* Every small section now; memory and disks are verified as they
	 * are read. */
	for (size_t i = 0; i < p->b.n; i++) {
		const struct bundle_section *s = &p->b.secs[i];
		if (bundle_chunked(s->type))
			continue;
		rc = bundle_section_data(&p->b, s, &data, e);
		if (rc)
			goto fail;
		if (!strcmp(s->name, "kept")) {
			p->kept = data;
			p->kept_len = (size_t)s->size;
		}
	}
	/* Every state the manifest promises is there before anything is built. */
	for (uint32_t i = 0; i < p->m.cpus; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		if (!bundle_find(&p->b, name)) {
			rc = err_set(e, -EBADMSG, "%s: the manifest has %u vCPUs but there is no section %s",
				     path, p->m.cpus, name);
			goto fail;
		}
	}
	for (size_t i = 0; i < p->m.ndevs; i++) {
		snprintf(name, sizeof(name), "dev.%s", p->m.devs[i].name);
		if (!bundle_find(&p->b, name)) {
			rc = err_set(e, -EBADMSG, "%s: device %s has no state section %s", path,
				     p->m.devs[i].name, name);
			goto fail;
		}
	}
	if (strcmp(p->m.arch, "x86_64")) {
		rc = err_set(e, -ENOTSUP, "%s: a %s machine; this host runs x86_64", path, p->m.arch);
		goto fail;
	}
	if (p->m.page_size && p->m.page_size != (uint32_t)sysconf(_SC_PAGESIZE)) {
		rc = err_set(e, -ENOTSUP, "%s: saved with %u-byte pages, this host uses %ld",
			     path, p->m.page_size, sysconf(_SC_PAGESIZE));
		goto fail;
	}
	/* A child's parents, and its memory's chunk tables checked against
	 * theirs (each chunk is checked by its hash as it is read). */
	rc = lineage_open(&p->b, &p->up, e);
	if (!rc)
		rc = lineage_view(&p->b, &p->up, p->memory, &p->memv, e);
	if (rc)
		goto fail;
	return 0;
fail:
	snapshot_close(p);
	return rc;
}

int snapshot_check_plugins(const struct restore_plan *p, const struct machine_config *cfg,
			   const struct plugin_set *plugins, struct err *e)
{
	if (!plugins_find(plugins, p->m.backend, SMOLVM_PLUGIN_BACKEND))
		return err_set(e, -ENOENT, "the bundle needs backend plugin \"%s\", which is not installed",
			       p->m.backend);
	if (cfg->ndevices != p->m.ndevs)
		return err_set(e, -EINVAL, "the bundle holds %zu devices but its script declares %zu",
			       p->m.ndevs, cfg->ndevices);
	for (size_t i = 0; i < p->m.ndevs; i++) {
		const struct manifest_dev *md = &p->m.devs[i];
		const struct plugin *pl;

		if (strcmp(md->name, cfg->devices[i].name) || strcmp(md->type, cfg->devices[i].type))
			return err_set(e, -EINVAL, "device %zu is %s (%s) in the bundle but %s (%s) in its script",
				       i + 1, md->name, md->type, cfg->devices[i].name, cfg->devices[i].type);
		pl = plugins_find(plugins, md->type, SMOLVM_PLUGIN_DEVICE);
		if (!pl)
			return err_set(e, -ENOENT, "%s: device plugin \"%s\" (saved with %s) is not installed",
				       md->name, md->type, md->version);
		if (!pl->ops.dev.restore)
			return err_set(e, -ENOTSUP, "%s: plugin %s has no restore hook", md->name, md->type);
		if (md->state_version > pl->ops.dev.state_version ||
		    md->state_version < pl->ops.dev.min_state_version)
			return err_set(e, -EPROTO,
				       "%s: saved state version %u, plugin %s %s reads versions %u to %u",
				       md->name, md->state_version, md->type, pl->desc.version,
				       pl->ops.dev.min_state_version, pl->ops.dev.state_version);
	}
	return 0;
}

typedef int (*restore_fn)(void *obj, struct smolvm_state_reader *r, uint32_t version);

/* Section `name` into `obj`, through `fn`, for instance `who`: a device
 * (`dev`), or the backend (its sections vm and cpu.N). */
static int apply_state(const struct restore_plan *p, const char *name, restore_fn fn,
		       void *obj, const smolvm_ctx *who, int dev, uint32_t version,
		       struct err *e)
{
	const struct bundle_section *s = bundle_find(&p->b, name);
	struct smolvm_state_reader r;
	const uint8_t *data;
	int rc;

	if (!s)
		return err_set(e, -EBADMSG, "the bundle has no section %s", name);
	rc = bundle_section_data(&p->b, s, &data, e);
	if (!rc)
		rc = state_reader_init(&r, data, s->size, e);
	if (rc)
		return err_wrap(e, rc, "%s", name);
	rc = PLUGIN_CALL(e, who, dev ? "restore" : NULL, fn(obj, &r, version));
	if (rc >= 0 && (rc = state_reader_check(&r, e)) < 0 && dev)
		rc = err_wrap(e, rc, "cannot restore %s", who->name);
	if (rc < 0 && !dev)
		rc = err_wrap(e, rc, "%s: cannot restore", name);
	state_reader_free(&r);
	return rc;
}

static int vm_restore_fn(void *obj, struct smolvm_state_reader *r, uint32_t v)
{
	struct vm *vm = obj;
	(void)v;
	return vm->be->vm_restore(vm->be_vm, r);
}

static int vcpu_restore_fn(void *obj, struct smolvm_state_reader *r, uint32_t v)
{
	struct vcpu *c = obj;
	(void)v;
	return c->vm->be->vcpu_restore(c->be, r);
}

static int dev_restore_fn(void *obj, struct smolvm_state_reader *r, uint32_t v)
{
	struct device *d = obj;
	return d->plugin->ops.dev.restore(d->dev, r, v);
}

/* open_image (ABI 1.4) during a device's restore: its image section,
 * unpacked into the cache (named by what it holds) or a memory file; the
 * device gets it read-only. */
static int image_open(void *opaque, const char *sec, int *fd, uint64_t *size, struct err *e)
{
	const struct restore_plan *p = opaque;
	const struct bundle_section *s = bundle_find(&p->b, sec);
	struct cache_result r;
	struct chunked *c;
	char path[4200];
	int rc;

	if (!s)
		return -ENOENT;
	if (s->type != SEC_IMAGE)
		return err_set(e, -EBADMSG, "%s: section %s is not an image", p->b.path, sec);
	c = malloc(sizeof(*c));
	rc = c ? lineage_view(&p->b, &p->up, s, c, e) : err_set(e, -ENOMEM, "out of memory");
	if (!rc)
		rc = cache_image(&p->b, s, &c->v[0], "image", c->v[0].mem_size, &r, path,
				 sizeof(path), e);
	if (!rc) {
		*size = c->v[0].mem_size;
		*fd = path[0] ? open(path, O_RDONLY | O_CLOEXEC) : r.fd;
		if (*fd < 0)
			rc = err_set(e, -errno, "%s: %s", path, strerror(errno));
		if (path[0])
			close(r.fd);
	}
	free(c);
	return rc;
}

static int apply_all(struct vm *vm, const struct restore_plan *p, struct err *e)
{
	char name[80];
	int rc;

	if (!vm->be->vm_restore || !vm->be->vcpu_restore)
		return err_set(e, -ENOTSUP, "backend %s cannot restore machine state",
			       vm->backend->desc.name);
	if (vm->ncpus != p->m.cpus)
		return err_set(e, -EINVAL, "the bundle has %u vCPUs, the machine %u", p->m.cpus, vm->ncpus);
	/* A guest booted without the workarounds this host needs would meet
	 * instructions the host cannot run. */
	if (vm->quirks & ~p->m.quirks)
		return err_set(e, -ENOTSUP,
			       "this host needs workarounds (quirks %#x) the guest was not booted with (%#x); "
			       "pack the bundle on a host like this one, or with --host-quirks on",
			       vm->quirks, p->m.quirks);
	/* Interrupt controllers and clock, then vCPUs, then devices: an
	 * interrupt a device raises while it restores (virtio-vsock's
	 * transport reset) must land in a LAPIC that is already restored,
	 * not be overwritten by KVM_SET_LAPIC. */
	rc = apply_state(p, "vm", vm_restore_fn, vm, &vm->be_ctx, 0, 0, e);
	for (uint32_t i = 0; !rc && i < vm->ncpus; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = apply_state(p, name, vcpu_restore_fn, &vm->vcpus[i], &vm->be_ctx, 0, 0, e);
	}
	vm->image_open = image_open;
	vm->image_opaque = (void *)p;
	for (size_t i = 0; !rc && i < vm->ndevs; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ctx.name);
		rc = apply_state(p, name, dev_restore_fn, &vm->devs[i], &vm->devs[i].ctx, 1,
				 p->m.devs[i].state_version, e);
	}
	vm->image_open = NULL;
	vm->image_opaque = NULL;
	return rc;
}

/* Where the first restore of a bundle gets its memory from: the cache
 * image if there is one; else filled on demand (lazy) where userfaultfd
 * works and SMOLVM_RESTORE is not "eager"; else decompressed whole into
 * the cache before the machine is built. */
static int map_memory(const struct restore_plan *p, struct cache_result *mem, struct err *e)
{
	const char *mode = getenv("SMOLVM_RESTORE");
	double t0 = clock_ms();
	struct err why;
	char path[4200];
	int fd;

	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (cache_image_path(p->memory, &p->memv.v[0], p->m.memory, path, sizeof(path)) == 0 &&
	    (fd = cache_image_open(path, p->m.memory)) >= 0) {
		cache_touch(fd);
		mem->fd = fd;
		mem->hit = 1;
		mem->ms = clock_ms() - t0;
		return 0;
	}
	if (mode && !strcmp(mode, "eager"))
		snprintf(mem->why_eager, sizeof(mem->why_eager), "SMOLVM_RESTORE=eager");
	else if (lazy_mem_probe(&why))
		snprintf(mem->why_eager, sizeof(mem->why_eager), "%s", why.msg);
	else {
		mem->lazy = 1;
		return 0;
	}
	/* (cache_memory starts from a clean result: the reason is kept) */
	snprintf(why.msg, sizeof(why.msg), "%s", mem->why_eager);
	int rc = cache_memory(&p->b, p->memory, &p->memv.v[0], p->m.memory, mem, e);
	snprintf(mem->why_eager, sizeof(mem->why_eager), "%s", why.msg);
	return rc;
}

static void lazy_error(void *opaque, const char *msg)
{
	struct origin *o = opaque;

	vm_request_stop(o->vm, VM_STOP_ERROR, msg);
}

static void origin_release(void *opaque)
{
	struct origin *o = opaque;
	struct lazy_stats st;

	if (o->lazy) {
		lazy_mem_stats(o->lazy, &st);
		if (o->vm->verbose)
			fprintf(stderr, "smolvm: memory on demand: %u chunks faulted in, %u filled in "
				"the background, %s\r\n", st.faulted, st.filled,
				st.complete ? "complete (cached for the next restore)" : "incomplete");
	}
	lazy_mem_stop(o->lazy);
	if (o->track_fd >= 0)
		close(o->track_fd); /* (unregisters the range) */
	free(o);
}

/* The machine's memory came from this plan: a save can keep what did not
 * change (dirty.h), and with `lazy` it is filled on demand. */
static int track_origin(const struct restore_plan *p, struct vm *vm, int lazy,
			struct cache_result *mem, struct err *e)
{
	struct origin *o = calloc(1, sizeof(*o));
	struct err why = { "" };
	char path[4200];
	double t0 = clock_ms();
	int rc;

	if (!o)
		return err_set(e, -ENOMEM, "out of memory");
	o->vm = vm;
	o->plan = p;
	o->track_fd = -1;
	/* (checked by snapshot_open: format 2, the chunk tables against the
	 * sections' hashes, each chunk against its own as it is read; format
	 * 1, the section's checksum once the lazy fill has read it all) */
	o->v = p->memv.v[0];
	rc = 0;
	if (o->v.mem_size != vm->mem.size)
		rc = err_set(e, -EBADMSG, "memory section holds %llu bytes, expected %llu",
			     (unsigned long long)o->v.mem_size, (unsigned long long)vm->mem.size);
	if (!rc && lazy)
		rc = lazy_mem_start(&o->v, vm->mem.base, &p->b, p->memory,
				    cache_image_path(p->memory, &o->v, o->v.mem_size, path, sizeof(path)) ? NULL : path,
				    lazy_error, o, &o->lazy, e);
	if (rc) {
		free(o);
		return rc;
	}
	/* Writes are tracked from before the first state is applied; where
	 * the kernel cannot, a save compresses everything, as after a boot. */
	if (lazy) {
		o->tracked = lazy_mem_tracks(o->lazy);
	} else {
		int got;
		o->track_fd = uffd_open(UFFD_TRACK_FEATURES, &got);
		o->tracked = o->track_fd >= 0 && got &&
			     !dirty_track(o->track_fd, vm->mem.base, vm->mem.size, 0, &why);
	}
	if (!o->tracked && vm->verbose)
		fprintf(stderr, "smolvm: writes to guest memory not tracked (saves store all of it)%s%s\n",
			why.msg[0] ? ": " : "", why.msg);
	vm->mem_origin = o;
	vm->mem_release = origin_release;
	if (lazy)
		mem->ms = clock_ms() - t0;
	return 0;
}

int snapshot_load(const struct restore_plan *p, struct machine_config *cfg,
		  const struct plugin_set *plugins, const struct vm_opts *opts, struct vm *vm,
		  struct cache_result *mem, struct err *e)
{
	struct vm_opts vo = *opts;
	int rc;

	memset(vm, 0, sizeof(*vm));
	/* The machine the bundle was saved from: its shape is the manifest's. */
	cfg->cpus = p->m.cpus;
	cfg->memory = p->m.memory;
	free(cfg->backend);
	cfg->backend = strdup(p->m.backend);
	if (!cfg->backend)
		return err_set(e, -ENOMEM, "out of memory");
	rc = snapshot_check_plugins(p, cfg, plugins, e);
	if (!rc)
		rc = map_memory(p, mem, e);
	if (rc)
		return rc;
	vo.mem_fd = mem->fd;
	vo.restore = 1;
	rc = vm_create(vm, cfg, plugins, &vo, e);
	/* The mapping keeps the image: its fd is not needed any more. */
	if (mem->fd >= 0)
		close(mem->fd);
	mem->fd = -1;
	vm->opts.mem_fd = -1;
	/* Lazily, guest memory is empty until the fill thread serves it,
	 * which starts before the first state that may touch it. */
	if (!rc)
		rc = track_origin(p, vm, mem->lazy, mem, e);
	if (!rc)
		rc = apply_all(vm, p, e);
	if (rc)
		vm_destroy(vm);
	return rc;
}

void snapshot_close(struct restore_plan *p)
{
	lineage_close(&p->up);
	bundle_close(&p->b);
	memset(p, 0, sizeof(*p));
}
