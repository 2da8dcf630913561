/* Refused: the device ops table claims to end after min_state_version. */
#include <stddef.h>

#include "test_plugin.h"

static const struct smolvm_device_ops ops = {
	.struct_size = offsetof(struct smolvm_device_ops, create),
	.state_version = 1,
	.min_state_version = 1,
	.create = test_create,
};

SMOLVM_DEVICE_PLUGIN("small-ops", "1", "", ops);
