/* Refused: built for ABI 2.0. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = 2,
	.abi_minor = 0,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "major2",
	.ops = &ops,
};
