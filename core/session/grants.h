/* Grants: the host resources behind a restored machine's devices come from
 * the user. A bundle this user does not trust (trust.h) names devices, not
 * host files, ports or sockets: its disks other than its own root
 * filesystem need --disk NAME=PATH[:ro], its port forwards are dropped
 * (--publish opens ports), its network does not reach the host's loopback
 * (--net nat+host gives it; --net none takes the outside away too), its
 * vsock socket and disk overlays live in smolvm's runtime directory (an
 * overlay is never written by a restore, but made when missing), the file
 * options of other plugins (declared SMOLVM_OPT_PATH) need --bind
 * DEV.OPTION=PATH, and a plugin that declares no options needs --trust. A
 * trusted bundle keeps what its script says, and grants given for it
 * replace that. docs/security.md. */
#ifndef SMOLVM_GRANTS_H
#define SMOLVM_GRANTS_H

#include <stddef.h>

#include "lib/err.h"
#include "machine/config.h"
#include "machine/loader.h"
#include "session/bind.h"

struct grants {
	const char **disks;   /* "NAME=PATH[:ro]": NAME the disk's serial or
			       * its device name (virtio-blk0) */
	size_t ndisks;
	const char **publish; /* "HOSTPORT:GUESTPORT" */
	size_t npublish;
	const char *net;      /* "none", "nat", "nat+host" or NULL */
	const char **binds;   /* "DEV.OPTION=PATH": a device's file option */
	size_t nbinds;
	const char **volumes; /* "HOSTDIR:GUESTDIR[:ro]" (session/volumes.h) */
	size_t nvolumes;
};

/* Checks one option's value, naming it in e. */
int grant_check_disk(const char *arg, struct err *e) WARN_UNUSED;
int grant_check_publish(const char *arg, struct err *e) WARN_UNUSED;
int grant_check_net(const char *arg, struct err *e) WARN_UNUSED;
int grant_check_bind(const char *arg, struct err *e) WARN_UNUSED;
/* --volume HOSTDIR:GUESTDIR[:ro] (session/volumes.c) */
int grant_check_volume(const char *arg, struct err *e) WARN_UNUSED;

/* Applies the rules above to the devices of a machine restored from
 * `bundle`; e names what is missing and the option that gives it. */
int grants_apply(struct machine_config *cfg, const struct grants *g, int trusted,
		 const char *bundle, struct runtime *rt, struct err *e) WARN_UNUSED;
/* Then, once the plugins are known: --bind, and the file options of the
 * devices smolvm has no rules of its own for (above). */
int grants_bind(struct machine_config *cfg, const struct grants *g, int trusted,
		const char *bundle, const struct plugin_set *set, struct err *e) WARN_UNUSED;

#endif
