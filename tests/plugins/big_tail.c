/* Refused: a descriptor from a future minor, larger than the host's, that
 * uses a field the host does not know (non-zero tail). The version says
 * 1.0 so that only the size rule can refuse it. */
#include <stdint.h>

#include "test_plugin.h"

struct future_plugin {
	struct smolvm_plugin base;
	uint64_t future_field;
};

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct future_plugin) = {
	.base = {
		.abi_major = SMOLVM_ABI_MAJOR,
		.abi_minor = SMOLVM_ABI_MINOR,
		.struct_size = sizeof(struct future_plugin),
		.kind = SMOLVM_PLUGIN_DEVICE,
		.name = "big-tail",
		.ops = &ops,
	},
	.future_field = 0x100,
};
