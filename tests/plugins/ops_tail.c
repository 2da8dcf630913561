/* Refused: a device ops table larger than the host's with an entry the
 * host does not know. */
#include "test_plugin.h"

struct future_ops {
	struct smolvm_device_ops base;
	void (*future_entry)(void *dev);
};

static const struct future_ops ops = {
	.base = {
		.struct_size = sizeof(struct future_ops),
		.state_version = 1,
		.min_state_version = 1,
		.create = test_create,
	},
	.future_entry = test_destroy,
};

SMOLVM_DEVICE_PLUGIN("ops-tail", "1", "", ops);
