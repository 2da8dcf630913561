/* Refused: kind 7 is neither a backend nor a device. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

SMOLVM_PLUGIN_DEFINE_(7, "bad-kind", "1", "", ops);
