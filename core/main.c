/* smolvm: the command line. Each command parses its options and hands
 * them to its recipe in session/. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <smolvm/plugin.h>

#include "lib/cache_size.h"
#include "lib/dirs.h"
#include "machine/config.h"
#include "machine/loader.h"
#include "machine/options.h"
#include "session/distribute.h"
#include "session/host_config.h"
#include "session/session.h"
#include "session/signing.h"


static void usage(FILE *f)
{
	fprintf(f,
		"usage: smolvm <command> [options]\n"
		"\n"
		"commands:\n"
		"  boot SCRIPT.lua            boot the machine a Lua script declares, console attached\n"
		"  pack SCRIPT.lua -o BUNDLE  boot it, start its services, save it once ready\n"
		"  build SCRIPT.lua           build the script's root filesystem (or find it cached)\n"
		"  run BUNDLE                 restore a bundle and resume it where it was saved\n"
		"  exec BUNDLE -- CMD...      restore a bundle, run CMD in the guest, exit with its status\n"
		"  inspect BUNDLE             print a bundle's manifest and sections, verify its hashes\n"
		"  sign BUNDLE                sign a bundle with your key (Ed25519)\n"
		"  verify BUNDLE              check a bundle's hashes and signatures\n"
		"  flatten BUNDLE -o OUT      one self-contained bundle from a child and its parents\n"
		"  push BUNDLE REF            put a bundle in an OCI registry (HOST/NAME:TAG)\n"
		"  pull REF -o BUNDLE         get a bundle from an OCI registry, verified\n"
		"  key generate|list|export|trust|untrust   your signing keys, keys you trust\n"
		"  plugins                    list the backend and device plugins found, and refusals\n"
		"  plugins --options NAME     the options a device plugin takes\n"
		"  cache list|prune           show the cache, or trim it (least recently used first)\n"
		"  help [COMMAND]             this text, or a command's options\n"
		"  version                    print the version\n"
		"\n"
		"Machine scripts: docs/machine-scripts.md; root filesystems: docs/rootfs.md;\n"
		"bundles: docs/bundle-format.md; registries: docs/registry.md;\n"
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
	VERBOSE_OPTION                                                               \
	"      --rebuild          build the script's root filesystem afresh, even\n"  \
	"                         when the cache holds it\n"                          \
	HOOK_OPTIONS
/* run and exec: what a save of a restored machine holds. */
#define FLAT_OPTION                                                                  \
	"      --flat             save all of the machine: by default a save holds only\n" \
	"                         what changed since BUNDLE and names it as its parent\n" \
	"                         (found next to the save or in the cache); a save\n"   \
	"                         that replaces BUNDLE names BUNDLE's parent, if any\n"
#define VERBOSE_OPTION                                                               \
	"  -v, --verbose          say what smolvm does and how long it takes, and the\n" \
	"                         devices' INFO messages (twice: their DEBUG messages\n" \
	"                         and unhandled guest I/O too)\n"
#define HOOK_OPTIONS                                                                 \
	"      --hooks FILE       Lua hooks replacing the script's of the same name\n" \
	"      --var KEY=VALUE    seen by hooks as vm.vars.KEY (repeatable)\n"

#define TRUST_OPTIONS                                                                \
	"      --volume HOSTDIR:GUESTDIR[:ro]  share HOSTDIR with the guest at GUESTDIR\n" \
	"                         (9p, mounted by the guest agent; :ro read-only;\n"  \
	"                         repeatable; a machine saved with one needs it again)\n" \
	"Host resources of a bundle you did not pack here (docs/security.md):\n"      \
	"      --disk NAME=PATH[:ro]  the host file behind its disk NAME (repeatable)\n" \
	"      --bind DEV.OPTION=PATH  the host file behind a file option of device\n"  \
	"                         DEV (tally0.log=out.txt; relative to here; repeatable)\n" \
	"      --publish HOSTPORT:GUESTPORT  open 127.0.0.1:HOSTPORT to the guest's\n"  \
	"                         GUESTPORT (repeatable; replaces the bundle's)\n"     \
	"      --net none|nat|nat+host  its network: nothing outside, the outside\n"  \
	"                         (the default), or also the host's loopback\n"        \
	"      --trust            run its hooks and use the host resources its script\n" \
	"                         names, as for a bundle you packed (only for bundles\n" \
	"                         you would run as a program)\n" \
	"BUNDLE may be a registry reference (HOST/NAME:TAG, docs/registry.md): what\n" \
	"the cache lacks is pulled and verified first; a pulled bundle is trusted\n" \
	"only when a key you trust signed it, and is never written (SIGUSR1 and\n" \
	"--keep need -o).\n" \
	"      --insecure         reach the registry over plain HTTP (a local one)\n"

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
		"Builds the script's root filesystem (or finds it in the cache), boots the\n"
		"machine, runs its start commands in the guest, waits until it is ready (the\n"
		"script's ready: console text, or --ready TEXT; a guest command that exits 0;\n"
		"a TCP port the guest listens on; without one, a machine with a root file system\n"
		"is ready once its start commands are done), saves the machine into BUNDLE\n"
		"(written atomically: an existing BUNDLE is replaced only by a complete new one)\n"
		"and exits. A pack that is not ready in time fails with the last console lines.\n"
		MACHINE_OPTIONS
		"  -r, --ready TEXT       console text that means the guest is ready\n"
		"  -o, --output BUNDLE    the .smolmachine file to write (required)\n"
		"      --sign KEY         sign BUNDLE with your key KEY once written\n"
		"                         (smolvm sign)\n");
}

static void usage_run(FILE *f)
{
	fprintf(f,
		"usage: smolvm run BUNDLE [options]\n"
		"\n"
		"Restores the machine saved in BUNDLE and resumes it exactly where it was.\n"
		"The first restore fills its memory on demand and into the cache\n"
		"($SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else ~/.cache/smolvm);\n"
		"later restores map it.\n"
		"  -p, --pristine         never write BUNDLE (SIGUSR1 then needs -o)\n"
		"  -o, --output BUNDLE    where SIGUSR1 saves the running machine\n"
		"                         (default: back into BUNDLE, unless --pristine)\n"
		FLAT_OPTION
		VERBOSE_OPTION
		HOOK_OPTIONS
		TRUST_OPTIONS
		"\n" CONSOLE_HELP "\n"
		"The bundle's hooks run again when you trust it (you packed it, or saved it\n"
		"from one you trust, on this host; or --trust): after_restore once the\n"
		"machine runs (after the guest agent, if any, got a fresh RNG seed and the\n"
		"clock), on_console, before_snapshot, on_exit. Exit status as for boot.\n");
}

static void usage_exec(FILE *f)
{
	fprintf(f,
		"usage: smolvm exec BUNDLE [options] -- COMMAND [ARGS...]\n"
		"\n"
		"Restores BUNDLE (never writing it), runs COMMAND in the guest through its\n"
		"agent (the machine needs a virtio-vsock device and smolvm-agent, as the\n"
		"default guest has), streams this process's stdin, stdout and stderr, and\n"
		"throws the machine away. The guest's console is not shown (-v: on stderr).\n"
		"  -i, --copy-in HOST:GUEST   copy a file or directory in before COMMAND (links\n"
		"                         in it go in as links, never followed)\n"
		"  -O, --copy-out GUEST:HOST  copy a file out after COMMAND\n"
		"                         (both repeatable)\n"
		"  -e, --env KEY=VALUE    environment of COMMAND (repeatable)\n"
		"  -C, --cwd DIR          working directory of COMMAND (default /)\n"
		"  -t, --timeout SECONDS  bound the whole exec, copies included: COMMAND is\n"
		"                         killed when the time is up (exit status 124) and\n"
		"                         nothing is copied out (without it: COMMAND runs as\n"
		"                         long as it takes, each copy phase gets 600 s)\n"
		"      --copy-out-max SIZE  the most one copy-out takes from the guest\n"
		"                         (default 1G; a bare number is MiB, or B, K, M, G);\n"
		"                         beyond it nothing is written\n"
		"  -k, --keep             save the machine afterwards (needs -o)\n"
		"  -o, --output BUNDLE    where --keep saves it\n"
		FLAT_OPTION
		VERBOSE_OPTION
		"                         (exec: the guest console on stderr too)\n"
		HOOK_OPTIONS
		TRUST_OPTIONS
		"\n"
		"Exit status: COMMAND's, or 128+N if signal N killed it; 124 after a\n"
		"timeout; 127 if COMMAND was not found, 126 if it could not run; 1 if the\n"
		"machine or its agent failed (with a message saying why).\n");
}

static void usage_inspect(FILE *f)
{
	fprintf(f,
		"usage: smolvm inspect BUNDLE [--json]\n"
		"\n"
		"Prints the bundle's manifest; whether you trust it, its hooks and what it\n"
		"asks of the host (disks, ports, sockets: docs/security.md); its sections;\n"
		"and verifies every checksum and that its memory and disks decompress. Exit\n"
		"status 1 if anything is wrong.\n"
		"      --json             the same facts as one JSON object: manifest, trust\n"
		"                         and signatures, memory and disks (size, stored\n"
		"                         bytes, chunks), sections, ok\n");
}

/* The end of every machine command's long options. */
#define SESSION_LONG_OPTIONS                                                     \
	{ "verbose", no_argument, NULL, 'v' }, { "hooks", required_argument, NULL, 'H' }, \
	{ "var", required_argument, NULL, 'V' }, { "help", no_argument, NULL, 'h' },     \
	{ NULL, 0, NULL, 0 }

/* run and exec: what a restored machine may use of the host. */
#define GRANT_LONG_OPTIONS                                                                \
	{ "trust", no_argument, NULL, 'T' }, { "disk", required_argument, NULL, 'D' },  \
	{ "publish", required_argument, NULL, 'P' }, { "net", required_argument, NULL, 'N' }, \
	{ "bind", required_argument, NULL, 'B' }, { "flat", no_argument, NULL, 'F' },   \
	{ "insecure", no_argument, NULL, 'X' }, { "volume", required_argument, NULL, 'W' }

struct strv {
	char **v;
	size_t n;
};

/* --disk, --publish, --bind and --volume values (the process's lifetime). */
static struct strv disks, publish, binds, volumes;
/* --insecure: a registry reference is reached over plain HTTP */
static int insecure_registry;

static int strv_add(struct strv *s, char *x)
{
	char **nv = realloc(s->v, (s->n + 2) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	s->v = nv;
	s->v[s->n++] = x;
	s->v[s->n] = NULL;
	return 0;
}

static int check_var(const char *opt, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv) {
		fprintf(stderr, "smolvm: %s: \"%s\" is not KEY=VALUE\n", opt, kv);
		return -EINVAL;
	}
	return 0;
}

/* --hooks, --var, -v: returns 1 when `c` was one of them, -1 on a bad
 * value (said), 0 otherwise. */
static int session_option(int c, struct session_opts *o, struct strv *vars)
{
	switch (c) {
	case 'v': o->verbose++; return 1;
	case 'H': o->hooks_path = optarg; return 1;
	case 'T': o->trust = 1; return 1;
	case 'F': o->flat = 1; return 1;
	case 'X': insecure_registry = 1; return 1;
	case 'D':
	case 'P':
	case 'B': {
		struct err e;
		struct strv *l = c == 'D' ? &disks : c == 'P' ? &publish : &binds;
		int rc = c == 'D' ? grant_check_disk(optarg, &e)
			 : c == 'P' ? grant_check_publish(optarg, &e) : grant_check_bind(optarg, &e);
		if (rc) {
			fprintf(stderr, "smolvm: %s\n", e.msg);
			return -1;
		}
		if (strv_add(l, optarg))
			return -1;
		if (c == 'D') {
			o->grants.disks = (const char **)l->v;
			o->grants.ndisks = l->n;
		} else if (c == 'P') {
			o->grants.publish = (const char **)l->v;
			o->grants.npublish = l->n;
		} else {
			o->grants.binds = (const char **)l->v;
			o->grants.nbinds = l->n;
		}
		return 1;
	}
	case 'W': {
		struct err e;
		if (grant_check_volume(optarg, &e)) {
			fprintf(stderr, "smolvm: %s\n", e.msg);
			return -1;
		}
		if (strv_add(&volumes, optarg))
			return -1;
		o->grants.volumes = (const char **)volumes.v;
		o->grants.nvolumes = volumes.n;
		return 1;
	}
	case 'N': {
		struct err e;
		if (grant_check_net(optarg, &e)) {
			fprintf(stderr, "smolvm: %s\n", e.msg);
			return -1;
		}
		o->grants.net = optarg;
		return 1;
	}
	case 'V':
		if (check_var("--var", optarg) || strv_add(vars, optarg))
			return -1;
		o->vars = vars->v;
		return 1;
	default: return 0;
	}
}

static void usage_plugins(FILE *f)
{
	fprintf(f,
		"usage: smolvm plugins [--options NAME]\n"
		"\n"
		"Lists the plugins on the search path (see docs/configuration.md) and why\n"
		"any was refused.\n"
		"      --options NAME     the options device plugin NAME takes in a machine\n"
		"                         script: name, type, default, whether required, and\n"
		"                         what it does (or that it declares none)\n");
}

static void ignore_refusal(void *opaque, const char *path, const char *why)
{
	(void)opaque;
	(void)path;
	(void)why;
}

/* Column width for one of the options' texts. */
static int width(const struct smolvm_option *o, int col, int min)
{
	int w = min;

	for (size_t i = 0; i < OPTIONS_MAX && o[i].name; i++) {
		const char *s = col == 0 ? o[i].name
				: col == 1 ? options_type_name(o[i].type)
				: (o[i].flags & SMOLVM_OPT_REQUIRED) ? "required"
				: o[i].default_text ? o[i].default_text : "-";
		int n = (int)strlen(s) + (col == 1 && (o[i].flags & SMOLVM_OPT_ONE_OR_LIST) ? 9 : 0);
		if (n > w)
			w = n;
	}
	return w;
}

/* smolvm plugins --options NAME: what a device plugin declares. */
static int plugin_options(const char *name)
{
	struct host_config hc;
	struct plugin_set set = { 0 };
	const struct plugin *p;
	const struct smolvm_option *o;
	struct err e;
	int rc = 1;

	if (host_config_load(&hc, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	plugins_scan(&set, hc.plugin_dirs, hc.nplugin_dirs, ignore_refusal, NULL);
	p = plugins_find(&set, name, 0);
	if (!p) {
		fprintf(stderr, "smolvm plugins: no plugin \"%s\" on the search path (`smolvm "
			"plugins` lists them, and why any was refused)\n", name);
		goto out;
	}
	rc = 0;
	o = p->desc.kind == SMOLVM_PLUGIN_DEVICE ? p->ops.dev.options : NULL;
	printf("%s %s (%s plugin, ABI %u.%u): %s\n", p->desc.name, p->desc.version,
	       plugin_kind_name(p->desc.kind), p->desc.abi_major, p->desc.abi_minor,
	       p->desc.summary);
	if (p->desc.kind != SMOLVM_PLUGIN_DEVICE) {
		printf("a backend plugin: it takes no device options\n");
	} else if (!o) {
		printf("declares no options: its devices' options are not checked, the plugin "
		       "reads what it wants\n");
	} else if (!o[0].name) {
		printf("takes no options\n");
	} else {
		int wn = width(o, 0, 6), wt = width(o, 1, 4), wd = width(o, 2, 7);
		printf("\n%-*s  %-*s  %-*s  %s\n", wn, "OPTION", wt, "TYPE", wd, "DEFAULT", "HELP");
		for (size_t i = 0; i < OPTIONS_MAX && o[i].name; i++) {
			char type[32];
			snprintf(type, sizeof(type), "%s%s", options_type_name(o[i].type),
				 (o[i].flags & SMOLVM_OPT_ONE_OR_LIST) ? " (or one)" : "");
			printf("%-*s  %-*s  %-*s  %s\n", wn, o[i].name, wt, type, wd,
			       (o[i].flags & SMOLVM_OPT_REQUIRED) ? "required"
			       : o[i].default_text ? o[i].default_text : "-",
			       o[i].help ? o[i].help : "");
		}
	}
out:
	plugins_free(&set);
	host_config_free(&hc);
	return rc;
}

static int cmd_plugins(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "options", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'O': name = optarg; break;
		case 'h': usage_plugins(stdout); return 0;
		default: usage_plugins(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "smolvm plugins: unexpected \"%s\"\n", argv[optind]);
		usage_plugins(stderr);
		return 2;
	}
	return name ? plugin_options(name) : session_plugins();
}

/* Checks the values of the options that override a script. */
static int parse_overrides(struct machine_overrides *ov, const char *cpus, const char *memory,
			   const char *quirks)
{
	ov->quirk_mode = -1;
	if (cpus) {
		char *end;
		long n = strtol(cpus, &end, 10);
		if (*end || n < 1 || n > MACHINE_MAX_CPUS) {
			fprintf(stderr, "smolvm: --cpus: \"%s\" is not a number from 1 to %d\n", cpus,
				MACHINE_MAX_CPUS);
			return -EINVAL;
		}
		ov->cpus = (uint32_t)n;
	}
	if (memory && (parse_size(memory, &ov->memory) || !ov->memory)) {
		fprintf(stderr, "smolvm: --memory: \"%s\" is not a size such as 256M or 1G\n", memory);
		return -EINVAL;
	}
	if (quirks) {
		uint32_t mode;
		if (parse_quirk_mode(quirks, &mode)) {
			fprintf(stderr, "smolvm: --host-quirks: \"%s\" is not auto, on or off\n", quirks);
			return -EINVAL;
		}
		ov->quirk_mode = (int)mode;
	}
	return 0;
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
		{ "rebuild", no_argument, NULL, 'R' },
		{ "sign", required_argument, NULL, 'S' },
		SESSION_LONG_OPTIONS,
	};
	void (*help)(FILE *) = pack ? usage_pack : usage_boot;
	struct machine_overrides ov = { 0 };
	struct session_opts so = { 0 };
	struct strv vars = { 0 };
	const char *cpus = NULL, *memory = NULL, *quirks = NULL, *out = NULL;
	int c, status = 2;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:m:k:i:a:r:o:vh", opts, NULL)) != -1) {
		int s = session_option(c, &so, &vars);
		if (s < 0)
			goto out;
		if (s)
			continue;
		switch (c) {
		case 'c': cpus = optarg; break;
		case 'm': memory = optarg; break;
		case 'k': ov.kernel = optarg; break;
		case 'i': ov.initrd = optarg; break;
		case 'a': ov.append = optarg; break;
		case 'B': ov.backend = optarg; break;
		case 'Q': quirks = optarg; break;
		case 'r': ov.ready = optarg; break;
		case 'o': out = optarg; break;
		case 'R': so.rebuild = 1; break;
		case 'S':
			if (!pack) {
				help(stderr);
				goto out;
			}
			so.sign_key = optarg;
			break;
		case 'h': help(stdout); status = 0; goto out;
		default: help(stderr); goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm %s: expected one machine script\n", pack ? "pack" : "boot");
		help(stderr);
		goto out;
	}
	if (pack && !out) {
		fprintf(stderr, "smolvm pack: -o BUNDLE is required\n");
		goto out;
	}
	status = 1;
	if (parse_overrides(&ov, cpus, memory, quirks))
		goto out;
	status = pack ? session_pack(argv[optind], &ov, out, &so)
		      : session_boot(argv[optind], &ov, out, &so);
out:
	free(vars.v);
	return status;
}

static int cmd_boot(int argc, char **argv) { return boot_or_pack(argc, argv, 0); }
static int cmd_pack(int argc, char **argv) { return boot_or_pack(argc, argv, 1); }

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pristine", no_argument, NULL, 'p' },
		GRANT_LONG_OPTIONS,
		{ "output", required_argument, NULL, 'o' },
		SESSION_LONG_OPTIONS,
	};
	struct session_opts so = { 0 };
	struct strv vars = { 0 };
	const char *out = NULL;
	int pristine = 0, c, status = 2;

	optind = 1;
	while ((c = getopt_long(argc, argv, "po:vh", opts, NULL)) != -1) {
		int s = session_option(c, &so, &vars);
		if (s < 0)
			goto out;
		if (s)
			continue;
		switch (c) {
		case 'p': pristine = 1; break;
		case 'o': out = optarg; break;
		case 'h': usage_run(stdout); status = 0; goto out;
		default: usage_run(stderr); goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm run: expected one bundle\n");
		usage_run(stderr);
		goto out;
	}
	char pulled[4200];
	int is_ref = session_bundle_arg(argv[optind], insecure_registry, pulled, sizeof(pulled));
	if (is_ref < 0) {
		status = 1;
		goto out;
	}
	/* a pulled bundle in the cache is never written */
	status = session_run(pulled, pristine || is_ref, out, &so);
out:
	free(vars.v);
	return status;
}

/* HOST:GUEST (or GUEST:HOST) split at the first colon. */
static int add_copy(struct exec_copy **v, size_t *n, char *arg, int host_first)
{
	char *colon = strchr(arg, ':');
	struct exec_copy *nv;

	if (!colon || colon == arg || !colon[1]) {
		fprintf(stderr, "smolvm exec: \"%s\" is not %s\n", arg,
			host_first ? "HOST:GUEST" : "GUEST:HOST");
		return -EINVAL;
	}
	*colon = 0;
	nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n].host = host_first ? arg : colon + 1;
	nv[*n].guest = host_first ? colon + 1 : arg;
	(*n)++;
	return 0;
}

static int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "copy-in", required_argument, NULL, 'i' },
		{ "copy-out", required_argument, NULL, 'O' },
		{ "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'C' },
		{ "timeout", required_argument, NULL, 't' },
		{ "copy-out-max", required_argument, NULL, 'M' },
		GRANT_LONG_OPTIONS,
		{ "keep", no_argument, NULL, 'k' },
		{ "output", required_argument, NULL, 'o' },
		SESSION_LONG_OPTIONS,
	};
	struct exec_job job = { 0 };
	struct strv env = { 0 }, vars = { 0 };
	struct session_opts so = { 0 };
	const char *bundle = NULL;
	int keep = 0, dd = argc, c, status = 2;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			dd = i;
			break;
		}
	optind = 1;
	while ((c = getopt_long(dd, argv, "+i:O:e:C:t:ko:vh", opts, NULL)) != -1 ||
	       (optind < dd && !bundle && (bundle = argv[optind++]))) {
		if (c == -1)
			continue; /* the bundle; options may follow it */
		int s = session_option(c, &so, &vars);
		if (s < 0)
			goto out;
		if (s)
			continue;
		switch (c) {
		case 'i':
			if (add_copy(&job.copy_in, &job.ncopy_in, optarg, 1))
				goto out;
			break;
		case 'O':
			if (add_copy(&job.copy_out, &job.ncopy_out, optarg, 0))
				goto out;
			break;
		case 'e':
			if (check_var("--env", optarg) || strv_add(&env, optarg))
				goto out;
			break;
		case 'C': job.cwd = optarg; break;
		case 't': {
			char *end;
			long t = strtol(optarg, &end, 10);
			if (*end || t < 1 || t > 86400 * 7) {
				fprintf(stderr, "smolvm exec: --timeout: \"%s\" is not a number of seconds\n", optarg);
				goto out;
			}
			job.timeout_s = (int)t;
			break;
		}
		case 'M':
			if (parse_size(optarg, &job.copy_out_max) || !job.copy_out_max) {
				fprintf(stderr, "smolvm exec: --copy-out-max: \"%s\" is not a size "
					"(MiB, or with B, K, M or G)\n", optarg);
				goto out;
			}
			break;
		case 'k': keep = 1; break;
		case 'o': job.keep_to = optarg; break;
		case 'h': usage_exec(stdout); status = 0; goto out;
		default: usage_exec(stderr); goto out;
		}
	}
	if (!bundle || optind != dd || dd + 1 >= argc) {
		fprintf(stderr, "smolvm exec: expected BUNDLE -- COMMAND [ARGS...]\n");
		usage_exec(stderr);
		goto out;
	}
	if (keep != !!job.keep_to) {
		fprintf(stderr, "smolvm exec: --keep and -o BUNDLE go together\n");
		goto out;
	}
	job.argv = argv + dd + 1;
	job.env = env.v;
	job.verbose = so.verbose;
	char pulled[4200];
	if (session_bundle_arg(bundle, insecure_registry, pulled, sizeof(pulled)) < 0) {
		status = 1;
		goto out;
	}
	status = session_exec(pulled, &job, &so);
out:
	free(job.copy_in);
	free(job.copy_out);
	free(env.v);
	free(vars.v);
	return status;
}

static void usage_build(FILE *f)
{
	fprintf(f,
		"usage: smolvm build SCRIPT.lua [--rebuild] [-v]\n"
		"\n"
		"Builds the root filesystem the script's rootfs = { ... } declares (Debian\n"
		"packages, an OCI image, a directory, a tarball or an ext4 image, with its copy\n"
		"and run steps) into the cache, or finds it there, and prints the image's path.\n"
		"pack and boot do the same before they boot. See docs/rootfs.md.\n"
		"  -v, --verbose          the tools' output as they run\n"
		"      --rebuild          build it afresh even when the cache holds it\n");
}

static int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rebuild", no_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct session_opts so = { 0 };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'R': so.rebuild = 1; break;
		case 'v': so.verbose++; break;
		case 'h': usage_build(stdout); return 0;
		default: usage_build(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm build: expected one machine script\n");
		usage_build(stderr);
		return 2;
	}
	return session_build(argv[optind], &so);
}

static int cmd_inspect(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_inspect(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--json"))
		return session_inspect_json(argv[2]);
	if (argc == 3 && !strcmp(argv[2], "--json"))
		return session_inspect_json(argv[1]);
	if (argc != 2 || argv[1][0] == '-') {
		usage_inspect(stderr);
		return 2;
	}
	return session_inspect(argv[1]);
}

static void usage_cache(FILE *f)
{
	fprintf(f,
		"usage: smolvm cache list\n"
		"       smolvm cache prune [--max SIZE | --all]\n"
		"\n"
		"The cache ($SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else\n"
		"~/.cache/smolvm, private to you) holds memory and disk images of restored\n"
		"bundles, root filesystem images, links to the parents of child bundles\n"
		"saved here (kind \"parent\"), bundles pulled for run and exec (\"pulled\") and\n"
		"the blobs pulls fetched (\"blob\", listed as one line). It is kept within\n"
		"$SMOLVM_CACHE_MAX (default 20G)\n"
		"by removing the least recently used entries whenever one is added.\n"
		"  list                   every entry, least recently used first: kind, size\n"
		"                         on disk, last use, path; then the total\n"
		"  prune                  remove least recently used entries down to the quota\n"
		"      --max SIZE         ... down to SIZE instead\n"
		"      --all              remove every entry\n"
		"A bundle whose root filesystem image was removed is refused until the image\n"
		"is built again (smolvm build SCRIPT); a memory or disk image is made again\n"
		"by the next restore; a child bundle whose parent's link was removed needs\n"
		"its parent next to it; a pulled bundle or blob is fetched again.\n");
}

static int cmd_cache(int argc, char **argv)
{
	struct cache_entry *v;
	struct err e = { "" };
	uint64_t total, max, freed;
	unsigned removed;
	size_t n;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_cache(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "list")) {
		if (cache_max(&max, &e) || cache_list(&v, &n, &total, &e)) {
			fprintf(stderr, "smolvm cache: %s\n", e.msg);
			return 1;
		}
		uint64_t blobs = 0, blob_bytes = 0;
		time_t blob_used = 0;
		char when[64];
		struct tm tm;
		for (size_t i = 0; i < n; i++) {
			time_t t = v[i].used.tv_sec;
			if (!strcmp(v[i].kind, "blob")) { /* many: one line for them all */
				blobs++;
				blob_bytes += v[i].bytes;
				blob_used = t > blob_used ? t : blob_used;
				continue;
			}
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
			printf("%-7s %9.1f MiB  %s  %s\n", v[i].kind, v[i].bytes / 1048576.0, when,
			       v[i].path);
		}
		if (blobs) {
			char dir[4096];
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&blob_used, &tm));
			printf("blobs   %9.1f MiB  %s  %s/blobs/sha256/ (%llu pulled from registries)\n",
			       blob_bytes / 1048576.0, when, cache_dir(dir, sizeof(dir)) ? "?" : dir,
			       (unsigned long long)blobs);
		}
		printf("%zu entr%s, %.1f MiB of %.1f GiB (SMOLVM_CACHE_MAX)\n", n,
		       n == 1 ? "y" : "ies", total / 1048576.0, max / 1073741824.0);
		cache_list_free(v, n);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "prune") && argc <= 4) {
		int rc = 0;
		if (argc == 2)
			rc = cache_max(&max, &e);
		else if (argc == 3 && !strcmp(argv[2], "--all"))
			max = 0;
		else if (argc == 4 && !strcmp(argv[2], "--max")) {
			if (parse_size(argv[3], &max))
				rc = err_set(&e, -EINVAL, "--max: \"%s\" is not a size (MiB, or with "
					     "B, K, M or G)", argv[3]);
		} else {
			usage_cache(stderr);
			return 2;
		}
		if (rc || cache_trim(max, NULL, &removed, &freed, &e)) {
			fprintf(stderr, "smolvm cache: %s\n", e.msg);
			return rc == -EINVAL ? 2 : 1;
		}
		printf("removed %u entr%s, %.1f MiB\n", removed, removed == 1 ? "y" : "ies",
		       freed / 1048576.0);
		return 0;
	}
	usage_cache(stderr);
	return 2;
}

static void usage_sign(FILE *f)
{
	fprintf(f,
		"usage: smolvm sign BUNDLE [--key NAME] [-o OUT]\n"
		"\n"
		"Checks every section and memory chunk of BUNDLE against its hash, then signs\n"
		"the bundle's identity (the hash of its table of contents, which holds them\n"
		"all) with your Ed25519 key NAME (default: default; smolvm key generate makes\n"
		"one). A bundle signed by a key someone trusts (smolvm key trust) runs there\n"
		"as one they packed: its hooks run, its devices get what its script names.\n"
		"Other signatures stay; yours replaces an earlier one of the same key.\n"
		"  -k, --key NAME         the key to sign with\n"
		"  -o, --output OUT       write the signed bundle to OUT (default: replace\n"
		"                         BUNDLE, atomically)\n");
}

static int cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' }, { "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	const char *key = "default", *out = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "k:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'o': out = optarg; break;
		case 'h': usage_sign(stdout); return 0;
		default: usage_sign(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage_sign(stderr);
		return 2;
	}
	return session_sign(argv[optind], key, out);
}

static void usage_verify(FILE *f)
{
	fprintf(f,
		"usage: smolvm verify BUNDLE\n"
		"\n"
		"Checks every section and memory chunk of BUNDLE against its hash and each\n"
		"signature against your trusted keys, and says who signed it.\n"
		"Exit status: 0 intact and signed by a key you trust; 1 intact but not\n"
		"(unsigned, or signed only by keys you do not trust); 2 corrupt, or a\n"
		"signature does not match (the bundle was changed after it was signed).\n");
}

static void usage_flatten(FILE *f)
{
	fprintf(f,
		"usage: smolvm flatten BUNDLE -o OUT\n"
		"\n"
		"Writes BUNDLE, a child saved from a restored machine (it names its parent\n"
		"and holds only what changed), together with its parents as one bundle\n"
		"without a parent: OUT runs alone, anywhere. Every chunk is checked against\n"
		"its hash; none is compressed again. OUT may be BUNDLE (replaced atomically).\n"
		"A bundle without a parent is copied as it is.\n");
}

static int cmd_flatten(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_flatten(stdout);
		return 0;
	}
	if (argc == 4 && (!strcmp(argv[2], "-o") || !strcmp(argv[2], "--output")) &&
	    argv[1][0] != '-')
		return session_flatten(argv[1], argv[3]);
	usage_flatten(stderr);
	return 2;
}

static int cmd_verify(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage_verify(stdout);
		return 0;
	}
	if (argc != 2) {
		usage_verify(stderr);
		return 2;
	}
	return session_verify(argv[1]);
}

static void usage_push(FILE *f)
{
	fprintf(f,
		"usage: smolvm push BUNDLE HOST/NAME:TAG [--insecure] [--jobs N]\n"
		"\n"
		"Puts BUNDLE in an OCI registry as an artifact (docs/registry.md): one blob\n"
		"per stored memory or disk chunk, so a registry keeps a chunk once across\n"
		"versions and bundles, and only the chunks it lacks are uploaded; a blob of\n"
		"everything else; its signatures travel with it. BUNDLE is checked whole\n"
		"first. A child bundle (saved from a restored machine) is pushed flattened,\n"
		"as smolvm flatten writes it (a signed one is refused: flatten, sign, push).\n"
		"Credentials: $SMOLVM_REGISTRY_AUTH (USER:PASSWORD), else ~/.docker/config.json\n"
		"(docker login; $DOCKER_CONFIG). TLS is verified.\n"
		"  --insecure             plain HTTP (a registry on localhost without TLS)\n"
		"  -j, --jobs N           blobs transferred at once (1-16, default 4)\n");
}

static void usage_pull(FILE *f)
{
	fprintf(f,
		"usage: smolvm pull HOST/NAME[:TAG|@sha256:HEX] -o BUNDLE [--insecure] [--jobs N]\n"
		"\n"
		"Gets a bundle pushed with smolvm push: fetches the blobs the local blob store\n"
		"($SMOLVM_CACHE_DIR/blobs) lacks, each checked against its digest, rebuilds the\n"
		"bundle byte for byte, verifies it whole (every hash, and the identity its\n"
		"signatures sign) and writes it to BUNDLE atomically. An interrupted pull\n"
		"resumes: what it had fetched stays in the store. A pulled bundle is untrusted\n"
		"(its hooks do not run) unless a key you trust signed it (smolvm verify).\n"
		"  --insecure             plain HTTP (a registry on localhost without TLS)\n"
		"  -j, --jobs N           blobs transferred at once (1-16, default 4)\n");
}

/* push and pull: their options. */
static int transfer_opts(int argc, char **argv, int pull, const char **out, int *insecure,
			 unsigned *jobs)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' }, { "insecure", no_argument, NULL, 'X' },
		{ "jobs", required_argument, NULL, 'j' },   { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	void (*help)(FILE *) = pull ? usage_pull : usage_push;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, pull ? "o:j:h" : "j:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': *out = optarg; break;
		case 'X': *insecure = 1; break;
		case 'j': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 16) {
				fprintf(stderr, "smolvm: --jobs: \"%s\" is not 1 to 16\n", optarg);
				return 2;
			}
			*jobs = (unsigned)n;
			break;
		}
		case 'h': help(stdout); return -1;
		default: help(stderr); return 2;
		}
	}
	if (argc - optind != (pull ? 1 : 2) || (pull && !*out)) {
		help(stderr);
		return 2;
	}
	return 0;
}

static int cmd_push(int argc, char **argv)
{
	const char *out = NULL;
	int insecure = 0, rc;
	unsigned jobs = 0;

	rc = transfer_opts(argc, argv, 0, &out, &insecure, &jobs);
	if (rc)
		return rc < 0 ? 0 : rc;
	return session_push(argv[optind], argv[optind + 1], insecure, jobs);
}

static int cmd_pull(int argc, char **argv)
{
	const char *out = NULL;
	int insecure = 0, rc;
	unsigned jobs = 0;

	rc = transfer_opts(argc, argv, 1, &out, &insecure, &jobs);
	if (rc)
		return rc < 0 ? 0 : rc;
	return session_pull(argv[optind], out, insecure, jobs);
}

static void usage_key(FILE *f)
{
	fprintf(f,
		"usage: smolvm key generate [NAME]\n"
		"       smolvm key list\n"
		"       smolvm key export [NAME]\n"
		"       smolvm key trust FILE [--as NAME]\n"
		"       smolvm key untrust NAME\n"
		"\n"
		"Keys live in $SMOLVM_CONFIG_DIR, else $XDG_CONFIG_HOME/smolvm, else\n"
		"~/.config/smolvm (private to you): keys/NAME.key (secret), keys/NAME.pub,\n"
		"and trusted-keys/NAME.pub, the keys whose signatures you trust.\n"
		"  generate [NAME]        make an Ed25519 key (default name: default); it is\n"
		"                         trusted here too\n"
		"  list                   your keys and the keys you trust\n"
		"  export [NAME]          print the public key line to give to others\n"
		"  trust FILE             trust the public key in FILE (- for stdin), named as\n"
		"                         in the file or --as NAME\n"
		"  untrust NAME           stop trusting key NAME\n");
}

static int cmd_key(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	struct err e = { "" };
	int rc;

	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		usage_key(stdout);
		return 0;
	}
	if (!strcmp(sub, "generate") && argc <= 3)
		rc = key_generate(argc == 3 ? argv[2] : "default", &e);
	else if (!strcmp(sub, "list") && argc == 2)
		rc = key_list(&e);
	else if (!strcmp(sub, "export") && argc <= 3)
		rc = key_export(argc == 3 ? argv[2] : "default", &e);
	else if (!strcmp(sub, "trust") && argc == 3)
		rc = key_trust(argv[2], NULL, &e);
	else if (!strcmp(sub, "trust") && argc == 5 && !strcmp(argv[3], "--as"))
		rc = key_trust(argv[2], argv[4], &e);
	else if (!strcmp(sub, "untrust") && argc == 3)
		rc = key_untrust(argv[2], &e);
	else {
		usage_key(stderr);
		return 2;
	}
	if (rc)
		fprintf(stderr, "smolvm key: %s\n", e.msg);
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
		{ "exec", cmd_exec, usage_exec },
		{ "inspect", cmd_inspect, usage_inspect },
		{ "build", cmd_build, usage_build },
		{ "plugins", cmd_plugins, usage_plugins },
		{ "cache", cmd_cache, usage_cache },
		{ "sign", cmd_sign, usage_sign },
		{ "verify", cmd_verify, usage_verify },
		{ "flatten", cmd_flatten, usage_flatten },
		{ "push", cmd_push, usage_push },
		{ "pull", cmd_pull, usage_pull },
		{ "key", cmd_key, usage_key },
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
