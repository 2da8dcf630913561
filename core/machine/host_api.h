/* The host API table handed to plugins, and the one way the core calls a
 * plugin and collects its error. */
#ifndef SMOLVM_HOST_API_H
#define SMOLVM_HOST_API_H

#include <smolvm/plugin.h>

#include "lib/err.h"

extern const struct smolvm_host_api host_api;

/* What a backend's set_error() left on this thread, "NAME: message"
 * ("unknown error" if none): vcpu_run describes a triple fault so. */
const char *host_last_error(void);
void host_clear_error(void);

/* The end of a call into a plugin (0 / -errno) on `ctx`, which is
 * `doing` ("create", "save", "restore": a device's op) or NULL (a
 * backend's op). A failure fills `e`, and the rule is the same for every
 * op (docs/plugin-guide.md, "Messages"):
 *   device:  "cannot DOING NAME: REASON"     backend:  "NAME: REASON"
 * REASON is the plugin's set_error() message, followed by that of a host
 * entry the plugin called that failed with the same -errno (the core's
 * message is never silently replaced), or that host entry's alone, or
 * strerror. A device op that returns 0 drops its set_error() message
 * (shown with -vv). Returns rc. */
int plugin_result(int rc, const smolvm_ctx *ctx, const char *doing, struct err *e);

/* The core's own failure in such a call (e.g. the state writer's), in the
 * same form. Returns rc. */
int plugin_fail(const smolvm_ctx *ctx, const char *doing, int rc, struct err *e,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* After a device hook that cannot fail (pause, resume, destroy, an I/O
 * handler): a set_error() message it left is dropped (shown with -vv). */
void plugin_hook_done(int verbose, const char *hook);

/* Runs `call`, a call into a plugin, with this thread's messages cleared
 * first, and collects its error (plugin_result). */
#define PLUGIN_CALL(e, ctx, doing, call)                                       \
	(host_clear_error(), plugin_result((call), (ctx), (doing), (e)))

/* The same for a device hook that returns nothing (plugin_hook_done). */
#define PLUGIN_HOOK(verbose, hook, call)                                       \
	do {                                                                   \
		host_clear_error();                                            \
		call;                                                          \
		plugin_hook_done((verbose), (hook));                           \
	} while (0)

#endif
