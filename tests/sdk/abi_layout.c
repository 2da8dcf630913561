/* The ABI 1.0 layout of the public headers, frozen.
 *
 * Structs at the plugin boundary may only grow at the end (docs/abi.md):
 * every member that ABI 1.0 had keeps its offset, every struct keeps at
 * least its 1.0 size, and the numbering of enums and constants never
 * changes. A change that breaks this fails here, naming the member. Also
 * checks SMOLVM_HAS() against tables of older (smaller) hosts and that
 * smolvm_state_load_fields() skips fields newer than the saved state.
 *
 * Built by tests/integration/sdk.test.sh against the *installed* headers
 * (pkg-config smolvm-plugin) with -std=c11 -pedantic -Werror, and run.
 * The numbers are for x86-64 (LP64), the only target today. The loader's
 * side (old minor loads, newer minor / other major / short or long
 * structs refused) is tests/unit/test_loader.c with tests/plugins/.
 */
#include <stdio.h>
#include <string.h>

#include <smolvm/plugin.h>
#include <smolvm/state.h>
#include <smolvm/virtio.h>

static int failures;

static void check(const char *what, size_t got, size_t want, int at_least)
{
	if (at_least ? got >= want : got == want)
		return;
	printf("FAIL: %s is %zu, ABI 1.0 has %s%zu\n", what, got, at_least ? "at least " : "", want);
	failures++;
}

#define F(s, m, off) check("offsetof(struct " #s ", " #m ")", offsetof(struct s, m), off, 0)
#define Z(s, size) check("sizeof(struct " #s ")", sizeof(struct s), size, 1)
#define E(name, value) check(#name, (size_t)(name), value, 0)

static void layout(void)
{
	if (sizeof(void *) != 8) {
		printf("SKIP: layout: golden values are for LP64\n");
		return;
	}
	F(smolvm_plugin, abi_major, 0),
	F(smolvm_plugin, abi_minor, 4),
	F(smolvm_plugin, struct_size, 8),
	F(smolvm_plugin, kind, 12),
	F(smolvm_plugin, name, 16),
	F(smolvm_plugin, version, 24),
	F(smolvm_plugin, summary, 32),
	F(smolvm_plugin, ops, 40),
	F(smolvm_host_api, struct_size, 0),
	F(smolvm_host_api, abi_major, 4),
	F(smolvm_host_api, abi_minor, 8),
	F(smolvm_host_api, log, 16),
	F(smolvm_host_api, set_error, 24),
	F(smolvm_host_api, config_get, 32),
	F(smolvm_host_api, guest_ptr, 40),
	F(smolvm_host_api, irq_set, 48),
	F(smolvm_host_api, io_register, 56),
	F(smolvm_host_api, fd_watch, 64),
	F(smolvm_host_api, fd_unwatch, 72),
	F(smolvm_host_api, console_write, 80),
	F(smolvm_host_api, console_attach, 88),
	F(smolvm_host_api, console_kick, 96),
	F(smolvm_host_api, state_put, 104),
	F(smolvm_host_api, state_get, 112),
	F(smolvm_host_api, state_begin, 120),
	F(smolvm_host_api, state_end, 128),
	F(smolvm_host_api, state_enter, 136),
	F(smolvm_host_api, state_leave, 144),
	F(smolvm_host_api, request_stop, 152),
	F(smolvm_host_api, resource_alloc, 160),
	F(smolvm_host_api, cmdline_append, 168),
	F(smolvm_host_api, ioeventfd, 176),
	F(smolvm_host_api, irqfd, 184),
	F(smolvm_host_api, config_path, 192),
	F(smolvm_host_api, restoring, 200), /* ABI 1.1 */
	F(smolvm_host_api, irq_claim, 208), /* ABI 1.2 */
	F(smolvm_host_api, instance_name, 216), /* ABI 1.3 */
	F(smolvm_host_api, save_image, 224), /* ABI 1.4 */
	F(smolvm_host_api, open_image, 232),
	F(smolvm_device_ops, struct_size, 0),
	F(smolvm_device_ops, state_version, 4),
	F(smolvm_device_ops, min_state_version, 8),
	F(smolvm_device_ops, create, 16),
	F(smolvm_device_ops, destroy, 24),
	F(smolvm_device_ops, reset, 32),
	F(smolvm_device_ops, pause, 40),
	F(smolvm_device_ops, resume, 48),
	F(smolvm_device_ops, save, 56),
	F(smolvm_device_ops, restore, 64),
	F(smolvm_device_ops, options, 72), /* ABI 1.2 */
	F(smolvm_option, name, 0),         /* ABI 1.2, never grows */
	F(smolvm_option, type, 8),
	F(smolvm_option, flags, 12),
	F(smolvm_option, default_text, 16),
	F(smolvm_option, help, 24),
	F(smolvm_io_ops, struct_size, 0),
	F(smolvm_io_ops, read, 8),
	F(smolvm_io_ops, write, 16),
	F(smolvm_vm_config, struct_size, 0),
	F(smolvm_vm_config, ncpus, 4),
	F(smolvm_vm_config, mem_size, 8),
	F(smolvm_vm_config, quirk_mode, 16),
	F(smolvm_mem_region, struct_size, 0),
	F(smolvm_mem_region, slot, 4),
	F(smolvm_mem_region, gpa, 8),
	F(smolvm_mem_region, size, 16),
	F(smolvm_mem_region, hva, 24),
	F(smolvm_x86_boot, struct_size, 0),
	F(smolvm_x86_boot, mode, 4),
	F(smolvm_x86_boot, rip, 8),
	F(smolvm_x86_boot, rsi, 16),
	F(smolvm_x86_boot, rsp, 24),
	F(smolvm_x86_boot, cr3, 32),
	F(smolvm_x86_boot, gdt_base, 40),
	F(smolvm_x86_boot, gdt_limit, 48),
	F(smolvm_x86_boot, code_sel, 50),
	F(smolvm_x86_boot, data_sel, 52),
	F(smolvm_exit, struct_size, 0),
	F(smolvm_exit, reason, 4),
	F(smolvm_exit, io.addr, 8),
	F(smolvm_exit, io.size, 16),
	F(smolvm_exit, io.count, 20),
	F(smolvm_exit, io.is_write, 24),
	F(smolvm_exit, io.data, 32),
	F(smolvm_backend_ops, struct_size, 0),
	F(smolvm_backend_ops, vm_create, 8),
	F(smolvm_backend_ops, vm_destroy, 16),
	F(smolvm_backend_ops, vm_quirks, 24),
	F(smolvm_backend_ops, mem_map, 32),
	F(smolvm_backend_ops, irq_line, 40),
	F(smolvm_backend_ops, vcpu_create, 48),
	F(smolvm_backend_ops, vcpu_destroy, 56),
	F(smolvm_backend_ops, vcpu_boot, 64),
	F(smolvm_backend_ops, vcpu_run, 72),
	F(smolvm_backend_ops, vcpu_kick, 80),
	F(smolvm_backend_ops, vm_save, 88),
	F(smolvm_backend_ops, vm_restore, 96),
	F(smolvm_backend_ops, vcpu_save, 104),
	F(smolvm_backend_ops, vcpu_restore, 112),
	F(smolvm_backend_ops, ioeventfd, 120),
	F(smolvm_backend_ops, irqfd, 128),
	Z(smolvm_plugin, 48),
	Z(smolvm_host_api, 200),
	Z(smolvm_device_ops, 72),
	Z(smolvm_io_ops, 24),
	Z(smolvm_vm_config, 24),
	Z(smolvm_mem_region, 32),
	Z(smolvm_x86_boot, 56),
	Z(smolvm_exit, 40),
	Z(smolvm_backend_ops, 136),
	check("sizeof(struct smolvm_option)", sizeof(struct smolvm_option), 32, 0);

	E(SMOLVM_ABI_MAJOR, 1);
	E(SMOLVM_LOG_ERROR, 0);
	E(SMOLVM_LOG_WARN, 1);
	E(SMOLVM_LOG_INFO, 2);
	E(SMOLVM_LOG_DEBUG, 3);
	E(SMOLVM_SPACE_PIO, 1);
	E(SMOLVM_SPACE_MMIO, 2);
	E(SMOLVM_STATE_U8, 1);
	E(SMOLVM_STATE_U16, 2);
	E(SMOLVM_STATE_U32, 3);
	E(SMOLVM_STATE_U64, 4);
	E(SMOLVM_STATE_BYTES, 5);
	E(SMOLVM_PLUGIN_BACKEND, 1);
	E(SMOLVM_PLUGIN_DEVICE, 2);
	E(SMOLVM_QUIRKS_AUTO, 0);
	E(SMOLVM_QUIRKS_ON, 1);
	E(SMOLVM_QUIRKS_OFF, 2);
	E(SMOLVM_QUIRK_SOFT_EMULATION, 1);
	E(SMOLVM_BOOT_LONG64, 1);
	E(SMOLVM_EXIT_NONE, 0);
	E(SMOLVM_EXIT_PIO, 1);
	E(SMOLVM_EXIT_MMIO, 2);
	E(SMOLVM_EXIT_INTR, 3);
	E(SMOLVM_EXIT_SHUTDOWN, 4);
	E(SMOLVM_EXIT_RESET, 5);
	E(SMOLVM_EXIT_POWEROFF, 6);
	E(SMOLVM_EXIT_HLT, 7);
	E(SMOLVM_OPT_STRING, 1); /* ABI 1.2 */
	E(SMOLVM_OPT_INT, 2);
	E(SMOLVM_OPT_BOOL, 3);
	E(SMOLVM_OPT_PATH, 4);
	E(SMOLVM_OPT_LIST, 5);
	E(SMOLVM_OPT_REQUIRED, 1);
	E(SMOLVM_OPT_ONE_OR_LIST, 2);
	if (strcmp(SMOLVM_PLUGIN_SYMBOL, "smolvm_plugin_v1")) {
		printf("FAIL: SMOLVM_PLUGIN_SYMBOL is \"%s\"\n", SMOLVM_PLUGIN_SYMBOL);
		failures++;
	}
}

/* A plugin built against a newer header meets an older host: the host's
 * table ends before an entry, or has it NULL. */
static const char *fake_path(smolvm_ctx *ctx, const char *key)
{
	(void)ctx;
	return key;
}

static const char *fake_name(smolvm_ctx *ctx)
{
	(void)ctx;
	return "tally0";
}

static void has(void)
{
	struct smolvm_host_api api;

	memset(&api, 0, sizeof(api));
	api.struct_size = sizeof(api);
	api.config_path = fake_path;
	if (!SMOLVM_HAS(&api, config_path)) {
		printf("FAIL: SMOLVM_HAS: a full table with the entry set\n");
		failures++;
	}
	api.struct_size = (uint32_t)offsetof(struct smolvm_host_api, config_path);
	if (SMOLVM_HAS(&api, config_path)) {
		printf("FAIL: SMOLVM_HAS: a table that ends before the entry\n");
		failures++;
	}
	api.struct_size = (uint32_t)offsetof(struct smolvm_host_api, config_path) + 4;
	if (SMOLVM_HAS(&api, config_path)) {
		printf("FAIL: SMOLVM_HAS: a table that ends inside the entry\n");
		failures++;
	}
	api.struct_size = sizeof(api);
	api.config_path = NULL;
	if (SMOLVM_HAS(&api, config_path)) {
		printf("FAIL: SMOLVM_HAS: an entry that is NULL\n");
		failures++;
	}
	/* ABI 1.3's entry, from a 1.2 host (a table that ends at irq_claim) */
	api.instance_name = fake_name;
	if (!SMOLVM_HAS(&api, instance_name)) {
		printf("FAIL: SMOLVM_HAS: instance_name in a full table\n");
		failures++;
	}
	api.struct_size = (uint32_t)(offsetof(struct smolvm_host_api, irq_claim) +
				     sizeof(api.irq_claim));
	if (SMOLVM_HAS(&api, instance_name)) {
		printf("FAIL: SMOLVM_HAS: instance_name past a 1.2 host's table\n");
		failures++;
	}
}

/* smolvm_state_load_fields with a fake reader: a field added in state
 * version 2 is not asked for when version-1 state is restored. */
struct dev_state {
	uint32_t a;
	uint64_t b; /* state version 2 */
};

static const struct smolvm_state_field fields[] = {
	SMOLVM_FIELD(struct dev_state, a, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct dev_state, b, SMOLVM_STATE_U64, 2),
};

static char asked[64];

static int fake_get(struct smolvm_state_reader *r, const char *name, enum smolvm_state_type type,
		    void *data, uint32_t len)
{
	(void)r;
	strncat(asked, name, sizeof(asked) - strlen(asked) - 1);
	if (type == SMOLVM_STATE_U32 && len == 4)
		*(uint32_t *)data = 7;
	else if (type == SMOLVM_STATE_U64 && len == 8)
		*(uint64_t *)data = 9;
	else
		return -EINVAL;
	return 0;
}

static void since(void)
{
	struct smolvm_host_api api;
	struct dev_state st = { 1, 1 };

	memset(&api, 0, sizeof(api));
	api.struct_size = sizeof(api);
	api.state_get = fake_get;
	if (smolvm_state_load_fields(&api, NULL, fields, SMOLVM_ARRAY_LEN(fields), &st, 1) ||
	    strcmp(asked, "a") || st.a != 7 || st.b != 1) {
		printf("FAIL: version-1 state: asked for \"%s\", a=%u b=%llu\n", asked, st.a,
		       (unsigned long long)st.b);
		failures++;
	}
	asked[0] = 0;
	if (smolvm_state_load_fields(&api, NULL, fields, SMOLVM_ARRAY_LEN(fields), &st, 2) ||
	    strcmp(asked, "ab") || st.b != 9) {
		printf("FAIL: version-2 state: asked for \"%s\", b=%llu\n", asked,
		       (unsigned long long)st.b);
		failures++;
	}
}

int main(void)
{
	layout();
	has();
	since();
	if (failures)
		return 1;
	printf("abi: ABI %d.%d headers keep the 1.0 layout\n", SMOLVM_ABI_MAJOR, SMOLVM_ABI_MINOR);
	return 0;
}
