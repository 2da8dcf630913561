#include "snapshot/snapshot.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/snapmem.h"
#include "machine/state.h"
#include "machine/vm.h"


/* ---- save ------------------------------------------------------------------ */

typedef int (*save_fn)(void *obj, struct smolvm_state_writer *w);

/* One state section: whatever `fn` writes for `obj`. */
static int add_state(struct bundle_writer *bw, const char *name, uint32_t type,
		     save_fn fn, void *obj, struct err *e)
{
	struct smolvm_state_writer w;
	int rc;

	state_writer_init(&w);
	host_clear_error();
	rc = fn(obj, &w);
	if (!rc && w.failed)
		rc = w.failed;
	if (rc < 0)
		rc = err_set(e, rc, "%s: cannot save state: %s", name,
			     host_last_error());
	else
		rc = bundle_add(bw, name, type, w.buf, w.len, e);
	state_writer_free(&w);
	return rc;
}

static void fill_manifest(struct vm *vm, struct manifest *m)
{
	const struct machine_config *cfg = vm->cfg;
	char abs[PATH_MAX];
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
	snprintf(m->script, sizeof(m->script), "%s",
		 realpath(cfg->script, abs) ? abs : cfg->script);
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

static int write_bundle(struct vm *vm, const char *path, struct snapmem_stats *st,
			struct err *e)
{
	struct bundle_writer bw;
	struct manifest m;
	char *text, name[80];
	int rc;

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
	if (!rc)
		rc = bundle_add(&bw, "lua", SEC_LUA, vm->cfg->script_src, vm->cfg->script_len, e);
	if (!rc)
		rc = add_state(&bw, "vm", SEC_VM, vm_save_fn, vm, e);
	for (size_t i = 0; !rc && i < vm->ndevs; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ctx.name);
		rc = add_state(&bw, name, SEC_DEVICE, dev_save_fn, &vm->devs[i], e);
	}
	for (uint32_t i = 0; !rc && i < vm->ncpus; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = add_state(&bw, name, SEC_CPU, vcpu_save_fn, &vm->vcpus[i], e);
	}
	if (!rc)
		rc = snapmem_write(&bw, &vm->mem, st, e);
	if (!rc)
		rc = bundle_writer_commit(&bw, e);
	else
		bundle_writer_abort(&bw); /* the previous bundle stays as it was */
	return rc;
}

int snapshot_save(struct vm *vm, const char *path, int then_stop, struct err *e)
{
	struct snapmem_stats st = { 0 };
	double t0 = vm_now_ms(), t1;
	int rc;

	rc = check_savable(vm, e);
	if (rc)
		return rc;
	rc = vm_pause(vm, e);
	if (rc)
		return rc;
	t1 = vm_now_ms();
	rc = write_bundle(vm, path, &st, e);
	/* Said while the guest is still stopped, so the message sits exactly
	 * between its output before and after the snapshot. */
	if (!rc)
		fprintf(stderr,
			"\r\nsmolvm: saved %s: %llu MiB RAM in %llu chunks (%llu zero), %.1f MiB stored; "
			"paused %.1f ms, wrote in %.1f ms\r\n",
			path, (unsigned long long)(vm->mem.size >> 20), (unsigned long long)st.chunks,
			(unsigned long long)st.zero_chunks, st.stored_bytes / 1048576.0,
			vm_now_ms() - t0, vm_now_ms() - t1);
	if (!rc && then_stop)
		vm_request_stop(vm, VM_STOP_PACKED, NULL);
	vm_resume(vm);
	return rc ? err_wrap(e, rc, "snapshot %s", path) : 0;
}

/* ---- restore --------------------------------------------------------------- */

int snapshot_open(const char *path, struct restore_plan *p, struct err *e)
{
	const struct bundle_section *man, *lua;
	const uint8_t *data;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = bundle_open(&p->b, path, e);
	if (rc)
		return rc;
	man = bundle_find(&p->b, "manifest");
	lua = bundle_find(&p->b, "lua");
	p->memory = bundle_find(&p->b, "memory");
	if (!man || !lua || !p->memory || !bundle_find(&p->b, "vm")) {
		snapshot_close(p);
		return err_set(e, -EBADMSG, "%s: missing a manifest, lua, vm or memory section", path);
	}
	rc = bundle_section_data(&p->b, man, &data, e);
	if (!rc)
		rc = manifest_parse((const char *)data, man->size, &p->m, e);
	if (!rc)
		rc = bundle_section_data(&p->b, lua, &data, e);
	if (rc) {
		snapshot_close(p);
		return err_wrap(e, rc, "%s", path);
	}
	p->lua = (const char *)data;
	p->lua_len = lua->size;
	/* Every small section now; memory is verified as it is read. */
	for (size_t i = 0; i < p->b.n; i++) {
		const struct bundle_section *s = &p->b.secs[i];
		if (s->type == SEC_MEMORY)
			continue;
		rc = bundle_section_data(&p->b, s, &data, e);
		if (rc) {
			snapshot_close(p);
			return rc;
		}
	}
	if (strcmp(p->m.arch, "x86_64")) {
		snapshot_close(p);
		return err_set(e, -ENOTSUP, "%s: a %s machine; this host runs x86_64", path, p->m.arch);
	}
	if (p->m.page_size && p->m.page_size != (uint32_t)sysconf(_SC_PAGESIZE)) {
		snapshot_close(p);
		return err_set(e, -ENOTSUP, "%s: saved with %u-byte pages, this host uses %ld",
			       path, p->m.page_size, sysconf(_SC_PAGESIZE));
	}
	return 0;
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

static int apply_state(const struct restore_plan *p, const char *name, restore_fn fn,
		       void *obj, uint32_t version, struct err *e)
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
	host_clear_error();
	rc = fn(obj, &r, version);
	if (rc < 0)
		rc = err_set(e, rc, "%s: cannot restore: %s", name, host_last_error());
	else
		rc = state_reader_check(&r, e);
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

int snapshot_restore(struct vm *vm, const struct restore_plan *p, struct err *e)
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
	rc = apply_state(p, "vm", vm_restore_fn, vm, 0, e);
	for (uint32_t i = 0; !rc && i < vm->ncpus; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = apply_state(p, name, vcpu_restore_fn, &vm->vcpus[i], 0, e);
	}
	for (size_t i = 0; !rc && i < vm->ndevs; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ctx.name);
		rc = apply_state(p, name, dev_restore_fn, &vm->devs[i], p->m.devs[i].state_version, e);
	}
	return rc;
}

void snapshot_close(struct restore_plan *p)
{
	bundle_close(&p->b);
	memset(p, 0, sizeof(*p));
}
