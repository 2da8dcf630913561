/* The host API table handed to plugins, and the one way the core calls a
 * plugin and collects its error. */
#ifndef SMOLVM_HOST_API_H
#define SMOLVM_HOST_API_H

#include <smolvm/plugin.h>

#include "lib/err.h"

extern const struct smolvm_host_api host_api;

/* The last set_error() message of this thread ("unknown error" if none). */
const char *host_last_error(void);
void host_clear_error(void);

static inline int plugin_result(int rc, struct err *e)
{
	return rc < 0 ? err_set(e, rc, "%s", host_last_error()) : rc;
}

/* Runs `call` (an expression returning 0 / -errno, a call into a plugin)
 * with this thread's plugin error cleared first; a failure comes back as
 * its -errno with the plugin's set_error() message in `e`. */
#define PLUGIN_CALL(e, call) (host_clear_error(), plugin_result((call), (e)))

#endif
