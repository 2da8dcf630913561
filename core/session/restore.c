/* run and exec: a machine rebuilt from a bundle. The recipe: host
 * configuration, the bundle opened and verified, its own script (and the
 * user's hooks), host resources bound, plugins found, then snapshot_load()
 * builds the machine and applies its state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cache_size.h"
#include "lib/clock.h"
#include "machine/loader.h"
#include "machine/vm.h"
#include "rootfs/rootfs.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/grants.h"
#include "session/session.h"
#include "session/syscalls.h"
#include "session/signing.h"
#include "session/trust.h"
#include "session/volumes.h"
#include "snapshot/disks.h"
#include "snapshot/snapshot.h"

/* What a restore holds on to until the machine is destroyed. */
struct restored {
	struct restore_plan plan;
	struct machine_config cfg;
	struct host_config hc;
	struct plugin_set set;
	int have_plan, have_hc;
};

static void restored_free(struct restored *r)
{
	if (r->have_plan)
		snapshot_close(&r->plan);
	plugins_free(&r->set);
	machine_config_free(&r->cfg);
	if (r->have_hc)
		host_config_free(&r->hc);
}

/* The bundle names its root filesystem image by id: the image of that id
 * in this host's cache, never a path the bundle chose. */
static int bind_image(const char *path, struct restored *r, struct session *ss, struct err *e)
{
	char image[PATH_MAX + 64];

	if (!r->plan.m.rootfs[0]) {
		fprintf(stderr, "smolvm: %s: its script has a root filesystem, but the bundle does "
			"not name its image\n", path);
		return -1;
	}
	if (rootfs_image_path(r->plan.m.rootfs, image, sizeof(image), e)) {
		fprintf(stderr, "smolvm: %s: [machine] rootfs: %s\n", path, e->msg);
		return -1;
	}
	if (access(image, R_OK)) {
		fprintf(stderr, "smolvm: %s: its root filesystem image %s is not in this host's "
			"cache (%s): build it here (smolvm build SCRIPT), or pack the machine "
			"here again\n", path, image, strerror(errno));
		return -1;
	}
	cache_touch_path(image);
	if (bind_rootfs(&r->cfg, image, r->plan.m.rootfs, &ss->rt, e)) {
		fprintf(stderr, "smolvm: %s\n", e->msg);
		return -1;
	}
	return 0;
}

/* Whether the bundle's hooks run: only when this user trusts it (packed
 * here, trust.h, or signed by a trusted key, signing.h) or says --trust;
 * a bundle whose signature does not match is not run at all. Otherwise its script state is closed (it can make no
 * finalizers); --hooks run in a state of their own either way. */
static int trust_bundle(const char *path, const struct bundle *b, const char *named_script,
			struct session *ss, char *script, size_t len)
{
	struct sig_verdict v;
	struct err e;
	int rc = signatures_judge(b, &v, 0, &e);

	if (rc < 0) {
		fprintf(stderr, "smolvm: %s: its signatures: %s\n", path, e.msg);
		return -1;
	}
	if (v.bad) {
		fprintf(stderr, "smolvm: %s: a signature does not match the bundle: it was changed "
			"after it was signed, so it is not run (smolvm verify %s)\n", path, path);
		return -1;
	}
	if (v.trusted && ss->o->verbose)
		fprintf(stderr, "smolvm: %s: signed by %s, a key you trust\n", path, v.who);
	else if (v.unknown && ss->o->verbose)
		fprintf(stderr, "smolvm: %s: signed, but by no key you trust (smolvm verify says "
			"which)\n", path);
	script[0] = 0;
	rc = v.trusted ? 1 : trust_check(path, script, len, &e);
	/* an older record names no script: the manifest's, as packed here */
	if (rc == 1 && !v.trusted && !script[0])
		snprintf(script, len, "%s", named_script);
	if (rc < 0) {
		fprintf(stderr, "smolvm: %s; taking %s as not yours\n", e.msg, path);
		rc = 0;
	}
	ss->trusted = rc;
	if (rc || ss->o->trust)
		return 0;
	if (script_has_hooks(ss->script))
		fprintf(stderr, "smolvm: %s was not packed by you on this host%s: its hooks do not "
			"run (--trust runs them)\n", path,
			v.unknown ? " nor signed by a key you trust" : "");
	script_close(ss->script);
	ss->script = NULL;
	return 0;
}

/* Where the script's relative device paths start: a bundle packed here
 * resolves them where its script was (the trust record knows; bundles
 * older than that name it in their manifest); any other from where the
 * user runs smolvm, never from a path of the machine that packed it. */
static int rebase_script(struct machine_config *cfg, const char *named, const char *recorded,
			 struct err *e)
{
	char cwd[4096], *at;
	const char *base = strrchr(named, '/') ? strrchr(named, '/') + 1 : named;

	if (recorded[0] == '/')
		at = strdup(recorded);
	else if (!getcwd(cwd, sizeof(cwd)))
		return err_set(e, -errno, "the working directory: %s", strerror(errno));
	else if ((at = malloc(strlen(cwd) + strlen(base) + 2)))
		sprintf(at, "%s/%s", cwd, base);
	if (!at)
		return err_set(e, -ENOMEM, "out of memory");
	free(cfg->script);
	cfg->script = at;
	return 0;
}

/* Builds the machine saved in `path` into vm. Prints why on failure. */
static int restore(const char *path, struct restored *r, struct session *ss, int force_vsock,
		   struct vm_opts *vo, struct vm *vm)
{
	int verbose = ss->o->verbose;
	double t0 = clock_ms();
	struct cache_result mem = { .fd = -1 };
	struct err e;

	memset(r, 0, sizeof(*r));
	syscalls_prepare(); /* built meanwhile, installed once set up */
	if (host_config_load(&r->hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	r->have_hc = 1;
	if (snapshot_open(path, &r->plan, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	r->have_plan = 1;
	if (r->plan.kept && kept_decode(&ss->kept, r->plan.kept, r->plan.kept_len, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	/* The bundle's own script, read as if it were still where it was
	 * packed (its relative paths start there). */
	if (script_open(r->plan.m.script, r->plan.lua, r->plan.lua_len, &r->cfg, &ss->script, &e)) {
		fprintf(stderr, "smolvm: %s: its script: %s\n", path, e.msg);
		return -1;
	}
	if (volumes_restore_slots(&r->cfg, &r->plan.m, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	char packed_from[4200];
	e.msg[0] = 0;
	if (trust_bundle(path, &r->plan.b, r->plan.m.script, ss, packed_from,
			 sizeof(packed_from)) ||
	    rebase_script(&r->cfg, r->plan.m.script, packed_from, &e)) {
		if (e.msg[0])
			fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	if (session_load_hooks(ss))
		return -1;
	double disk_ms;
	unsigned unpacked;
	if (disks_bind(&r->plan, &r->cfg, &disk_ms, &unpacked, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	if (verbose && unpacked)
		fprintf(stderr, "smolvm: unpacked %u disk%s of the bundle into the cache in %.1f ms\n",
			unpacked, unpacked == 1 ? "" : "s", disk_ms);
	if (grants_apply(&r->cfg, &ss->o->grants, ss->trusted || ss->o->trust, path, &ss->rt,
			 &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	if (volumes_apply(&r->cfg, ss->o->grants.volumes, ss->o->grants.nvolumes,
			  ss->trusted || ss->o->trust, path, &ss->kept, &ss->volume_script, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	if (r->cfg.rootfs && r->cfg.ndevices && r->cfg.devices[0].from_bundle) {
		char image[4200];
		snprintf(image, sizeof(image), "%s", dev_config_get(&r->cfg.devices[0], "path"));
		if (bind_rootfs(&r->cfg, image, r->plan.m.rootfs, &ss->rt, &e)) {
			fprintf(stderr, "smolvm: %s\n", e.msg);
			return -1;
		}
	} else if (r->cfg.rootfs && bind_image(path, r, ss, &e)) {
		return -1;
	}
	/* an untrusted bundle's socket path is not its to choose */
	if (bind_vsock(&r->cfg, force_vsock || !(ss->trusted || ss->o->trust), &ss->rt, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	r->cfg.quirk_mode = r->hc.quirk_mode;
	plugins_scan(&r->set, r->hc.plugin_dirs, r->hc.nplugin_dirs, session_refusal, &verbose);
	if (grants_bind(&r->cfg, &ss->o->grants, ss->trusted || ss->o->trust, path, &r->set, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -1;
	}
	/* (before any memory is mapped or filled) */
	if (vm_check_devices(&r->cfg, &r->set, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	vo->events = session_events(ss);
	if (snapshot_load(&r->plan, &r->cfg, &r->set, vo, vm, &mem, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	if (verbose && mem.why_eager[0])
		fprintf(stderr, "smolvm: memory not filled on demand: %s\n", mem.why_eager);
	if (verbose)
		fprintf(stderr, "smolvm: restored %s in %.1f ms (memory %s in %.1f ms)\n", path,
			clock_ms() - t0,
			mem.hit ? "mapped from the cache"
			: mem.lazy ? "filled on demand, and into the cache, from now on"
				   : "decompressed into the cache", mem.ms);
	return 0;
}

int session_run(const char *bundle, int pristine, const char *out, const struct session_opts *o)
{
	struct session ss = { .o = o, .save_to = out ? out : pristine ? NULL : bundle };
	struct vm_opts vo = { .verbose = o->verbose, .save_flat = o->flat };
	struct restored r;
	struct vm vm;
	int status = 1;

	kept_init(&ss.kept);
	if (!restore(bundle, &r, &ss, 0, &vo, &vm)) {
		status = session_drive(&ss, &vm, 1);
		vm_destroy(&vm);
	}
	restored_free(&r);
	session_free(&ss);
	return status;
}

int session_exec(const char *bundle, struct exec_job *job, const struct session_opts *o)
{
	struct session ss = { .o = o, .job = job, .save_to = job->keep_to };
	struct vm_opts vo = { .verbose = o->verbose, .detached = 1, .teardown_behind = 1,
			      .save_flat = o->flat };
	struct restored r;
	struct vm vm;
	int status = 1;

	kept_init(&ss.kept);
	if (!restore(bundle, &r, &ss, 1, &vo, &vm)) {
		if (!ss.rt.vsock) {
			fprintf(stderr, "smolvm exec: %s: its machine has no virtio-vsock device, which the "
				"guest agent needs (add { type = \"virtio-vsock\" } to its devices)\n", bundle);
		} else {
			int vs = session_drive(&ss, &vm, 1);
			if (job->done) {
				status = job->status;
				if (job->e.msg[0])
					fprintf(stderr, "smolvm exec: %s\n", job->e.msg);
			} else if (vs == 0) {
				fprintf(stderr, "smolvm exec: the machine stopped before the command ended\n");
			}
			if (vm_stop_reason(&vm) == VM_STOP_SIGNAL)
				status = vs;
			else if (vs != 0)
				status = status ? status : 1;
		}
		vm_destroy(&vm);
	}
	restored_free(&r);
	session_free(&ss);
	return status;
}
