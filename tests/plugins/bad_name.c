/* Refused: the name is not [a-z0-9_-]. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

SMOLVM_DEVICE_PLUGIN("Bad Name", "1", "", ops);
