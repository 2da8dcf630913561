/* Loads: larger than the host's descriptor, but the unknown tail is all
 * zero, which means "absent" (copy_struct_from_user rule). */
#include <stdint.h>

#include "test_plugin.h"

struct future_plugin {
	struct smolvm_plugin base;
	uint64_t future_field[3];
};

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct future_plugin) = {
	.base = {
		.abi_major = SMOLVM_ABI_MAJOR,
		.abi_minor = SMOLVM_ABI_MINOR,
		.struct_size = sizeof(struct future_plugin),
		.kind = SMOLVM_PLUGIN_DEVICE,
		.name = "zero-tail",
		.version = "2.0",
		.summary = "zero tail",
		.ops = &ops,
	},
};
