/* Loads (first of two plugins named "dup": sorted first, it wins). */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

SMOLVM_DEVICE_PLUGIN("dup", "a", "first dup", ops);
