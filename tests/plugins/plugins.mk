# Deliberately broken plugins, one per loader refusal (plus the few that
# must load, and escape.c, a device gone bad for the syscall filter), each
# one tiny .c built like a real plugin: against
# sdk/include only, -fvisibility=hidden, -z defs.

TEST_PLUGIN_DIR := $(BUILD)/tests/plugins
TEST_PLUGIN_SRCS := $(wildcard tests/plugins/*.c)
TEST_PLUGINS := $(TEST_PLUGIN_SRCS:tests/plugins/%.c=$(TEST_PLUGIN_DIR)/%.so)

$(TEST_PLUGIN_DIR)/%.so: tests/plugins/%.c
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(CFLAGS) -shared -Wl,-z,defs -o $@ $<

.PHONY: test-plugins
test-plugins: $(TEST_PLUGINS)
