# The SDK's own checks (tests/sdk), included by the top-level Makefile.
#
#   make check-sdk     plugins/ and backends/ use nothing but the SDK
#                      (tests/sdk/check-plugins.sh), and SMOLVM_FIELD refuses
#                      a wrong type tag at compile time
#                      (tests/sdk/check-field-tags.sh); also run by `make
#                      test` through tests/integration/sdk.test.sh; and
#                      the guide's compile line, which the examples'
#                      Makefiles share, builds a plugin using O_CLOEXEC,
#                      pipe2 and accept4 (tests/sdk/check-build-flags.sh)
#   make sdk-guest     the test guest that drives the SDK's example devices
#
# The guest is built with the guest kit (tests/guests/guest-kit.mk) into
# $(BUILD)/guest/, where scripts find it as "guest:sdkguest.elf".

SDK_GUEST := $(GUEST_OUT)/sdkguest.elf
SDK_GUEST_OBJS := $(call guest_objs,tests/sdk/guest/sdkguest.c $(GUEST_KIT_RUNTIME) \
	$(GUEST_KIT_VIRTIO))

$(call guest_objs,tests/sdk/guest/sdkguest.c): GUEST_CFLAGS += $(GUEST_USER_CFLAGS)

$(SDK_GUEST): $(SDK_GUEST_OBJS) $(GUEST_SRC)/guest.ld
	$(call say,LINK,$@)
	@mkdir -p $(@D)
	$(Q)$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

.PHONY: sdk-guest check-sdk
sdk-guest: $(SDK_GUEST)

check-sdk: $(SMOLVM) $(PLUGIN_SOS)
	$(Q)tests/sdk/check-plugins.sh $(BUILD)
	$(Q)tests/sdk/check-field-tags.sh
	$(Q)tests/sdk/check-build-flags.sh

# The integration tests (tests/integration/sdk.test.sh) boot it.
test integration: $(SDK_GUEST)
