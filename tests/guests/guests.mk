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

# GCC-specific flags: the host CC may be something else.
GUEST_CC ?= gcc
GUEST_CFLAGS := -std=c11 -Wall -Wextra -Werror -O2 -g \
	-ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-builtin \
	-mno-red-zone -mgeneral-regs-only -mcmodel=small -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-I$(GUEST_SRC)/common
GUEST_ASFLAGS := -Wall -Werror -g -I$(GUEST_SRC)/common
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_SRC)/guest.ld \
	-Wl,--build-id=none -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack

GUEST_COMMON := common/entry.S common/isr.S common/start.c common/print.c \
	common/hw.c common/lib.c
GUEST_ticker := ticker.c
GUEST_AP := common/ap.c common/ap_tramp.S
GUEST_smp := smp.c $(GUEST_AP)
GUEST_probe := probe.c probe_entry.S
GUEST_virtio := virtio.c common/virtio.c
GUEST_compute := compute.c $(GUEST_AP)
GUEST_vsock := vsock.c common/virtio.c
GUEST_fill := fill.c $(GUEST_AP)

guest_objs = $(patsubst %,$(GUEST_OBJ)/%.o,$(basename $(1)))

GUEST_ALL_SRCS := $(GUEST_COMMON) $(GUEST_ticker) $(GUEST_smp) $(GUEST_probe) \
	$(GUEST_virtio) $(GUEST_compute) $(GUEST_vsock) $(GUEST_fill)
GUEST_C_OBJS := $(call guest_objs,$(sort $(filter %.c,$(GUEST_ALL_SRCS))))
GUEST_S_OBJS := $(call guest_objs,$(sort $(filter %.S,$(GUEST_ALL_SRCS))))

TEST_GUESTS := $(GUEST_OUT)/ticker.elf $(GUEST_OUT)/smp.elf $(GUEST_OUT)/probe.elf \
	$(GUEST_OUT)/virtio.elf $(GUEST_OUT)/compute.elf $(GUEST_OUT)/vsock.elf \
	$(GUEST_OUT)/fill.elf

.PHONY: test-guests
test-guests: $(TEST_GUESTS)

# Static pattern rules: they win over any generic %.o rule of the includer.
$(GUEST_C_OBJS): $(GUEST_OBJ)/%.o: $(GUEST_SRC)/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -MMD -MP -c -o $@ $<

$(GUEST_S_OBJS): $(GUEST_OBJ)/%.o: $(GUEST_SRC)/%.S
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -MMD -MP -c -o $@ $<

$(TEST_GUESTS): $(GUEST_OUT)/%.elf: $(GUEST_SRC)/guest.ld
	$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

$(GUEST_OUT)/ticker.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_ticker))
$(GUEST_OUT)/smp.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_smp))
$(GUEST_OUT)/probe.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_probe))
$(GUEST_OUT)/virtio.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_virtio))
$(GUEST_OUT)/compute.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_compute))
$(GUEST_OUT)/vsock.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_vsock))
$(GUEST_OUT)/fill.elf: $(call guest_objs,$(GUEST_COMMON) $(GUEST_fill))

# Code that also runs at CPL3 (USER_TEXT) must not call into kernel text:
# no memset/memcpy calls made up by GCC, no jump tables in kernel .rodata.
$(call guest_objs,$(GUEST_virtio) $(GUEST_vsock) fill.c): GUEST_CFLAGS += -fno-tree-loop-distribute-patterns -fno-jump-tables

-include $(GUEST_C_OBJS:.o=.d) $(GUEST_S_OBJS:.o=.d)

.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
