/* boot and pack: a machine built from its script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine/loader.h"
#include "machine/vm.h"
#include "rootfs/rootfs.h"
#include "session/volumes.h"
#include "session/syscalls.h"
#include "session/control.h"
#include "session/host_config.h"
#include "session/session.h"
#include "session/signing.h"

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

/* The default guest's kernel command line (scripts/linux.lua's). */
#define DEFAULT_GUEST_CMDLINE "console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on"

static int append_word(char **cmdline, const char *word)
{
	size_t n = *cmdline ? strlen(*cmdline) : 0;
	char *c = realloc(*cmdline, n + strlen(word) + 2);

	if (!c)
		return -ENOMEM;
	sprintf(c + n, "%s%s", n ? " " : "", word);
	*cmdline = c;
	return 0;
}

/* A script without `kernel` boots the default guest; a root filesystem
 * is built (or found in the cache) and becomes the disk init switches
 * into. */
static int complete_machine(struct session *ss, struct machine_config *cfg,
			    const struct host_config *hc, struct err *e)
{
	char **named[] = { &cfg->kernel, &cfg->initrd };
	for (size_t n = 0; n < 2; n++) {
		char *found;
		if (!*named[n] || strncmp(*named[n], "guest:", 6))
			continue;
		int rc = host_guest_file(hc, *named[n], &found, e);
		if (rc)
			return err_wrap(e, rc, "%s: %s", cfg->script, n ? "initrd" : "kernel");
		free(*named[n]);
		*named[n] = found;
	}
	if (!cfg->kernel) {
		char k[4200], i[4200];
		if (!hc->guest_dir)
			return err_set(e, -ENOENT,
				       "%s: the script names no kernel and there is no default guest "
				       "(`make guest` builds one; SMOLVM_GUEST_DIR or [defaults] guest "
				       "in the host configuration names its directory)", cfg->script);
		snprintf(k, sizeof(k), "%s/vmlinux", hc->guest_dir);
		snprintf(i, sizeof(i), "%s/initramfs.cpio", hc->guest_dir);
		if (replace(&cfg->kernel, k) || (!cfg->initrd && replace(&cfg->initrd, i)) ||
		    (!cfg->cmdline && replace(&cfg->cmdline, DEFAULT_GUEST_CMDLINE)))
			return err_set(e, -ENOMEM, "out of memory");
	}
	if ((cfg->nstart || cfg->ready_when.exec || cfg->ready_when.port) && !ss->rt.vsock)
		return err_set(e, -EINVAL,
			       "%s: start and ready = { exec | port } run through the guest agent, "
			       "which needs a virtio-vsock device: add { type = \"virtio-vsock\" } "
			       "to devices", cfg->script);
	if (cfg->rootfs) {
		struct rootfs_opts ro = { .verbose = ss->o->verbose, .rebuild = ss->o->rebuild };
		char *image = NULL, host[96], id[33];
		int rc = rootfs_build(cfg->rootfs, &ro, &image, id, e);
		if (!rc)
			rc = bind_rootfs(cfg, image, id, &ss->rt, e);
		free(image);
		if (rc)
			return rc;
		snprintf(host, sizeof(host), "smolvm.hostname=%.60s", cfg->name ? cfg->name : "smolvm");
		/* the name only if it is a host name */
		for (const char *p = cfg->name; p && *p; p++)
			if (!(*p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z')))
				host[0] = 0;
		if (append_word(&cfg->cmdline, "smolvm.root=/dev/vda") ||
		    (host[0] && append_word(&cfg->cmdline, host)))
			return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

static int boot_or_pack(const char *script, const struct machine_overrides *ov,
			const char *out, const struct session_opts *o, int pack)
{
	struct session ss = { .o = o, .save_to = out, .trusted = 1 };
	struct machine_config cfg = { 0 };
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct vm vm;
	struct err e;
	int status = 1;

	kept_init(&ss.kept);
	syscalls_prepare(); /* built meanwhile, installed once set up */
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
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, session_refusal, (void *)&o->verbose);
	/* A misspelt option fails now, not after a root filesystem build. */
	if (volumes_add_slots(&cfg, &set, &e) || vm_check_devices(&cfg, &set, &e) || bind_vsock(&cfg, 0, &ss.rt, &e) ||
	    complete_machine(&ss, &cfg, &hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		goto out;
	}
	if (pack && !cfg.ready && !cfg.ready_when.exec && !cfg.ready_when.port &&
	    !cfg.nstart && !cfg.rootfs) {
		fprintf(stderr, "smolvm pack: the script sets no ready = \"...\" and no --ready was given\n");
		goto out;
	}
	ss.ready = pack ? cfg.ready : NULL;
	/* start commands, the ready forms other than text, and every machine
	 * with a root filesystem (ready once its agent answers) */
	ss.has_bringup = cfg.nstart || cfg.ready_when.exec || cfg.ready_when.port || cfg.rootfs;
	ss.bringup = (struct bringup){
		.start = cfg.start, .nstart = cfg.nstart, .ready_text = ss.ready,
		.ready_exec = cfg.ready_when.exec, .ready_port = cfg.ready_when.port,
		.timeout_s = cfg.ready_when.timeout_s ? cfg.ready_when.timeout_s
						      : MACHINE_DEFAULT_READY_TIMEOUT_S,
		.wait_ready = pack };
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
			if (cfg.ready && !ss.has_bringup)
				fprintf(stderr, "smolvm pack: the guest stopped before printing \"%s\"\n",
					cfg.ready);
			else
				fprintf(stderr, "smolvm pack: the guest stopped before it was ready\n");
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

int session_build(const char *script, const struct session_opts *o)
{
	struct rootfs_opts ro = { .verbose = o->verbose, .rebuild = o->rebuild };
	struct machine_config cfg = { 0 };
	struct script *s = NULL;
	char *image = NULL, id[33];
	struct err e;
	int status = 1;

	if (script_open_file(script, &cfg, &s, &e))
		fprintf(stderr, "smolvm: %s\n", e.msg);
	else if (!cfg.rootfs)
		fprintf(stderr, "smolvm build: %s declares no rootfs = { ... } (docs/rootfs.md)\n",
			script);
	else if (rootfs_build(cfg.rootfs, &ro, &image, id, &e))
		fprintf(stderr, "smolvm: %s\n", e.msg);
	else
		status = printf("%s\n", image) < 0;
	free(image);
	script_close(s);
	machine_config_free(&cfg);
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
	uint8_t sk[64];
	struct err e;
	int status;

	/* A key that is not there fails now, not after a long pack. */
	if (o->sign_key) {
		if (key_secret(o->sign_key, sk, &e)) {
			fprintf(stderr, "smolvm pack: --sign: %s\n", e.msg);
			return 1;
		}
		sodium_memzero(sk, sizeof(sk));
	}
	status = boot_or_pack(script, ov, out, o, 1);
	if (!status && o->sign_key)
		status = session_sign(out, o->sign_key, NULL);
	return status;
}
