/* boot and pack: a machine built from its script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/loader.h"
#include "machine/vm.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/session.h"

static int replace(char **dst, const char *src)
{
	free(*dst);
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* The command line overrides the script. */
static int apply_overrides(const struct machine_overrides *ov, const struct host_config *hc,
			   struct machine_config *cfg)
{
	cfg->quirk_mode = ov->quirk_mode >= 0 ? (uint32_t)ov->quirk_mode : hc->quirk_mode;
	if (ov->cpus)
		cfg->cpus = ov->cpus;
	if (ov->memory)
		cfg->memory = ov->memory;
	if ((ov->kernel && replace(&cfg->kernel, ov->kernel)) ||
	    (ov->initrd && replace(&cfg->initrd, ov->initrd)) ||
	    (ov->append && replace(&cfg->append, ov->append)) ||
	    (ov->ready && replace(&cfg->ready, ov->ready)) ||
	    replace(&cfg->backend, ov->backend ? ov->backend : hc->backend)) {
		fprintf(stderr, "smolvm: out of memory\n");
		return -ENOMEM;
	}
	return 0;
}

static int boot_or_pack(const char *script, const struct machine_overrides *ov,
			const char *out, const struct session_opts *o, int pack)
{
	struct session ss = { .o = o, .save_to = out };
	struct machine_config cfg = { 0 };
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct vm vm;
	struct err e;
	int status = 1;

	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	if (script_open_file(script, &cfg, &ss.script, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		goto out;
	}
	if (apply_overrides(ov, &hc, &cfg) || session_load_hooks(&ss))
		goto out;
	if (bind_vsock(&cfg, 0, &ss.rt, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		goto out;
	}
	if (pack && !cfg.ready) {
		fprintf(stderr, "smolvm pack: the script sets no ready = \"...\" and no --ready was given\n");
		goto out;
	}
	ss.ready = pack ? cfg.ready : NULL;
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, session_refusal, (void *)&o->verbose);
	for (int restart = 1; restart;) {
		struct vm_opts vo = { .verbose = o->verbose, .mem_fd = -1,
				      .keep_input_open = pack, .events = session_events(&ss) };
		if (vm_create(&vm, &cfg, &set, &vo, &e)) {
			vm_destroy(&vm);
			fprintf(stderr, "smolvm: %s\n", e.msg);
			status = 1;
			break;
		}
		status = session_drive(&ss, &vm, 0);
		if (pack && status == 0 && vm_stop_reason(&vm) != VM_STOP_PACKED) {
			fprintf(stderr, "smolvm pack: the guest stopped before printing \"%s\"\n", cfg.ready);
			status = 1;
		}
		/* reboot = "restart": a fresh machine of the same shape. */
		restart = !pack && cfg.reboot_restart && vm_stop_reason(&vm) == VM_STOP_RESET;
		if (restart && o->verbose)
			fprintf(stderr, "smolvm: the guest rebooted; starting it again\n");
		vm_destroy(&vm);
	}
out:
	plugins_free(&set);
	machine_config_free(&cfg);
	host_config_free(&hc);
	session_free(&ss);
	return status;
}

int session_boot(const char *script, const struct machine_overrides *ov, const char *save_to,
		 const struct session_opts *o)
{
	return boot_or_pack(script, ov, save_to, o, 0);
}

int session_pack(const char *script, const struct machine_overrides *ov, const char *out,
		 const struct session_opts *o)
{
	return boot_or_pack(script, ov, out, o, 1);
}
