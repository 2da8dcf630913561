/* Refused: struct_size says the descriptor ends after `kind` (16 bytes). */
#include <stddef.h>

#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR,
	.struct_size = offsetof(struct smolvm_plugin, name),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "small-desc",
	.ops = &ops,
};
