/* smolvm: the command line. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session/host_config.h"
#include "session/exec.h"
#include "session/hooks.h"
#include "machine/config.h"
#include "machine/loader.h"
#include "script/script.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"
#include "machine/vm.h"


static void usage(FILE *f)
{
	fprintf(f,
		"usage: smolvm <command> [options]\n"
		"\n"
		"commands:\n"
		"  boot SCRIPT.lua            boot the machine a Lua script declares, console attached\n"
		"  pack SCRIPT.lua -o BUNDLE  boot it, wait for its ready line, save a .smolmachine bundle\n"
		"  run BUNDLE                 restore a bundle and resume it where it was saved\n"
		"  exec BUNDLE -- CMD...      restore a bundle, run CMD in the guest, exit with its status\n"
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
	"  -v, --verbose          more messages (twice: unhandled I/O too)\n"         \
	HOOK_OPTIONS
#define HOOK_OPTIONS                                                                 \
	"      --hooks FILE       Lua hooks replacing the script's of the same name\n" \
	"      --var KEY=VALUE    seen by hooks as vm.vars.KEY (repeatable)\n"

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
		HOOK_OPTIONS
		"\n" CONSOLE_HELP "\n"
		"The bundle's hooks run again: after_restore once the machine runs (after\n"
		"the guest agent, if any, got a fresh RNG seed and the clock), on_console,\n"
		"before_snapshot, on_exit. Exit status as for boot.\n");
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
		"  -i, --copy-in HOST:GUEST   copy a file or directory in before COMMAND\n"
		"  -O, --copy-out GUEST:HOST  copy a file out after COMMAND\n"
		"                         (both repeatable)\n"
		"  -e, --env KEY=VALUE    environment of COMMAND (repeatable)\n"
		"  -C, --cwd DIR          working directory of COMMAND (default /)\n"
		"  -t, --timeout SECONDS  kill COMMAND after this long (exit status 124)\n"
		"  -k, --keep             save the machine afterwards (needs -o)\n"
		"  -o, --output BUNDLE    where --keep saves it\n"
		"  -v, --verbose          timings and the guest console on stderr\n"
		HOOK_OPTIONS
		"\n"
		"Exit status: COMMAND's, or 128+N if signal N killed it; 124 after a\n"
		"timeout; 127 if COMMAND was not found, 126 if it could not run; 1 if the\n"
		"machine or its agent failed (with a message saying why).\n");
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

/* ---- what every command shares: hooks, vars, sockets ---------------------- */

/* The end of every machine command's long options. */
#define SESSION_LONG_OPTIONS                                                     \
	{ "verbose", no_argument, NULL, 'v' }, { "hooks", required_argument, NULL, 'H' }, \
	{ "var", required_argument, NULL, 'V' }, { "help", no_argument, NULL, 'h' },     \
	{ NULL, 0, NULL, 0 }

struct strv {
	char **v;
	size_t n;
};

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

/* A private directory for the machine's sockets, removed at the end. */
struct runtime {
	char dir[300];
	char *vsock; /* the first virtio-vsock device's socket */
};

static void runtime_cleanup(struct runtime *rt)
{
	if (rt->dir[0]) {
		DIR *d = opendir(rt->dir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char p[600];
			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", rt->dir, de->d_name);
			unlink(p);
		}
		if (d)
			closedir(d);
		rmdir(rt->dir);
		rt->dir[0] = 0;
	}
	free(rt->vsock);
	rt->vsock = NULL;
}

/* Every virtio-vsock device gets a socket in the private directory unless
 * the script names one (and always with `force`: clones of one bundle must
 * not fight over a name). */
static int oom(void)
{
	fprintf(stderr, "smolvm: out of memory\n");
	return -ENOMEM;
}

static int bind_vsock(struct machine_config *cfg, int force, struct runtime *rt)
{
	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct dev_config *d = &cfg->devices[i];
		const char *path;
		char sock[400];

		if (strcmp(d->type, "virtio-vsock"))
			continue;
		if (force || !dev_config_get(d, "socket")) {
			if (!rt->dir[0]) {
				const char *base = getenv("XDG_RUNTIME_DIR");
				snprintf(rt->dir, sizeof(rt->dir), "%s/smolvm-XXXXXX",
					 base && *base ? base : "/tmp");
				if (!mkdtemp(rt->dir)) {
					int err = errno;
					fprintf(stderr, "smolvm: %s: %s\n", rt->dir, strerror(err));
					rt->dir[0] = 0;
					return -err;
				}
			}
			snprintf(sock, sizeof(sock), "%s/%s.sock", rt->dir, d->name);
			if (dev_config_set(d, "socket", sock))
				return oom();
		}
		path = dev_config_path(d, "socket", cfg->script);
		if (!rt->vsock && path && !(rt->vsock = strdup(path)))
			return oom();
	}
	return 0;
}

struct session {
	struct script *script;
	const char *hooks_path;
	struct strv vars;
	struct runtime rt;
	struct exec_job *job;
};

static void session_free(struct session *ss)
{
	script_close(ss->script);
	free(ss->vars.v);
	runtime_cleanup(&ss->rt);
}

static int session_load_hooks(struct session *ss)
{
	struct err e;

	if (ss->hooks_path && script_load_hooks(ss->script, ss->hooks_path, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return -EINVAL;
	}
	return 0;
}

/* Runs a machine with its hooks until it stops; returns the exit status. */
static int run_session(struct vm *vm, struct session *ss, int restored, int verbose)
{
	struct hooks_opts ho = { .restored = restored, .sync_required = ss->job != NULL,
				 .vsock = ss->rt.vsock, .vars = ss->vars.v, .job = ss->job,
				 .verbose = verbose };
	struct hooks *h = NULL;
	struct err e;
	int status;

	if ((script_has_hooks(ss->script) || (restored && ss->rt.vsock) || ss->job) &&
	    hooks_start(vm, script_has_hooks(ss->script) ? ss->script : NULL, &ho, &h, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	status = run_machine(vm, verbose > 1);
	/* A hook that failed once the machine had stopped (on_exit, say) still
	 * fails the command; one that stopped it was reported above. */
	if (hooks_finish(h, &e) && status == 0) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		status = 1;
	}
	if (h && hooks_hung(h))
		ss->script = NULL; /* still in use by the abandoned thread */
	hooks_free(h);
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
		SESSION_LONG_OPTIONS,
	};
	void (*help)(FILE *) = pack ? usage_pack : usage_boot;
	struct session ss = { 0 };
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
		case 'H': ss.hooks_path = optarg; break;
		case 'V':
			if (check_var("--var", optarg) || strv_add(&ss.vars, optarg)) {
				free(ss.vars.v);
				return 2;
			}
			break;
		case 'h': free(ss.vars.v); help(stdout); return 0;
		default: free(ss.vars.v); help(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		free(ss.vars.v);
		fprintf(stderr, "smolvm %s: expected one machine script\n", pack ? "pack" : "boot");
		help(stderr);
		return 2;
	}
	if (pack && !o.out) {
		free(ss.vars.v);
		fprintf(stderr, "smolvm pack: -o BUNDLE is required\n");
		return 2;
	}
	if (host_config_load(&hc, &e)) {
		free(ss.vars.v);
		fprintf(stderr, "smolvm: %s\n", e.msg);
		return 1;
	}
	if (script_open_file(argv[optind], &cfg, &ss.script, &e)) {
		fprintf(stderr, "smolvm: %s\n", e.msg);
		goto out;
	}
	if (apply_opts(&o, &hc, &cfg) || session_load_hooks(&ss) || bind_vsock(&cfg, 0, &ss.rt))
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
		status = run_session(&vm, &ss, 0, o.verbose ? o.verbose + 1 : 0);
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
	session_free(&ss);
	return status;
}

static int cmd_boot(int argc, char **argv) { return boot_or_pack(argc, argv, 0); }
static int cmd_pack(int argc, char **argv) { return boot_or_pack(argc, argv, 1); }

/* What a restore holds on to until the machine is destroyed. */
struct restored {
	struct restore_plan plan;
	struct machine_config cfg;
	struct host_config hc;
	struct plugin_set set;
	struct cache_result mem;
	int have_plan, have_hc;
};

static void restored_free(struct restored *r)
{
	if (r->mem.fd >= 0)
		close(r->mem.fd);
	if (r->have_plan)
		snapshot_close(&r->plan);
	plugins_free(&r->set);
	machine_config_free(&r->cfg);
	if (r->have_hc)
		host_config_free(&r->hc);
}

/* Opens a bundle, loads its script (and the user's hooks), binds sockets
 * and builds the machine with its state applied. Prints why on failure. */
static int restore(const char *path, struct restored *r, struct session *ss, int force_vsock,
		   struct vm_opts *vo, struct vm *vm, int verbose)
{
	double t0 = vm_now_ms();
	struct err e;

	memset(r, 0, sizeof(*r));
	r->mem.fd = -1;
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
	/* The bundle's own script, read as if it were still where it was
	 * packed (its relative paths start there). */
	if (script_open(r->plan.m.script, r->plan.lua, r->plan.lua_len, &r->cfg, &ss->script, &e)) {
		fprintf(stderr, "smolvm: %s: its script: %s\n", path, e.msg);
		return -1;
	}
	if (session_load_hooks(ss) || bind_vsock(&r->cfg, force_vsock, &ss->rt))
		return -1;
	r->cfg.cpus = r->plan.m.cpus;
	r->cfg.memory = r->plan.m.memory;
	r->cfg.quirk_mode = r->hc.quirk_mode;
	if (replace(&r->cfg.backend, r->plan.m.backend)) {
		fprintf(stderr, "smolvm: out of memory\n");
		return -1;
	}
	plugins_scan(&r->set, r->hc.plugin_dirs, r->hc.nplugin_dirs, quiet_refusal, &verbose);
	if (snapshot_check_plugins(&r->plan, &r->cfg, &r->set, &e) ||
	    cache_memory(&r->plan.b, r->plan.memory, r->plan.m.memory, &r->mem, &e)) {
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	vo->mem_fd = r->mem.fd;
	vo->restore = 1;
	if (vm_create(vm, &r->cfg, &r->set, vo, &e) || snapshot_restore(vm, &r->plan, &e)) {
		vm_destroy(vm);
		fprintf(stderr, "smolvm: %s: %s\n", path, e.msg);
		return -1;
	}
	if (verbose)
		fprintf(stderr, "smolvm: restored %s in %.1f ms (memory %s in %.1f ms)\n", path,
			vm_now_ms() - t0,
			r->mem.hit ? "mapped from the cache" : "decompressed into the cache",
			r->mem.ms);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pristine", no_argument, NULL, 'p' },
		{ "output", required_argument, NULL, 'o' },
		SESSION_LONG_OPTIONS,
	};
	const char *out = NULL;
	int pristine = 0, verbose = 0, c, status = 1;
	struct session ss = { 0 };
	struct restored r;
	struct vm vm;

	optind = 1;
	while ((c = getopt_long(argc, argv, "po:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pristine = 1; break;
		case 'o': out = optarg; break;
		case 'v': verbose++; break;
		case 'H': ss.hooks_path = optarg; break;
		case 'V':
			if (check_var("--var", optarg) || strv_add(&ss.vars, optarg))
				status = 2;
			break;
		case 'h': usage_run(stdout); status = 0; goto usage;
		default: usage_run(stderr); status = 2; goto usage;
		}
	}
	if (status == 2)
		goto usage;
	if (optind != argc - 1) {
		fprintf(stderr, "smolvm run: expected one bundle\n");
		usage_run(stderr);
		status = 2;
		goto usage;
	}
	struct vm_opts vo = { .verbose = verbose > 1,
			      .save_to = out ? out : pristine ? NULL : argv[optind] };
	if (!restore(argv[optind], &r, &ss, 0, &vo, &vm, verbose)) {
		status = run_session(&vm, &ss, 1, verbose);
		vm_destroy(&vm);
	}
	restored_free(&r);
usage:
	session_free(&ss);
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
		{ "keep", no_argument, NULL, 'k' },
		{ "output", required_argument, NULL, 'o' },
		SESSION_LONG_OPTIONS,
	};
	struct exec_job job = { 0 };
	struct strv env = { 0 };
	struct session ss = { .job = &job };
	struct restored r = { .mem.fd = -1 };
	const char *bundle = NULL;
	int verbose = 0, keep = 0, dd = argc, c, status = 2;
	struct vm vm;

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
		case 'k': keep = 1; break;
		case 'o': job.keep_to = optarg; break;
		case 'v': verbose++; break;
		case 'H': ss.hooks_path = optarg; break;
		case 'V':
			if (check_var("--var", optarg) || strv_add(&ss.vars, optarg))
				goto out;
			break;
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
	job.verbose = verbose;
	status = 1;
	struct vm_opts vo = { .verbose = verbose, .detached = 1, .save_to = job.keep_to,
			      .teardown_behind = 1 };
	if (!restore(bundle, &r, &ss, 1, &vo, &vm, verbose)) {
		if (!ss.rt.vsock) {
			fprintf(stderr, "smolvm exec: %s: its machine has no virtio-vsock device, which the "
				"guest agent needs (add { type = \"virtio-vsock\" } to its devices)\n", bundle);
		} else {
			int vs = run_session(&vm, &ss, 1, verbose);
			if (job.done) {
				status = job.status;
				if (job.e.msg[0])
					fprintf(stderr, "smolvm exec: %s\n", job.e.msg);
			} else if (vs == 0) {
				fprintf(stderr, "smolvm exec: the machine stopped before the command ended\n");
			}
			if (vs != 0 && !(vm_stop_reason(&vm) == VM_STOP_SIGNAL))
				status = status ? status : 1;
			if (vm_stop_reason(&vm) == VM_STOP_SIGNAL)
				status = vs;
		}
		vm_destroy(&vm);
	}
	restored_free(&r);
out:
	free(job.copy_in);
	free(job.copy_out);
	free(env.v);
	session_free(&ss);
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
		{ "exec", cmd_exec, usage_exec },
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
