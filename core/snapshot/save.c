/* Freezing a running machine into a bundle. */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "lib/clock.h"
#include "lib/holes.h"
#include "machine/host_api.h"
#include "machine/state.h"
#include "machine/vm.h"
#include "snapshot/dirty.h"
#include "snapshot/disks.h"
#include "snapshot/lazy.h"
#include "snapshot/snapmem.h"

typedef int (*save_fn)(void *obj, struct smolvm_state_writer *w);

/* One state section: whatever `fn` writes for `obj`, for instance `who`:
 * a device (`dev`), or the backend (its sections vm and cpu.N). */
static int add_state(struct bundle_writer *bw, const char *name, uint32_t type,
		     save_fn fn, void *obj, const smolvm_ctx *who, int dev, struct err *e)
{
	const char *doing = dev ? "save" : NULL;
	struct smolvm_state_writer w;
	int rc;

	state_writer_init(&w);
	rc = PLUGIN_CALL(e, who, doing, fn(obj, &w));
	if (!rc && w.failed)
		rc = plugin_fail(who, doing, w.failed, e, "writing its state: %s",
				 strerror(-w.failed));
	if (rc < 0 && !dev)
		rc = err_wrap(e, rc, "%s: cannot save state", name);
	else if (rc >= 0)
		rc = bundle_add(bw, name, type, w.buf, w.len, e);
	state_writer_free(&w);
	return rc;
}

static void fill_manifest(struct vm *vm, struct manifest *m)
{
	const struct machine_config *cfg = vm->cfg;
	time_t now = time(NULL);
	struct tm tm;

	memset(m, 0, sizeof(*m));
	snprintf(m->smolvm, sizeof(m->smolvm), "%s", SMOLVM_VERSION);
	gmtime_r(&now, &tm);
	strftime(m->created, sizeof(m->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(m->name, sizeof(m->name), "%s", cfg->name ? cfg->name : "machine");
	snprintf(m->arch, sizeof(m->arch), "x86_64");
	m->cpus = vm->ncpus;
	m->memory = vm->mem.size;
	/* its name only: a bundle carries no path of the host that made it */
	snprintf(m->script, sizeof(m->script), "%s",
		 strrchr(cfg->script, '/') ? strrchr(cfg->script, '/') + 1 : cfg->script);
	if (cfg->rootfs_id)
		snprintf(m->rootfs, sizeof(m->rootfs), "%s", cfg->rootfs_id);
	snprintf(m->backend, sizeof(m->backend), "%s", vm->backend->desc.name);
	m->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	m->quirks = vm->quirks;
	for (size_t i = 0; i < vm->ndevs && i < MANIFEST_MAX_DEVICES; i++) {
		const struct device *d = &vm->devs[i];
		struct manifest_dev *md = &m->devs[m->ndevs++];
		snprintf(md->name, sizeof(md->name), "%s", d->ctx.name);
		snprintf(md->type, sizeof(md->type), "%s", d->plugin->desc.name);
		snprintf(md->version, sizeof(md->version), "%s", d->plugin->desc.version);
		md->abi_major = d->plugin->desc.abi_major;
		md->abi_minor = d->plugin->desc.abi_minor;
		md->state_version = d->plugin->ops.dev.state_version;
	}
}

static int vm_save_fn(void *obj, struct smolvm_state_writer *w)
{
	struct vm *vm = obj;
	return vm->be->vm_save(vm->be_vm, w);
}

static int vcpu_save_fn(void *obj, struct smolvm_state_writer *w)
{
	struct vcpu *c = obj;
	return c->vm->be->vcpu_save(c->be, w);
}

static int dev_save_fn(void *obj, struct smolvm_state_writer *w)
{
	struct device *d = obj;
	return d->plugin->ops.dev.save(d->dev, w);
}

static int check_savable(struct vm *vm, struct err *e)
{
	if (!vm->be->vm_save || !vm->be->vcpu_save)
		return err_set(e, -ENOTSUP, "backend %s cannot save machine state",
			       vm->backend->desc.name);
	for (size_t i = 0; i < vm->ndevs; i++)
		if (!vm->devs[i].plugin->ops.dev.save)
			return err_set(e, -ENOTSUP, "%s: plugin %s has no save hook",
				       vm->devs[i].ctx.name, vm->devs[i].plugin->desc.name);
	return 0;
}

static int check_clean(const struct origin *o, struct vm *vm, const uint8_t *clean,
		       struct err *e)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	uint8_t *buf = malloc(SNAPMEM_CHUNK);
	int rc = 0;

	if (!dc || !buf)
		rc = err_set(e, -ENOMEM, "out of memory");
	for (uint32_t i = 0; !rc && i < o->v.nchunks; i++) {
		if (!clean[i])
			continue;
		rc = snapmem_chunk_read(&o->v, i, dc, buf, e);
		if (!rc && memcmp(buf, vm->mem.base + (uint64_t)i * SNAPMEM_CHUNK,
				  snapmem_chunk_len(&o->v, i)))
			rc = err_set(e, -EIO, "SMOLVM_SAVE=check: chunk %u changed but was not "
				     "seen written", i);
	}
	free(buf);
	ZSTD_freeDCtx(dc);
	return rc;
}

/* A restored machine's unchanged chunks: clean[i] = 1. NULL when the
 * whole memory must be compressed (a boot, untracked writes, or
 * SMOLVM_SAVE=full). SMOLVM_SAVE=check compares every clean chunk with
 * its origin and refuses the save on a difference (a test of the
 * tracking, not for everyday use: it decompresses them all). */
static uint8_t *clean_chunks(struct vm *vm, struct err *e, int *rc)
{
	const struct origin *o = vm->mem_origin;
	const char *mode = getenv("SMOLVM_SAVE");
	uint8_t *d;

	*rc = 0;
	if (!o || !o->tracked || (mode && !strcmp(mode, "full")) || o->v.mem_size != vm->mem.size)
		return NULL;
	d = malloc(o->v.nchunks ? o->v.nchunks : 1);
	if (!d || dirty_read(vm->mem.base, vm->mem.size, SNAPMEM_CHUNK, d, e)) {
		free(d);
		return NULL; /* then whole */
	}
	for (uint32_t i = 0; i < o->v.nchunks; i++)
		d[i] = !d[i];
	if (mode && !strcmp(mode, "check"))
		*rc = check_clean(o, vm, d, e);
	return d;
}

/* save_image (ABI 1.4) during a device's save: a chunked section,
 * deduplicated against the parent's section of that name. */
struct image_saver {
	struct bundle_writer *bw;
	const struct restore_plan *plan; /* NULL after a boot */
	const struct bundle *parent;
	struct snapmem_stats st;
};

static int image_save(void *opaque, const char *sec, int fd, uint64_t offset, uint64_t size,
		      struct err *e)
{
	struct image_saver *is = opaque;
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), lead = offset % pg, file_part = 0;
	struct snapmem_base base = { 0 };
	struct snapmem_stats one;
	struct chunked *pc = NULL;
	struct stat st;
	uint8_t *map = NULL, *holes = NULL;
	int rc = 0;

	if (fstat(fd, &st) < 0)
		return err_set(e, -errno, "image %s: %s", sec, strerror(errno));
	if (size > SNAPMEM_MAX_SIZE || offset > UINT64_MAX - size - pg)
		return err_set(e, -EINVAL, "image %s: %llu bytes at %llu: out of range", sec,
			       (unsigned long long)size, (unsigned long long)offset);
	/* Zero pages for all of it, the file's bytes over them: what lies
	 * past the file's end reads as zero instead of faulting. */
	if (size) {
		map = mmap(NULL, size + lead, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (map == MAP_FAILED)
			return err_set(e, -errno, "image %s: %s", sec, strerror(errno));
		/* whole pages of the file, never past the anonymous span (a
		 * MAP_FIXED beyond it would replace another mapping) */
		uint64_t span = (size + lead + pg - 1) / pg * pg;
		if ((uint64_t)st.st_size > offset - lead)
			file_part = ((uint64_t)st.st_size - (offset - lead) + pg - 1) / pg * pg;
		if (file_part > span)
			file_part = span;
		if (file_part && mmap(map, file_part, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd,
				      (off_t)(offset - lead)) == MAP_FAILED)
			rc = err_set(e, -errno, "image %s: %s", sec, strerror(errno));
	}
	/* (the overlay of a 2 GiB disk is mostly holes: not read) */
	if (!rc)
		base.known_zero = holes = holes_by_chunk(fd, offset, size, SNAPMEM_CHUNK);
	if (!rc && is->parent) {
		pc = malloc(sizeof(*pc));
		rc = pc ? lineage_view_of(&is->plan->b, &is->plan->up, is->parent, sec, pc, e)
			: err_set(e, -ENOMEM, "out of memory");
		base.parent = rc ? NULL : &pc->v[0];
		rc = rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = snapmem_write_bytes(is->bw, sec, SEC_IMAGE, map ? map + lead : NULL, size, &base,
					 &one, e);
	if (!rc) {
		is->st.chunks += one.chunks;
		is->st.zero_chunks += one.zero_chunks;
		is->st.parent_chunks += one.parent_chunks;
		is->st.stored_bytes += one.stored_bytes;
	}
	if (map)
		munmap(map, size + lead);
	free(pc);
	free(holes);
	return rc;
}

/* 1 when path names the file b was opened from: a save over it must not
 * name it as its parent (the rename replaces it). */
static int same_file(const char *path, const struct bundle *b)
{
	struct stat a, o;

	return !stat(path, &a) && !fstat(b->fd, &o) && a.st_dev == o.st_dev && a.st_ino == o.st_ino;
}

/* The parent a save of this machine names: the bundle it was restored
 * from; when the save replaces that file, the parent of that one (if it
 * has one); none after a boot, with save_flat, or past LINEAGE_MAX. */
static const struct bundle *parent_of_save(const struct vm *vm, const char *path)
{
	const struct origin *o = vm->mem_origin;
	const struct restore_plan *p = o ? o->plan : NULL;

	if (!p || vm->opts.save_flat || p->b.version < 2)
		return NULL;
	if (same_file(path, &p->b))
		return p->up.n ? &p->up.up[0] : NULL;
	return p->up.n < LINEAGE_MAX ? &p->b : NULL;
}

static int write_bundle(struct vm *vm, const char *path, const void *kept, size_t kept_len,
			struct snapmem_stats *st, struct snapmem_stats *disks,
			struct snapmem_stats *images, const struct bundle **parent_out,
			struct err *e)
{
	const struct origin *o = vm->mem_origin;
	const struct bundle *parent = parent_of_save(vm, path);
	struct snapmem_base base = { 0 };
	struct chunked *pc = NULL;
	struct parent_ref ref;
	uint8_t *clean;
	struct bundle_writer bw;
	struct manifest m;
	char *text, name[80];
	int rc;

	/* the parent stays findable where its children are used: in the cache */
	if (parent && lineage_keep(parent, e) && vm->verbose)
		fprintf(stderr, "smolvm: %s\r\n", e->msg);
	*parent_out = parent;

	fill_manifest(vm, &m);
	text = manifest_format(&m);
	if (!text)
		return err_set(e, -ENOMEM, "out of memory");
	rc = bundle_writer_open(&bw, path, e);
	if (rc) {
		free(text);
		return rc;
	}
	rc = bundle_add(&bw, "manifest", SEC_MANIFEST, text, strlen(text), e);
	free(text);
	if (!rc && parent) {
		if (parent == &o->plan->b)
			lineage_ref_of(parent, &ref);
		else /* the one it replaces named it: as it did */
			rc = lineage_parent(&o->plan->b, &ref, e) == 1 ? 0 : -EINVAL;
		if (!rc)
			rc = lineage_write(&bw, &ref, e);
	}
	if (!rc)
		rc = bundle_add(&bw, "lua", SEC_LUA, vm->cfg->script_src, vm->cfg->script_len, e);
	if (!rc && kept_len)
		rc = bundle_add(&bw, "kept", SEC_KEPT, kept, kept_len, e);
	if (!rc)
		rc = add_state(&bw, "vm", SEC_VM, vm_save_fn, vm, &vm->be_ctx, 0, e);
	struct image_saver is = { &bw, o ? o->plan : NULL, parent, { 0 } };
	vm->image_save = image_save;
	vm->image_opaque = &is;
	for (size_t i = 0; !rc && i < vm->ndevs; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ctx.name);
		rc = add_state(&bw, name, SEC_DEVICE, dev_save_fn, &vm->devs[i], &vm->devs[i].ctx, 1,
			       e);
	}
	vm->image_save = NULL;
	vm->image_opaque = NULL;
	*images = is.st;
	for (uint32_t i = 0; !rc && i < vm->ncpus; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = add_state(&bw, name, SEC_CPU, vcpu_save_fn, &vm->vcpus[i], &vm->be_ctx, 0, e);
	}
	clean = rc ? NULL : clean_chunks(vm, e, &rc);
	base.v = o ? &o->v : NULL;
	base.clean = clean;
	if (!rc && parent && parent == &o->plan->b) {
		base.parent = &o->v;
	} else if (!rc && parent) {
		pc = malloc(sizeof(*pc));
		rc = pc ? lineage_view_of(&o->plan->b, &o->plan->up, parent, "memory", pc, e)
			: err_set(e, -ENOMEM, "out of memory");
		base.parent = rc ? NULL : &pc->v[0];
		rc = rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = snapmem_write(&bw, &vm->mem, &base, st, e);
	free(clean);
	free(pc);
	if (!rc)
		rc = disks_save(&bw, vm->cfg, o ? o->plan : NULL, parent, disks, e);
	if (!rc)
		rc = bundle_writer_commit(&bw, e);
	else
		bundle_writer_abort(&bw); /* the previous bundle stays as it was */
	return rc;
}

int snapshot_save(struct vm *vm, const char *path, int then_stop, const void *kept,
		  size_t kept_len, struct err *e)
{
	struct snapmem_stats st = { 0 }, disks = { 0 }, images = { 0 };
	const struct bundle *parent = NULL;
	char disk_text[160] = "", parent_text[600] = "", image_text[160] = "";
	double t0 = clock_ms(), t1;
	int rc;

	rc = check_savable(vm, e);
	if (rc)
		return rc;
	rc = vm_pause(vm, e);
	if (rc)
		return rc;
	t1 = clock_ms();
	rc = write_bundle(vm, path, kept, kept_len, &st, &disks, &images, &parent, e);
	if (images.chunks)
		snprintf(image_text, sizeof(image_text), "; device images: %llu chunks (%llu zero, "
			 "%llu in the parent), %.1f MiB stored", (unsigned long long)images.chunks,
			 (unsigned long long)images.zero_chunks,
			 (unsigned long long)images.parent_chunks, images.stored_bytes / 1048576.0);
	if (disks.chunks)
		snprintf(disk_text, sizeof(disk_text), "; disks: %llu chunks of 1 MiB (%llu zero, "
			 "%llu in the parent), %.1f MiB stored", (unsigned long long)disks.chunks,
			 (unsigned long long)disks.zero_chunks,
			 (unsigned long long)disks.parent_chunks, disks.stored_bytes / 1048576.0);
	if (parent)
		snprintf(parent_text, sizeof(parent_text), "; %llu chunks left in its parent %s",
			 (unsigned long long)st.parent_chunks, parent->path);
	/* Said while the guest is still stopped, so the message sits exactly
	 * between its output before and after the snapshot. */
	if (!rc)
		fprintf(stderr,
			"\r\nsmolvm: saved %s: %llu MiB RAM in %llu chunks (%llu zero, %llu unchanged), "
			"%.1f MiB stored%s%s%s; paused %.1f ms, wrote in %.1f ms\r\n",
			path, (unsigned long long)(vm->mem.size >> 20), (unsigned long long)st.chunks,
			(unsigned long long)st.zero_chunks, (unsigned long long)st.reused_chunks,
			st.stored_bytes / 1048576.0, parent_text, disk_text, image_text,
			clock_ms() - t0, clock_ms() - t1);
	if (!rc && then_stop)
		vm_request_stop(vm, VM_STOP_PACKED, NULL);
	vm_resume(vm);
	return rc ? err_wrap(e, rc, "snapshot %s", path) : 0;
}
