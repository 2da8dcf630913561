/* Host configuration: an INI file (inih) plus environment variables.
 *
 *   $SMOLVM_CONFIG, else $XDG_CONFIG_HOME/smolvm/config.ini,
 *   else ~/.config/smolvm/config.ini:
 *     [plugins]
 *     path = /opt/smolvm/plugins:/usr/lib/smolvm   ; searched first
 *     [defaults]
 *     backend = kvm
 *     guest = /opt/smolvm/guest                    ; vmlinux + initramfs.cpio
 *     host_quirks = auto                           ; auto | on | off
 *
 * Plugin search path, first match wins: $SMOLVM_PLUGIN_PATH, [plugins]
 * path, <dir of the binary>/plugins (build tree), <dir of the binary>/../lib/smolvm,
 * then the LIBDIR the binary was built for. The default guest (a script
 * without `kernel`): $SMOLVM_GUEST_DIR, [defaults] guest, <dir of the
 * binary>/guest, then <dir of the binary>/../lib/smolvm/guest and
 * LIBDIR/smolvm/guest: the first holding a vmlinux. */
#ifndef SMOLVM_CONFIG_H
#define SMOLVM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct host_config {
	char *file; /* the INI file read, or NULL */
	char **plugin_dirs;
	size_t nplugin_dirs;
	char *ini_plugin_path;
	char *backend;
	uint32_t quirk_mode;
	char *guest_dir; /* the default guest's kernel and initramfs, or NULL */
	char *guest_dirs[5]; /* where "guest:NAME" is looked for, in order */
	size_t nguest_dirs;
};

int host_config_load(struct host_config *hc, struct err *e) WARN_UNUSED;
void host_config_free(struct host_config *hc);
int parse_quirk_mode(const char *s, uint32_t *out);
/* A script's "guest:NAME" (kernel, initrd): NAME in the first of the guest
 * directories above that holds it; *out is malloc'd. e says where it was
 * looked for when it is nowhere. */
int host_guest_file(const struct host_config *hc, const char *path, char **out,
		    struct err *e) WARN_UNUSED;

#endif
