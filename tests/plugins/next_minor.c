/* Refused: built for the host's next minor, which this host cannot know
 * the new entries of (the boundary of the "plugin minor <= host minor"
 * rule; minor99 is the far end). */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

TEST_DESCRIPTOR(struct smolvm_plugin) = {
	.abi_major = SMOLVM_ABI_MAJOR,
	.abi_minor = SMOLVM_ABI_MINOR + 1,
	.struct_size = sizeof(struct smolvm_plugin),
	.kind = SMOLVM_PLUGIN_DEVICE,
	.name = "next-minor",
	.ops = &ops,
};
