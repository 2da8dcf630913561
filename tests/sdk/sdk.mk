# The SDK's own checks (tests/sdk), included by the top-level Makefile.
#
#   make check-sdk     plugins/ and backends/ use nothing but the SDK
#                      (tests/sdk/check-plugins.sh), and SMOLVM_FIELD refuses
#                      a wrong type tag at compile time
#                      (tests/sdk/check-field-tags.sh); also run by `make
#                      test` through tests/integration/sdk.test.sh
#   make sdk-guest     the test guest that drives the SDK's example devices
#
# The guest is built like tests/guests/ (its flags, linker script and
# common objects), into $(BUILD)/tests/sdk/.

SDK_GUEST := $(BUILD)/tests/sdk/sdkguest.elf
SDK_GUEST_OBJ := $(BUILD)/tests/sdk/obj/sdkguest.o
SDK_GUEST_COMMON := $(call guest_objs,$(GUEST_COMMON) common/virtio.c)

$(SDK_GUEST_OBJ): tests/sdk/guest/sdkguest.c
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) -fno-tree-loop-distribute-patterns -fno-jump-tables \
		-MMD -MP -c -o $@ $<

$(SDK_GUEST): $(SDK_GUEST_OBJ) $(SDK_GUEST_COMMON) $(GUEST_SRC)/guest.ld
	$(call say,LINK,$@)
	$(Q)$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

.PHONY: sdk-guest check-sdk
sdk-guest: $(SDK_GUEST)

check-sdk: $(SMOLVM) $(PLUGIN_SOS)
	$(Q)tests/sdk/check-plugins.sh $(BUILD)
	$(Q)tests/sdk/check-field-tags.sh

# The integration tests (tests/integration/sdk.test.sh) boot it.
test integration: $(SDK_GUEST)
