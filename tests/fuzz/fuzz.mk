# Fuzz targets (libFuzzer, clang) for the parsers of untrusted bytes.
# `make fuzz` runs each briefly on its committed seed corpus (part of
# `make test`); run longer by hand, e.g.
#   build/tests/fuzz/fuzz_state -max_total_time=600 tests/fuzz/corpus/state

FUZZ_CC ?= clang
FUZZ_TIME ?= 10
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -Icore $(SDK_CFLAGS) $(LUA_CFLAGS) \
	$(shell $(PKG_CONFIG) --cflags libsodium)
FUZZ_TARGETS := state kernel script bundle manifest virtq agent vsock oci 9p
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/fuzz_%)

# Each target links the core sources it exercises.
.SECONDEXPANSION:
FUZZ_SRCS_state := core/machine/state.c core/lib/err.c
FUZZ_SRCS_kernel := core/arch/x86/boot.c core/arch/x86/mptable.c core/lib/err.c
FUZZ_SRCS_script := core/script/script.c core/script/sandbox.c core/script/declare.c \
	core/machine/config.c core/lib/size.c core/lib/src_lines.c core/lib/err.c
FUZZ_SRCS_bundle := core/snapshot/bundle.c core/snapshot/manifest.c core/snapshot/snapmem.c \
	core/snapshot/lineage.c core/snapshot/sign.c core/lib/dirs.c core/lib/err.c
# ...and the libraries beyond those every target gets.
FUZZ_LIBS_bundle := $(shell $(PKG_CONFIG) --libs libsodium)
FUZZ_SRCS_manifest := core/snapshot/manifest.c core/lib/err.c
FUZZ_SRCS_oci := core/registry/oci.c core/registry/auth.c core/lib/err.c
FUZZ_LIBS_oci := $(shell $(PKG_CONFIG) --libs libsodium jansson)
FUZZ_SRCS_virtq := sdk/src/virtio_mmio.c
FUZZ_SRCS_agent := sdk/src/agent_proto.c
# virtio-9p: the decoder and the server over an empty temporary share
FUZZ_SRCS_9p := plugins/virtio-9p/proto.c plugins/virtio-9p/server.c
# fuzz_vsock.c #includes the plugin (to run its thread's work itself).
FUZZ_SRCS_vsock := sdk/src/virtio_mmio.c
$(BUILD)/tests/fuzz/fuzz_vsock: plugins/virtio-vsock/vsock.c
$(BUILD)/tests/fuzz/fuzz_virtq $(BUILD)/tests/fuzz/fuzz_vsock: tests/fuzz/fake_host.h

$(BUILD)/tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRCS_$$*)
	$(call say,FUZZCC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRCS_$*) $(LUA_LIBS) $(INIH_LIBS) $(SNAP_LIBS) \
		$(FUZZ_LIBS_$*) -pthread

.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	$(Q)for t in $(FUZZ_TARGETS); do \
		mkdir -p $(BUILD)/tests/fuzz/corpus-$$t; \
		echo "fuzz_$$t: $(FUZZ_TIME) s"; \
		$(BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 \
			-rss_limit_mb=2048 $(BUILD)/tests/fuzz/corpus-$$t tests/fuzz/corpus/$$t \
			> $(BUILD)/tests/fuzz/fuzz_$$t.log 2>&1 \
			|| { tail -40 $(BUILD)/tests/fuzz/fuzz_$$t.log; exit 1; }; \
		tail -1 $(BUILD)/tests/fuzz/fuzz_$$t.log; \
	done
