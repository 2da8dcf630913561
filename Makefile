# smolvm: one non-recursive Makefile. `make` builds the VMM and its plugins,
# `make guest` the guests, `make test` everything the tests need and runs them.

# The one place the version is defined: the binary, bundle manifests and
# the SDK's .pc file take it from here.
SMOLVM_VERSION := 0.1.0

BUILD ?= build
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
WERROR ?= 1
V ?= 0

CC ?= cc
PKG_CONFIG ?= pkg-config

ifeq ($(V),0)
Q := @
say = @printf '  %-7s %s\n' $(1) $(2);
else
Q :=
say :=
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wformat=2 -Wvla -Wno-format-truncation
ifeq ($(WERROR),1)
WARN += -Werror
endif

CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP
SDK_CFLAGS := -Isdk/include

LUA_CFLAGS := $(shell $(PKG_CONFIG) --cflags lua5.4)
LUA_LIBS := $(shell $(PKG_CONFIG) --libs lua5.4)
INIH_LIBS := $(shell $(PKG_CONFIG) --libs inih)
SNAP_LIBS := $(shell $(PKG_CONFIG) --libs libzstd libxxhash)
SECURITY_LIBS := $(shell $(PKG_CONFIG) --libs libsodium libseccomp)
JSON_LIBS := $(shell $(PKG_CONFIG) --libs jansson)
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check)

# ---- the VMM ---------------------------------------------------------------

CORE_SRCS := $(shell find core -name '*.c' | sort)
CORE_LIB_SRCS := $(filter-out core/main.c,$(CORE_SRCS))
CORE_CFLAGS := $(BASE_CFLAGS) $(SDK_CFLAGS) -iquote core $(LUA_CFLAGS) \
	-DSMOLVM_LIBDIR='"$(LIBDIR)"' -DSMOLVM_VERSION='"$(SMOLVM_VERSION)"' -pthread
CORE_LIBS := $(LUA_LIBS) $(INIH_LIBS) $(SNAP_LIBS) $(SECURITY_LIBS) $(JSON_LIBS) $(CURL_LIBS) -ldl -pthread

SMOLVM := $(BUILD)/smolvm

$(BUILD)/core/%.o: core/%.c
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CORE_CFLAGS) $(CFLAGS) -c $< -o $@

# The guest agent protocol's codec (sdk/src/agent_proto.c) is shared with
# the guest agent; the core links its own build of it.
AGENT_PROTO_OBJ := $(BUILD)/core/sdk/agent_proto.o

$(AGENT_PROTO_OBJ): sdk/src/agent_proto.c
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CORE_CFLAGS) $(CFLAGS) -c $< -o $@

# The core's layers (tests/check-layers.sh): an #include that points up
# fails the build.
LAYERS_OK := $(BUILD)/core/layers.ok
$(LAYERS_OK): tests/check-layers.sh $(shell find core -type f)
	$(call say,LAYERS,core)
	@mkdir -p $(dir $@)
	$(Q)tests/check-layers.sh core && touch $@

$(SMOLVM): $(CORE_SRCS:%.c=$(BUILD)/%.o) $(AGENT_PROTO_OBJ) $(LAYERS_OK)
	$(call say,LINK,$@)
	$(Q)$(CC) $(CFLAGS) -rdynamic -o $@ $(filter %.o,$^) $(CORE_LIBS)

# ---- plugins: each folder under backends/ and plugins/ is one .so ---------
# They see sdk/include and nothing of core/.

PLUGIN_CFLAGS := $(BASE_CFLAGS) $(SDK_CFLAGS) -fPIC -fvisibility=hidden -pthread
PLUGIN_DIRS := $(wildcard backends/*/ plugins/*/)
PLUGIN_SOS := $(foreach d,$(PLUGIN_DIRS),$(BUILD)/plugins/$(notdir $(d:%/=%)).so)

$(BUILD)/plugins/obj/%.o: %.c
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(PLUGIN_EXTRA_CFLAGS) $(CFLAGS) -c $< -o $@

# Libraries a plugin needs: PLUGIN_LIBS_<folder> for the link, and its
# headers (as system headers: their warnings are not ours) for compiling.
SLIRP_CFLAGS := $(patsubst -I%,-isystem %,$(shell $(PKG_CONFIG) --cflags slirp 2>/dev/null))
PLUGIN_LIBS_virtio-net := $(shell $(PKG_CONFIG) --libs slirp 2>/dev/null)
$(BUILD)/plugins/obj/plugins/virtio-net/%.o: PLUGIN_EXTRA_CFLAGS := $(SLIRP_CFLAGS)

# The SDK's helpers (virtio-mmio transport) as a static library that
# plugins link; it uses only the host API, like the plugins themselves.
SDK_LIB := $(BUILD)/sdk/libsmolvm-sdk.a
SDK_LIB_OBJS := $(patsubst %.c,$(BUILD)/plugins/obj/%.o,$(wildcard sdk/src/*.c))

$(SDK_LIB): $(SDK_LIB_OBJS)
	$(call say,AR,$@)
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^

define plugin_rule
$(BUILD)/plugins/$(notdir $(1:%/=%)).so: $(patsubst %.c,$(BUILD)/plugins/obj/%.o,$(wildcard $(1)*.c)) $(SDK_LIB)
	$$(call say,LINK,$$@)
	$(Q)$$(CC) $$(CFLAGS) -shared -pthread -Wl,-z,defs -o $$@ $$(filter %.o,$$^) $(SDK_LIB) $$(PLUGIN_LIBS_$(notdir $(1:%/=%)))
endef
$(foreach d,$(PLUGIN_DIRS),$(eval $(call plugin_rule,$(d))))

.PHONY: all
all: $(SMOLVM) $(PLUGIN_SOS)
.DEFAULT_GOAL := all

# ---- guests ----------------------------------------------------------------

include tests/guests/guests.mk

GUEST_DIR := $(BUILD)/guest

# The guest agent (scripts/guest/agent/), static, with the protocol codec;
# build-initramfs.sh puts it into the initramfs as /sbin/smolvm-agent.
AGENT_CC ?= gcc
AGENT_BIN := $(GUEST_DIR)/smolvm-agent
AGENT_SRCS := $(wildcard scripts/guest/agent/*.c) sdk/src/agent_proto.c
AGENT_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(SDK_CFLAGS) -O2 \
	-ffunction-sections -fdata-sections
AGENT_LDFLAGS := -static -s -Wl,--gc-sections

$(AGENT_BIN): $(AGENT_SRCS) $(wildcard scripts/guest/agent/*.h) sdk/include/smolvm/agent.h
	$(call say,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(AGENT_CC) $(AGENT_CFLAGS) $(AGENT_LDFLAGS) -o $@ $(AGENT_SRCS)

.PHONY: guest guest-linux test-guests agent
agent: $(AGENT_BIN)
# tests/integration/agent.test.sh runs it on this host
integration: $(AGENT_BIN)
guest: guest-linux test-guests
guest-linux: $(GUEST_DIR)/disk.img $(AGENT_BIN)
	$(Q)scripts/guest/build-kernel.sh $(GUEST_DIR)
	$(Q)SMOLVM_AGENT=$(abspath $(AGENT_BIN)) scripts/guest/build-initramfs.sh $(GUEST_DIR)

# An empty ext4 disk for the example machines (scripts/linux-net-disk.lua).
$(GUEST_DIR)/disk.img:
	@mkdir -p $(dir $@)
	$(Q)truncate -s 64M $@.tmp && mkfs.ext4 -q -F -L smolvm $@.tmp && mv $@.tmp $@
test-guests: $(TEST_GUESTS)

# ---- tests -----------------------------------------------------------------

include tests/tests.mk

.PHONY: demo
demo:
	$(Q)scripts/demo.sh

.PHONY: clean
clean:
	rm -rf $(BUILD)/core $(BUILD)/plugins $(BUILD)/tests $(SMOLVM) $(BUILD)/guest-obj \
		$(AGENT_BIN)

# ---- install / uninstall -------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=staging] [LIBDIR=$(PREFIX)/lib]:
# the binary, its backends and plugins in $(LIBDIR)/smolvm (which the binary
# searches: it is compiled in, and <bindir>/../lib/smolvm is searched too),
# the plugin SDK (headers, libsmolvm-sdk.a, smolvm-plugin.pc, examples), the
# Lua scripts, the docs and a man page. make uninstall removes exactly that.

BINDIR ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/smolvm
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
PLUGINDIR := $(LIBDIR)/smolvm
INSTALL ?= install

SDK_ABI_MAJOR := $(shell sed -n 's/^\#define SMOLVM_ABI_MAJOR \([0-9]*\)/\1/p' sdk/include/smolvm/plugin.h)
SDK_ABI_MINOR := $(shell sed -n 's/^\#define SMOLVM_ABI_MINOR \([0-9]*\)/\1/p' sdk/include/smolvm/plugin.h)
SDK_HEADERS := $(wildcard sdk/include/smolvm/*.h)
SDK_PC := $(BUILD)/sdk/smolvm-plugin.pc
SDK_EXAMPLES := $(patsubst sdk/examples/%/,%,$(wildcard sdk/examples/*/))
example_files = $(notdir $(wildcard $(addprefix sdk/examples/$(1)/,README.md Makefile *.c *.h *.lua)))
# linux-net-disk.lua wants a disk image and its overlay beside the build
# tree's guest: not installed.
INSTALL_SCRIPTS := $(filter-out scripts/linux-net-disk.lua,$(wildcard scripts/*.lua))
GUEST_KIT_DIR := $(DATADIR)/smolvm/guest-kit
GUEST_KIT_FILES := tests/guests/guest-kit.mk tests/guests/guest.ld tests/guests/README.md \
	tests/guests/ticker.c tests/sdk/guest/sdkguest.c
GUEST_KIT_COMMON := $(wildcard tests/guests/common/*.[chS])
PREBUILT_GUESTS := $(GUEST_OUT)/ticker.elf $(GUEST_OUT)/sdkguest.elf
EXAMPLE_FILES := $(shell find scripts/examples -type f | sort)
EXAMPLE_DIRS := $(sort $(patsubst scripts/%/,%,$(dir $(EXAMPLE_FILES))))
INSTALL_DOCS := $(wildcard docs/*.md)
MAN1 := docs/smolvm.1

# The plugin directory is compiled into the binary: a change of LIBDIR
# rebuilds the one object that uses it.
LIBDIR_STAMP := $(BUILD)/core/libdir.stamp
$(LIBDIR_STAMP): FORCE
	@mkdir -p $(dir $@)
	$(Q)echo '$(LIBDIR)' | cmp -s - $@ || echo '$(LIBDIR)' > $@
$(BUILD)/core/session/host_config.o: $(LIBDIR_STAMP)

# Rewritten only when its contents change.
$(SDK_PC): sdk/smolvm-plugin.pc.in FORCE
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' \
		-e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@VERSION@|$(SMOLVM_VERSION)|g' \
		-e 's|@GUESTKITDIR@|$(GUEST_KIT_DIR)|g' \
		-e 's|@ABI_MAJOR@|$(SDK_ABI_MAJOR)|g' -e 's|@ABI_MINOR@|$(SDK_ABI_MINOR)|g' \
		$< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

.PHONY: FORCE sdk install uninstall
FORCE:
sdk: $(SDK_LIB) $(SDK_PC)

install: all sdk $(PREBUILT_GUESTS)
	$(call say,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(PLUGINDIR)/guest \
		$(DESTDIR)$(GUEST_KIT_DIR)/common \
		$(DESTDIR)$(INCLUDEDIR)/smolvm $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(DATADIR)/smolvm/scripts $(DESTDIR)$(MANDIR)/man1 \
		$(addprefix $(DESTDIR)$(DOCDIR)/examples/,$(SDK_EXAMPLES))
	$(Q)$(INSTALL) -m 755 $(SMOLVM) $(DESTDIR)$(BINDIR)/smolvm
	$(Q)$(INSTALL) -m 755 $(PLUGIN_SOS) $(DESTDIR)$(PLUGINDIR)/
	$(Q)$(INSTALL) -m 644 $(SDK_HEADERS) $(DESTDIR)$(INCLUDEDIR)/smolvm/
	$(Q)$(INSTALL) -m 644 $(SDK_LIB) $(DESTDIR)$(LIBDIR)/
	$(Q)$(INSTALL) -m 644 $(SDK_PC) $(DESTDIR)$(PKGCONFIGDIR)/
	$(Q)$(INSTALL) -m 644 $(INSTALL_SCRIPTS) $(DESTDIR)$(DATADIR)/smolvm/scripts/
	$(Q)$(INSTALL) -m 644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	$(Q)$(INSTALL) -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	$(Q)$(foreach e,$(SDK_EXAMPLES),$(INSTALL) -m 644 \
		$(addprefix sdk/examples/$(e)/,$(call example_files,$(e))) \
		$(DESTDIR)$(DOCDIR)/examples/$(e)/ &&) true
	$(Q)$(foreach d,$(EXAMPLE_DIRS),$(INSTALL) -d $(DESTDIR)$(DATADIR)/smolvm/scripts/$(d) &&) true
	$(Q)$(foreach f,$(EXAMPLE_FILES),$(INSTALL) -m 644 $(f) \
		$(DESTDIR)$(DATADIR)/smolvm/scripts/$(dir $(f:scripts/%=%)) &&) true
	@# the guest kit and prebuilt test guests ("guest:ticker.elf" in scripts)
	$(Q)$(INSTALL) -m 644 $(GUEST_KIT_FILES) $(DESTDIR)$(GUEST_KIT_DIR)/
	$(Q)$(INSTALL) -m 644 $(GUEST_KIT_COMMON) $(DESTDIR)$(GUEST_KIT_DIR)/common/
	$(Q)$(INSTALL) -m 644 $(PREBUILT_GUESTS) $(DESTDIR)$(PLUGINDIR)/guest/
	@# the default guest, when it was built (scripts without `kernel` boot it)
	$(Q)if [ -f $(GUEST_DIR)/vmlinux ] && [ -f $(GUEST_DIR)/initramfs.cpio ]; then \
		$(INSTALL) -m 644 $(GUEST_DIR)/vmlinux $(GUEST_DIR)/initramfs.cpio \
			$(DESTDIR)$(PLUGINDIR)/guest/; fi

# Removes what install put there (for the plugins: those of this tree) and
# then the directories that only smolvm uses, if they are empty.
uninstall:
	$(call say,RM,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(BINDIR)/smolvm \
		$(addprefix $(DESTDIR)$(PLUGINDIR)/,$(notdir $(PLUGIN_SOS))) \
		$(addprefix $(DESTDIR)$(INCLUDEDIR)/smolvm/,$(notdir $(SDK_HEADERS))) \
		$(DESTDIR)$(LIBDIR)/$(notdir $(SDK_LIB)) \
		$(DESTDIR)$(PKGCONFIGDIR)/$(notdir $(SDK_PC)) \
		$(addprefix $(DESTDIR)$(DATADIR)/smolvm/scripts/,$(notdir $(INSTALL_SCRIPTS))) \
		$(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(INSTALL_DOCS))) \
		$(DESTDIR)$(MANDIR)/man1/$(notdir $(MAN1)) \
		$(foreach e,$(SDK_EXAMPLES),$(addprefix $(DESTDIR)$(DOCDIR)/examples/$(e)/,$(call example_files,$(e)))) \
		$(addprefix $(DESTDIR)$(DATADIR)/smolvm/,$(EXAMPLE_FILES)) \
		$(DESTDIR)$(PLUGINDIR)/guest/vmlinux $(DESTDIR)$(PLUGINDIR)/guest/initramfs.cpio \
		$(addprefix $(DESTDIR)$(PLUGINDIR)/guest/,$(notdir $(PREBUILT_GUESTS))) \
		$(addprefix $(DESTDIR)$(GUEST_KIT_DIR)/,$(notdir $(GUEST_KIT_FILES))) \
		$(addprefix $(DESTDIR)$(GUEST_KIT_DIR)/common/,$(notdir $(GUEST_KIT_COMMON)))
	$(Q)for d in $(GUEST_KIT_DIR)/common $(GUEST_KIT_DIR) $(PLUGINDIR)/guest $(PLUGINDIR) $(INCLUDEDIR)/smolvm \
		$(addprefix $(DATADIR)/smolvm/scripts/,$(sort $(EXAMPLE_DIRS)) examples) \
		$(DATADIR)/smolvm/scripts \
		$(DATADIR)/smolvm $(addprefix $(DOCDIR)/examples/,$(SDK_EXAMPLES)) \
		$(DOCDIR)/examples $(DOCDIR); do \
		[ ! -d "$(DESTDIR)$$d" ] || rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d"; done

# ---- SDK checks and the SDK's test guest (tests/sdk) ---------------------

include tests/sdk/sdk.mk

.PHONY: clean-sdk
clean: clean-sdk
clean-sdk:
	rm -rf $(BUILD)/sdk

-include $(shell find $(BUILD)/core $(BUILD)/plugins $(BUILD)/tests -name '*.d' 2>/dev/null)
