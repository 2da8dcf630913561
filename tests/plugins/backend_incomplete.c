/* Refused: a backend without vcpu_run. */
#include "test_plugin.h"

static int vm_create(smolvm_ctx *ctx, const struct smolvm_host_api *api,
		     const struct smolvm_vm_config *cfg, void **vm)
{
	(void)ctx;
	(void)api;
	(void)cfg;
	*vm = 0;
	return 0;
}

static int vcpu_create(void *vm, uint32_t index, void **vcpu)
{
	(void)vm;
	(void)index;
	*vcpu = 0;
	return 0;
}

static int mem_map(void *vm, const struct smolvm_mem_region *r)
{
	(void)vm;
	(void)r;
	return 0;
}

static const struct smolvm_backend_ops ops = {
	.struct_size = sizeof(struct smolvm_backend_ops),
	.vm_create = vm_create,
	.vcpu_create = vcpu_create,
	.mem_map = mem_map,
};

SMOLVM_BACKEND_PLUGIN("backend-incomplete", "1", "", ops);
