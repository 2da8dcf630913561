/* smolvm: the command line. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "machine.h"
#include "plugin.h"
#include "script.h"
#include "snapmem.h"
#include "snapshot.h"
#include "vm.h"

#ifndef SMOLVM_VERSION
#define SMOLVM_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smolvm <command> [options]\n"
		"\n"
		"commands:\n"
		"  boot SCRIPT.lua            boot the machine a Lua script declares, console attached\n"
		"  pack SCRIPT.lua -o BUNDLE  boot it, wait for its ready line, save a .smolmachine bundle\n"
		"  run BUNDLE                 restore a bundle and resume it where it was saved\n"
		"  inspect BUNDLE             print a bundle's manifest and sections, verify checksums\n"
		"  plugins                    list the backend and device plugins found, and refusals\n"
		"  help [COMMAND]             this text, or a command's options\n"
		"  version                    print the version\n"
		"\n"
		"Machine scripts: docs/machine-scripts.md; bundles: docs/bundle-format.md;\n"
		"host configuration and plugin search path: docs/configuration.md.\n");
}

#define MACHINE_OPTIONS                                                              \
	"Options override the script:\n"                                             \
	"  -c, --cpus N           number of vCPUs (1-64)\n"                           \
	"  -m, --memory SIZE      guest RAM, e.g. 256M, 1G (a bare number is MiB)\n"  \
	"  -k, --kernel PATH      kernel: ELF vmlinux or bzImage\n"                   \
	"  -i, --initrd PATH      initial ramdisk\n"                                  \
	"  -a, --append ARGS      appended to the kernel command line\n"              \
	"      --backend NAME     hypervisor backend plugin (default: kvm)\n"         \
	"      --host-quirks MODE workarounds for software-emulated KVM: auto\n"      \
	"                         (detect, the default), on or off\n"                 \
	"  -v, --verbose          more messages (twice: unhandled I/O too)\n"

#define CONSOLE_HELP                                                                 \
	"On a terminal the console is raw: every key goes to the guest.\n"            \
	"Press Ctrl-A then x to quit; Ctrl-A Ctrl-A sends a Ctrl-A.\n"                \
	"With stdin not a terminal, end of input reaches the guest as ^D.\n"

static void usage_boot(FILE *f)
{
	fprintf(f,
		"usage: smolvm boot SCRIPT.lua [options]\n"
		"\n"
		"Boots the machine declared by SCRIPT.lua with the console on this terminal.\n"
		MACHINE_OPTIONS
		"  -o, --output BUNDLE    where SIGUSR1 saves a snapshot of the running machine\n"
		"\n" CONSOLE_HELP "\n"
		"Exit status: 0 when the guest reboots (unless the script says\n"
		"reboot = \"restart\") or powers off, or on Ctrl-A x;\n"
		"1 on an error or a triple fault, 128+N on signal N.\n");
}

static void usage_pack(FILE *f)
{
	fprintf(f,
		"usage: smolvm pack SCRIPT.lua -o BUNDLE [options]\n"
		"\n"
		"Boots the machine, waits for the first console line containing the script's\n"
		"ready = \"...\" text (or --ready TEXT), saves the machine into BUNDLE (written\n"
		"atomically: an existing BUNDLE is replaced only by a complete new one) and exits.\n"
		MACHINE_OPTIONS
		"  -r, --ready TEXT       console text that means the guest is ready\n"
		"  -o, --output BUNDLE    the .smolmachine file to write (required)\n");
}

static void usage_run(FILE *f)
{
	fprintf(f,
		"usage: smolvm run BUNDLE [options]\n"
		"\n"
		"Restores the machine saved in BUNDLE and resumes it exactly where it was.\n"
		"Its memory is decompressed once into the cache ($SMOLVM_CACHE_DIR, else\n"
		"$XDG_CACHE_HOME/smolvm, else ~/.cache/smolvm); later restores map it.\n"
		"  -p, --pristine         never write BUNDLE (SIGUSR1 then needs -o)\n"
		"  -o, --output BUNDLE    where SIGUSR1 saves the running machine\n"
		"                         (default: back into BUNDLE, unless --pristine)\n"
		"  -v, --verbose          say how long the restore took (twice: more)\n"
		"\n" CONSOLE_HELP "\n"
		"Exit status as for boot.\n");
}

static void usage_inspect(FILE *f)
{
	fprintf(f,
		"usage: smolvm inspect BUNDLE\n"
		"\n"
		"Prints the bundle's manifest and sections and verifies every checksum and\n"
		"that its memory decompresses. Exit status 1 if anything is wrong.\n");
}

static void print_refusal(void *opaque, const char *path, const char *why)
{
	(void)opaque;
	fprintf(stderr, "smolvm: refused %s: %s\n", path, why);
}

static void quiet_refusal(void *opaque, const char *path, const char *why)
{
	int *verbose = opaque;
	if (*verbose)
		print_refusal(NULL, path, why);
}
static int cmd_plugins(int argc, char **argv)
{
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct err e;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("usage: smolvm plugins\n\nLists the plugins on the search path "
		       "(see docs/configuration.md) and why any was refused.\n");
		return 0;
	}
	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, print_refusal, NULL);
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

static int replace(char **dst, const char *src)
{
	free(*dst);
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* Options shared by boot and pack: they override the script. */
struct machine_opts {
	const char *cpus, *memory, *kernel, *initrd, *append, *backend, *quirks, *ready;
	const char *out;
	int verbose;
};

static int apply_opts(const struct machine_opts *o, const struct host_config *hc,
		      struct machine_config *cfg)
{
	cfg->quirk_mode = hc->quirk_mode;
	if (o->cpus) {
		char *end;
		long n = strtol(o->cpus, &end, 10);
		if (*end || n < 1 || n > 64) {
			fprintf(stderr, "smolvm: --cpus: \"%s\" is not a number from 1 to 64\n", o->cpus);
			return -EINVAL;
		}
		cfg->cpus = (uint32_t)n;
	}
	if (o->memory && parse_size(o->memory, &cfg->memory)) {
		fprintf(stderr, "smolvm: --memory: \"%s\" is not a size such as 256M or 1G\n", o->memory);
		return -EINVAL;
	}
	if (o->quirks && parse_quirk_mode(o->quirks, &cfg->quirk_mode)) {
		fprintf(stderr, "smolvm: --host-quirks: \"%s\" is not auto, on or off\n", o->quirks);
		return -EINVAL;
	}
	if ((o->kernel && replace(&cfg->kernel, o->kernel)) ||
	    (o->initrd && replace(&cfg->initrd, o->initrd)) ||
	    (o->append && replace(&cfg->append, o->append)) ||
	    (o->ready && replace(&cfg->ready, o->ready)) ||
	    replace(&cfg->backend, o->backend ? o->backend : hc->backend)) {
		fprintf(stderr, "smolvm: out of memory\n");
		return -ENOMEM;
	}
	return 0;
}

/* Runs a machine until it stops; returns the exit status. */
static int run_machine(struct vm *vm, int verbose)
{
	struct err e;
	int status;

	if (verbose)
		fprintf(stderr, "smolvm: %u vCPU, %llu MiB%s\nsmolvm: cmdline: %s\n",
			vm->cfg->cpus, (unsigned long long)(vm->cfg->memory >> 20),
			vm->quirks ? " (host quirks on)" : "", vm->cmdline);
	status = vm_run(vm, &e);
	if (status == 1)
		fprintf(stderr, "\r\nsmolvm: %s\n", e.msg);
	return status;
}

static int boot_or_pack(int argc, char **argv, int pack)
{
	static const struct option opts[] = {
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "backend", required_argument, NULL, 'B' },
		{ "host-quirks", required_argument, NULL, 'Q' },
		{ "ready", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	void (*help)(FILE *) = pack ? usage_pack : usage_boot;
	struct machine_opts o = { 0 };
	struct machine_config cfg = { 0 };
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct vm vm;
	struct err e;
	int c, status = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:m:k:i:a:r:o:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.cpus = optarg; break;
		case 'm': o.memory = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'i': o.initrd = optarg; break;
		case 'a': o.append = optarg; break;
		case 'B': o.backend = optarg; break;
		case 'Q': o.quirks = optarg; break;
		case 'r': o.ready = optarg; break;
		case 'o': o.out = optarg; break;
		case 'v': o.verbose++; break;
		case 'h': help(stdout); return 0;
		default: help(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm %s: expected one machine script\n", pack ? "pack" : "boot");
		help(stderr);
		return 2;
	}
	if (pack && !o.out) {
		fprintf(stderr, "smolvm pack: -o BUNDLE is required\n");
		return 2;
	}
	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	if (script_load_machine(argv[optind], &cfg, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		host_config_free(&hc);
		return 1;
	}
	if (apply_opts(&o, &hc, &cfg))
		goto out;
	if (pack && !cfg.ready) {
		fprintf(stderr, "smolvm pack: the script sets no ready = \"...\" and no --ready was given\n");
		goto out;
	}
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, quiet_refusal, &o.verbose);
	for (int restart = 1; restart;) {
		struct vm_opts vo = { .verbose = o.verbose, .mem_fd = -1,
				      .ready = pack ? cfg.ready : NULL, .save_to = o.out,
				      .keep_input_open = pack };
		if (vm_create(&vm, &cfg, &set, &vo, &e)) {
			vm_destroy(&vm);
			fprintf(stderr, "smolvm: %s\n", e.msg);
			status = 1;
			break;
		}
		status = run_machine(&vm, o.verbose);
		if (pack && status == 0 && vm_stop_reason(&vm) != VM_STOP_PACKED) {
			fprintf(stderr, "smolvm pack: the guest stopped before printing \"%s\"\n", cfg.ready);
			status = 1;
		}
		/* reboot = "restart": a fresh machine of the same shape. */
		restart = !pack && cfg.reboot_restart && vm_stop_reason(&vm) == VM_STOP_RESET;
		if (restart && o.verbose)
			fprintf(stderr, "smolvm: the guest rebooted; starting it again\n");
		vm_destroy(&vm);
	}
out:
	plugins_free(&set);
	machine_config_free(&cfg);
	host_config_free(&hc);
	return status;
}

static int cmd_boot(int argc, char **argv) { return boot_or_pack(argc, argv, 0); }
static int cmd_pack(int argc, char **argv) { return boot_or_pack(argc, argv, 1); }

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pristine", no_argument, NULL, 'p' },
		{ "output", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double t0 = vm_now_ms();
	const char *out = NULL;
	int pristine = 0, verbose = 0, c, status = 1;
	struct restore_plan plan;
	struct machine_config cfg = { 0 };
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct cache_result mem = { .fd = -1 };
	struct vm vm;
	struct err e;

	optind = 1;
	while ((c = getopt_long(argc, argv, "po:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pristine = 1; break;
		case 'o': out = optarg; break;
		case 'v': verbose++; break;
		case 'h': usage_run(stdout); return 0;
		default: usage_run(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm run: expected one bundle\n");
		usage_run(stderr);
		return 2;
	}
	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	if (snapshot_open(argv[optind], &plan, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		host_config_free(&hc);
		return 1;
	}
	/* The bundle's own script, read as if it were still where it was
	 * packed (its relative paths start there). */
	if (script_load_machine_buffer(plan.m.script, plan.lua, plan.lua_len, &cfg, &e)) {
		fprintf(stderr, "smolvm: %s: its script: %s\n", argv[optind], e.msg);
		goto out;
	}
	cfg.cpus = plan.m.cpus;
	cfg.memory = plan.m.memory;
	cfg.quirk_mode = hc.quirk_mode;
	if (replace(&cfg.backend, plan.m.backend)) {
		fprintf(stderr, "smolvm: out of memory\n");
		goto out;
	}
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, quiet_refusal, &verbose);
	if (snapshot_check_plugins(&plan, &cfg, &set, &e) ||
	    cache_memory(&plan.b, plan.memory, plan.m.memory, &mem, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", argv[optind], e.msg);
		goto out;
	}
	struct vm_opts vo = { .verbose = verbose > 1, .mem_fd = mem.fd, .restore = 1,
			      .save_to = out ? out : pristine ? NULL : argv[optind] };
	if (vm_create(&vm, &cfg, &set, &vo, &e) || snapshot_restore(&vm, &plan, &e)) {
		vm_destroy(&vm);
		fprintf(stderr, "smolvm: %s: %s\n", argv[optind], e.msg);
		goto out;
	}
	if (verbose)
		fprintf(stderr, "smolvm: restored %s in %.1f ms (memory %s in %.1f ms)\n",
			argv[optind], vm_now_ms() - t0,
			mem.hit ? "mapped from the cache" : "decompressed into the cache", mem.ms);
	status = run_machine(&vm, verbose > 1);
	vm_destroy(&vm);
out:
	if (mem.fd >= 0)
		close(mem.fd);
	snapshot_close(&plan);
	plugins_free(&set);
	machine_config_free(&cfg);
	host_config_free(&hc);
	return status;
}

static int cmd_inspect(int argc, char **argv)
{
	struct restore_plan plan;
	const struct bundle_section *man;
	struct err e;
	int rc;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_inspect(stdout);
		return 0;
	}
	if (argc != 2) {
		usage_inspect(stderr);
		return 2;
	}
	if (snapshot_open(argv[1], &plan, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	printf("%s: smolvm bundle, format %d, %llu bytes\n\n", argv[1], BUNDLE_VERSION,
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

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
		void (*help)(FILE *);
	} cmds[] = {
		{ "boot", cmd_boot, usage_boot },
		{ "pack", cmd_pack, usage_pack },
		{ "run", cmd_run, usage_run },
		{ "inspect", cmd_inspect, usage_inspect },
		{ "plugins", cmd_plugins, NULL },
	};
	const char *cmd = argc > 1 ? argv[1] : NULL;

	/* A reader of the console going away (smolvm ... | head) must not
	 * kill the machine mid-write: writes then just fail. */
	signal(SIGPIPE, SIG_IGN);
	if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		for (size_t i = 0; cmd && argc > 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			if (!strcmp(argv[2], cmds[i].name) && cmds[i].help) {
				cmds[i].help(stdout);
				return 0;
			}
		}
		usage(cmd ? stdout : stderr);
		return cmd ? 0 : 2;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("smolvm %s (plugin ABI %d.%d)\n", SMOLVM_VERSION, SMOLVM_ABI_MAJOR,
		       SMOLVM_ABI_MINOR);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmd, cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "smolvm: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
