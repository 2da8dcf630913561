/* smolvm: the command line. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "machine.h"
#include "plugin.h"
#include "script.h"
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
		"  boot SCRIPT.lua    boot the machine a Lua script declares, console attached\n"
		"  plugins            list the backend and device plugins found, and refusals\n"
		"  help [COMMAND]     this text, or a command's options\n"
		"  version            print the version\n"
		"\n"
		"Machine scripts are documented in docs/machine-scripts.md; the host\n"
		"configuration file and plugin search path in docs/configuration.md.\n");
}

static void usage_boot(FILE *f)
{
	fprintf(f,
		"usage: smolvm boot SCRIPT.lua [options]\n"
		"\n"
		"Boots the machine declared by SCRIPT.lua with the console on this terminal.\n"
		"Options override the script:\n"
		"  -c, --cpus N           number of vCPUs (1-64)\n"
		"  -m, --memory SIZE      guest RAM, e.g. 256M, 1G (a bare number is MiB)\n"
		"  -k, --kernel PATH      kernel: ELF vmlinux or bzImage\n"
		"  -i, --initrd PATH      initial ramdisk\n"
		"  -a, --append ARGS      appended to the kernel command line\n"
		"      --backend NAME     hypervisor backend plugin (default: kvm)\n"
		"      --host-quirks MODE workarounds for software-emulated KVM: auto\n"
		"                         (detect, the default), on or off\n"
		"  -v, --verbose          more messages (twice: unhandled I/O too)\n"
		"\n"
		"On a terminal the console is raw: every key goes to the guest.\n"
		"Press Ctrl-A then x to quit; Ctrl-A Ctrl-A sends a Ctrl-A.\n"
		"With stdin not a terminal, end of input reaches the guest as ^D.\n"
		"\n"
		"Exit status: 0 when the guest reboots (unless the script says\n"
		"reboot = \"restart\") or powers off, or on Ctrl-A x;\n"
		"1 on an error or a triple fault, 128+N on signal N.\n");
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

static int cmd_boot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "backend", required_argument, NULL, 'B' },
		{ "host-quirks", required_argument, NULL, 'Q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cpus = NULL, *memory = NULL, *kernel = NULL, *initrd = NULL;
	const char *append = NULL, *backend = NULL, *quirks = NULL;
	struct machine_config cfg;
	struct host_config hc;
	struct plugin_set set = { 0 };
	struct vm vm;
	struct err e;
	int verbose = 0, c, status = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:m:k:i:a:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cpus = optarg; break;
		case 'm': memory = optarg; break;
		case 'k': kernel = optarg; break;
		case 'i': initrd = optarg; break;
		case 'a': append = optarg; break;
		case 'B': backend = optarg; break;
		case 'Q': quirks = optarg; break;
		case 'v': verbose++; break;
		case 'h': usage_boot(stdout); return 0;
		default: usage_boot(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm boot: expected one machine script\n");
		usage_boot(stderr);
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

	/* Command line over script over host defaults. */
	cfg.quirk_mode = hc.quirk_mode;
	if (cpus) {
		char *end;
		long n = strtol(cpus, &end, 10);
		if (*end || n < 1 || n > 64) {
			fprintf(stderr, "smolvm: --cpus: \"%s\" is not a number from 1 to 64\n", cpus);
			goto out;
		}
		cfg.cpus = (uint32_t)n;
	}
	if (memory && parse_size(memory, &cfg.memory)) {
		fprintf(stderr, "smolvm: --memory: \"%s\" is not a size such as 256M or 1G\n", memory);
		goto out;
	}
	if (quirks && parse_quirk_mode(quirks, &cfg.quirk_mode)) {
		fprintf(stderr, "smolvm: --host-quirks: \"%s\" is not auto, on or off\n", quirks);
		goto out;
	}
	if ((kernel && replace(&cfg.kernel, kernel)) || (initrd && replace(&cfg.initrd, initrd)) ||
	    (append && replace(&cfg.append, append)) ||
	    replace(&cfg.backend, backend ? backend : hc.backend)) {
		fprintf(stderr, "smolvm: out of memory\n");
		goto out;
	}

	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, quiet_refusal, &verbose);
	for (int restart = 1; restart;) {
		if (vm_create(&vm, &cfg, &set, verbose, &e)) {
			vm_destroy(&vm);
			fprintf(stderr, "smolvm: %s\n", e.msg);
			status = 1;
			break;
		}
		if (verbose)
			fprintf(stderr, "smolvm: %u vCPU, %llu MiB, kernel %s%s\nsmolvm: cmdline: %s\n",
				cfg.cpus, (unsigned long long)(cfg.memory >> 20), cfg.kernel,
				vm.quirks ? " (host quirks on)" : "", vm.cmdline);
		status = vm_run(&vm, &e);
		if (status == 1)
			fprintf(stderr, "\r\nsmolvm: %s\n", e.msg);
		/* reboot = "restart": a fresh machine of the same shape. */
		restart = cfg.reboot_restart && vm_stop_reason(&vm) == VM_STOP_RESET;
		if (restart && verbose)
			fprintf(stderr, "smolvm: the guest rebooted; starting it again\n");
		vm_destroy(&vm);
	}
out:
	plugins_free(&set);
	machine_config_free(&cfg);
	host_config_free(&hc);
	return status;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		if (cmd && argc > 2 && !strcmp(argv[2], "boot")) {
			usage_boot(stdout);
			return 0;
		}
		usage(cmd ? stdout : stderr);
		return cmd ? 0 : 2;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("smolvm %s (plugin ABI %d.%d)\n", SMOLVM_VERSION, SMOLVM_ABI_MAJOR,
		       SMOLVM_ABI_MINOR);
		return 0;
	}
	if (!strcmp(cmd, "boot"))
		return cmd_boot(argc - 1, argv + 1);
	if (!strcmp(cmd, "plugins"))
		return cmd_plugins(argc - 1, argv + 1);
	fprintf(stderr, "smolvm: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
