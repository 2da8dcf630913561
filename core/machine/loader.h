/* Plugin loader: finds shared objects on the search path, checks their
 * descriptor against the host ABI and keeps the ones that pass. */
#ifndef SMOLVM_PLUGIN_LOADER_H
#define SMOLVM_PLUGIN_LOADER_H

#include <smolvm/plugin.h>

#include "lib/err.h"

struct plugin {
	char *path;
	void *handle;
	struct smolvm_plugin desc; /* zero-extended copy */
	union {
		struct smolvm_device_ops dev;
		struct smolvm_backend_ops backend;
	} ops; /* zero-extended copy of desc.ops */
};

/* Called for each file that is refused, with the reason. */
typedef void (*plugin_refusal_cb)(void *opaque, const char *path, const char *why);

struct plugin_set {
	struct plugin *v;
	size_t n;
};

/* Loads and validates one file. On refusal returns -errno and explains. */
int plugin_open(const char *path, struct plugin *out, struct err *e) WARN_UNUSED;
/* Scans every *.so in `dirs` (in order; the first of a name wins, a later
 * one with the same name is refused as a duplicate). */
void plugins_scan(struct plugin_set *set, char *const *dirs, size_t ndirs,
		  plugin_refusal_cb cb, void *opaque);
const struct plugin *plugins_find(const struct plugin_set *set, const char *name,
				  uint32_t kind);
void plugins_free(struct plugin_set *set);
const char *plugin_kind_name(uint32_t kind);

#endif
