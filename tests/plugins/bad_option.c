/* Refused: declares an option whose name no machine script can write
 * (and which the loader checks like the plugin's own name). */
#include "test_plugin.h"

static const struct smolvm_option options[] = {
	{ "port", SMOLVM_OPT_INT, 0, "0x700", "a port" },
	{ "Bad Option", SMOLVM_OPT_STRING, 0, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_device_ops ops = {
	.struct_size = sizeof(struct smolvm_device_ops),
	.state_version = 1,
	.min_state_version = 1,
	.create = test_create,
	.options = options,
};

SMOLVM_DEVICE_PLUGIN("bad-option", "1", "", ops);
