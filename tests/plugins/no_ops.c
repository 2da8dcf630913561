/* Refused: no ops table at all. */
#include "test_plugin.h"

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "no-ops",
	.ops = 0,
};
