# Unit tests: one Check runner (tests/unit/main.c) with a suite per module.
# `make unit` builds and runs it; `make unit-asan` does the same under
# AddressSanitizer + UndefinedBehaviorSanitizer. CK_FORK=no to debug.
#
# The runner links the core objects (compiled again here, so the ASan
# build instruments them), the KVM backend's quirk decoder, the UART
# plugin's source and the agent protocol's codec; it dlopens the test
# plugins and the real uart.so and kvm.so (without using KVM), and reads
# the golden bundles in tests/golden.

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_LINKED_SRCS := $(CORE_LIB_SRCS) backends/kvm/quirks.c plugins/uart/uart.c \
	sdk/src/agent_proto.c
UNIT_CFLAGS = $(CORE_CFLAGS) $(CHECK_CFLAGS) -Icore -Ibackends/kvm \
	-DTEST_PLUGIN_DIR='"$(abspath $(TEST_PLUGIN_DIR))"' \
	-DUART_SO='"$(abspath $(BUILD)/plugins/uart.so)"' \
	-DKVM_SO='"$(abspath $(BUILD)/plugins/kvm.so)"' \
	-DGOLDEN_DIR='"$(abspath tests/golden)"'
UNIT_ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
UNIT_ENV := UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1

# $(1): output directory, $(2): extra compile and link flags
define unit_variant
$(1)/obj/%.o: %.c
	$$(call say,CC,$$@)
	@mkdir -p $$(dir $$@)
	$(Q)$$(CC) $$(UNIT_CFLAGS) $$(CFLAGS) $(2) -c $$< -o $$@

$(1)/unit: $$(patsubst %.c,$(1)/obj/%.o,$$(UNIT_SRCS) $$(UNIT_LINKED_SRCS))
	$$(call say,LINK,$$@)
	$(Q)$$(CC) $$(CFLAGS) $(2) -o $$@ $$^ $$(CHECK_LIBS) $$(CORE_LIBS)
endef

$(eval $(call unit_variant,$(BUILD)/tests/unit,))
$(eval $(call unit_variant,$(BUILD)/tests/unit-asan,$(UNIT_ASAN_FLAGS)))

.PHONY: unit unit-asan
UNIT_PLUGINS := $(BUILD)/plugins/uart.so $(BUILD)/plugins/kvm.so

unit: $(BUILD)/tests/unit/unit test-plugins $(UNIT_PLUGINS)
	$(Q)$(UNIT_ENV) $<

unit-asan: $(BUILD)/tests/unit-asan/unit test-plugins $(UNIT_PLUGINS)
	$(Q)$(UNIT_ENV) $<
