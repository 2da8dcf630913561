/* Refused: exports no smolvm_plugin_v1 (a plugin with a typo'd symbol). */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

SMOLVM_EXPORT extern const struct smolvm_plugin smolvm_plugin_v0;
const struct smolvm_plugin smolvm_plugin_v0 = {
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "nosym",
	.ops = &ops,
};
