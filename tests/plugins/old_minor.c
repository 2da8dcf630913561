/* Loads: a plugin written for ABI 1.0, whatever minor the host has now.
 * Filled by hand so the numbers stay 1.0 when SMOLVM_ABI_MINOR moves. Its
 * ops table is 1.0's size; what lies past it (here an options array, an
 * ABI 1.2 member) is not the plugin's and must not be read. */
#include "test_plugin.h"

static const struct smolvm_option past_the_end[] = {
	{ "never_read", SMOLVM_OPT_INT, SMOLVM_OPT_REQUIRED, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops ops = {
	.struct_size = offsetof(struct smolvm_device_ops, restore) + sizeof(void *),
	.state_version = 1,
	.min_state_version = 1,
	.create = test_create,
	.destroy = test_destroy,
	.options = past_the_end,
};

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
