# The smolvm guest kit: build a freestanding x86-64 guest, an ELF that
# smolvm boots like a kernel, from your own C and the kit's small runtime
# (entry, interrupts, serial output, PIT/LAPIC/IOAPIC, a virtio-mmio
# driver). The test guests of smolvm's tree are built with it; `make
# install` installs it in $(pkg-config --variable=guestkitdir smolvm-plugin).
#
#   GUEST_KIT := $(shell pkg-config --variable=guestkitdir smolvm-plugin)
#   include $(GUEST_KIT)/guest-kit.mk
#   myguest.elf: $(call guest_kit_objs,myguest.c $(GUEST_KIT_RUNTIME))
#   	$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $^
#
# guest_kit_objs maps sources (yours, relative to the Makefile, and the
# kit's, common/...) to objects under $(GUEST_KIT_OBJ) (default:
# guest-obj); the rules here build them. The kit's README.md says what the
# runtime offers and the state smolvm enters a guest in.

GUEST_KIT ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
GUEST_KIT_OBJ ?= guest-obj

# GCC: the flags are GCC's (the host's cc may be another compiler).
GUEST_CC ?= gcc
GUEST_CFLAGS := -std=c11 -Wall -Wextra -Werror -O2 -g \
	-ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-builtin \
	-mno-red-zone -mgeneral-regs-only -mcmodel=small -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-I$(GUEST_KIT)/common
GUEST_ASFLAGS := -Wall -Werror -g -I$(GUEST_KIT)/common
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_KIT)/guest.ld \
	-Wl,--build-id=none -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack
# Code that also runs at CPL3 (USER_TEXT, the virtio driver's polling)
# must not call into kernel text: no memset/memcpy calls made up by GCC,
# no jump tables in kernel .rodata. Add these to such objects' flags.
GUEST_USER_CFLAGS := -fno-tree-loop-distribute-patterns -fno-jump-tables

# The runtime every guest links; add GUEST_KIT_VIRTIO for virtio-mmio
# devices, GUEST_KIT_SMP to start the other vCPUs.
GUEST_KIT_RUNTIME := common/entry.S common/isr.S common/start.c common/print.c \
	common/hw.c common/lib.c
GUEST_KIT_VIRTIO := common/virtio.c
GUEST_KIT_SMP := common/ap.c common/ap_tramp.S

guest_kit_objs = $(patsubst %,$(GUEST_KIT_OBJ)/%.o,$(basename $(1)))

# The kit's sources are found in $(GUEST_KIT), yours next to the Makefile.
$(GUEST_KIT_OBJ)/common/%.o: $(GUEST_KIT)/common/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_USER_CFLAGS) -MMD -MP -c -o $@ $<
$(GUEST_KIT_OBJ)/common/%.o: $(GUEST_KIT)/common/%.S
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -MMD -MP -c -o $@ $<
$(GUEST_KIT_OBJ)/%.o: %.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -MMD -MP -c -o $@ $<
$(GUEST_KIT_OBJ)/%.o: %.S
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(GUEST_KIT_OBJ) -name '*.d' 2> /dev/null)
