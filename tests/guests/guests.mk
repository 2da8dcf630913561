# Freestanding test guests (ELF64, loaded at 1 MiB; 64-bit Linux-protocol
# entry for smolvm, PVH note for QEMU). Included by the top-level Makefile.
# Uses $(BUILD) (default: build); defines TEST_GUESTS and target test-guests.

BUILD ?= build
# Rules here must not become the includer's default goal.
GUEST_SAVED_GOAL := $(.DEFAULT_GOAL)
GUEST_SRC := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
GUEST_OUT := $(BUILD)/guest
# Objects beside the images, not among them: a checkout whose $(BUILD)/guest
# is shared with another (a worktree's symlink) keeps its objects to itself.
GUEST_OBJ := $(BUILD)/guest-obj

# Flags, runtime and object rules: the guest kit (guest-kit.mk), which
# `make install` installs for guests built out of the tree.
GUEST_KIT := $(GUEST_SRC)
GUEST_KIT_OBJ := $(GUEST_OBJ)
include $(GUEST_SRC)/guest-kit.mk

GUEST_COMMON := $(GUEST_KIT_RUNTIME)
GUEST_ticker := $(GUEST_SRC)/ticker.c
GUEST_AP := $(GUEST_KIT_SMP)
GUEST_smp := $(GUEST_SRC)/smp.c $(GUEST_AP)
GUEST_probe := $(GUEST_SRC)/probe.c $(GUEST_SRC)/probe_entry.S
GUEST_virtio := $(GUEST_SRC)/virtio.c $(GUEST_KIT_VIRTIO)
GUEST_compute := $(GUEST_SRC)/compute.c $(GUEST_AP)
GUEST_vsock := $(GUEST_SRC)/vsock.c $(GUEST_KIT_VIRTIO)
GUEST_fill := $(GUEST_SRC)/fill.c $(GUEST_AP)

guest_objs = $(call guest_kit_objs,$(1))

TEST_GUESTS := $(GUEST_OUT)/ticker.elf $(GUEST_OUT)/smp.elf $(GUEST_OUT)/probe.elf \
	$(GUEST_OUT)/virtio.elf $(GUEST_OUT)/compute.elf $(GUEST_OUT)/vsock.elf \
	$(GUEST_OUT)/fill.elf

.PHONY: test-guests
test-guests: $(TEST_GUESTS)

$(TEST_GUESTS): $(GUEST_OUT)/%.elf: $(GUEST_SRC)/guest.ld
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

$(GUEST_OUT)/ticker.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_ticker))
$(GUEST_OUT)/smp.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_smp))
$(GUEST_OUT)/probe.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_probe))
$(GUEST_OUT)/virtio.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_virtio))
$(GUEST_OUT)/compute.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_compute))
$(GUEST_OUT)/vsock.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_vsock))
$(GUEST_OUT)/fill.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_fill))

# Code that also runs at CPL3 (USER_TEXT) must not call into kernel text.
$(call guest_objs,$(GUEST_virtio) $(GUEST_vsock) $(GUEST_SRC)/fill.c): GUEST_CFLAGS += $(GUEST_USER_CFLAGS)

.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
