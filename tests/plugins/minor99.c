/* Refused: needs ABI 1.99, newer than any host this tree builds. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = 1,
	.abi_minor = 99,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "minor99",
	.ops = &ops,
};
