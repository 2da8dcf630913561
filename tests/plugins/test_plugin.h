/* Shared bits of the deliberately broken test plugins: a device ops table
 * that is valid, so each plugin breaks exactly one thing. Built against
 * sdk/include only, like a real plugin. */
#ifndef SMOLVM_TEST_PLUGIN_H
#define SMOLVM_TEST_PLUGIN_H

#include <smolvm/plugin.h>

static inline int test_create(smolvm_ctx *ctx, const struct smolvm_host_api *api,
			      void **dev)
{
	(void)ctx;
	(void)api;
	*dev = 0;
	return 0;
}

static inline void test_destroy(void *dev)
{
	(void)dev;
}

#define TEST_DEVICE_OPS                                                        \
	{                                                                      \
		.struct_size = sizeof(struct smolvm_device_ops),               \
		.state_version = 1,                                            \
		.min_state_version = 1,                                        \
		.create = test_create,                                         \
		.destroy = test_destroy,                                       \
	}

/* A descriptor filled by hand, for plugins that lie about their version
 * or size in a way SMOLVM_DEVICE_PLUGIN() cannot express. */
#define TEST_DESCRIPTOR(type_)                                                 \
	SMOLVM_EXPORT extern const type_ smolvm_plugin_v1;                    \
	const type_ smolvm_plugin_v1

#endif
