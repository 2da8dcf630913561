/* Loads: a plugin written for ABI 1.0, whatever minor the host has now.
 * Filled by hand so the numbers stay 1.0 when SMOLVM_ABI_MINOR moves. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = 1,
	.abi_minor = 0,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "old-minor",
	.version = "1.0.0",
	.summary = "claims ABI 1.0",
	.ops = &ops,
};
