/* The recipes behind smolvm's commands: boot, pack, run, exec, inspect and
 * plugins. Each builds what it needs (host configuration, plugins, the
 * machine from a script or a bundle, the hooks), runs it to the end and
 * returns the command's exit status, having printed why it failed. */
#ifndef SMOLVM_SESSION_H
#define SMOLVM_SESSION_H

#include <stdint.h>

#include "session/exec.h"
#include "session/grants.h"

/* Command-line options that override a machine script (0 / NULL: keep). */
struct machine_overrides {
	uint32_t cpus;
	uint64_t memory;
	const char *kernel, *initrd, *append, *backend, *ready;
	int quirk_mode; /* enum smolvm_quirk_mode, or -1: the host config's */
};

/* What every machine command takes. */
struct session_opts {
	const char *hooks_path; /* --hooks */
	char **vars;            /* --var K=V, NULL-terminated, may be NULL */
	int verbose;
	int rebuild;            /* --rebuild: a root filesystem is built afresh */
	int trust;              /* --trust: a bundle's hooks and host resources
				 * are used although it is not recorded as this
				 * user's */
	struct grants grants;   /* --disk, --publish, --net */
	const char *sign_key;   /* pack --sign: sign the bundle with this key */
	int flat;               /* --flat: saves name no parent */
};

int session_boot(const char *script, const struct machine_overrides *ov, const char *save_to,
		 const struct session_opts *o);
int session_pack(const char *script, const struct machine_overrides *ov, const char *out,
		 const struct session_opts *o);
/* out: where SIGUSR1 saves (NULL: back into the bundle unless pristine). */
int session_run(const char *bundle, int pristine, const char *out, const struct session_opts *o);
int session_exec(const char *bundle, struct exec_job *job, const struct session_opts *o);
int session_inspect(const char *bundle);
/* One bundle without a parent from `bundle` and its ancestors. */
int session_flatten(const char *bundle, const char *out);
/* The same as one JSON object on stdout (inspect --json). */
int session_inspect_json(const char *bundle);
/* The script's root filesystem, built or found; prints the image's path. */
int session_build(const char *script, const struct session_opts *o);
int session_plugins(void);

#endif
