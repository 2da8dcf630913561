/* Refused: claims to read state versions newer than it writes. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 2,
	.min_state_version = 3,
	.create = test_create,
};

SMOLVM_DEVICE_PLUGIN("bad-state-version", "1", "", ops);
