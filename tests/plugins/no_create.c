/* Refused: a device that cannot be instantiated. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.destroy = test_destroy,
};

SMOLVM_DEVICE_PLUGIN("no-create", "1", "", ops);
