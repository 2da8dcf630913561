/* Refused by plugins_scan: same name as dup_a.so, which sorts first. */
#include "test_plugin.h"

static const struct smolvm_device_ops ops = TEST_DEVICE_OPS;

SMOLVM_DEVICE_PLUGIN("dup", "b", "second dup", ops);
