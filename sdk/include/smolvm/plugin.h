/* smolvm plugin ABI, version 1.
 *
 * This header is the whole contract between the smolvm core and a plugin
 * (a hypervisor backend or a device). A plugin includes only headers from
 * sdk/include and exports exactly one symbol, `smolvm_plugin_v1`, made with
 * SMOLVM_DEVICE_PLUGIN() or SMOLVM_BACKEND_PLUGIN().
 *
 * Compatibility rules (see docs/abi.md):
 *  - every boundary struct starts with (or carries) its size; structs only
 *    grow at the end, new members are marked with the minor that added them;
 *  - a plugin loads when its ABI major equals the host's and its minor is
 *    not newer than the host's;
 *  - zero / NULL always means "absent", so a smaller struct from an older
 *    plugin reads as "feature not used".
 */
#ifndef SMOLVM_PLUGIN_H
#define SMOLVM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMOLVM_ABI_MAJOR 1
#define SMOLVM_ABI_MINOR 4

#define SMOLVM_EXPORT __attribute__((visibility("default")))
#define SMOLVM_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* True when the table `t` (which carries struct_size) is large enough to
 * contain `field`: test before calling an entry newer than ABI 1.0. */
#define SMOLVM_HAS(t, field)                                                   \
	((t)->struct_size >= offsetof(__typeof__(*(t)), field) + sizeof((t)->field) && \
	 (t)->field != 0)

/* One instance of a plugin as the core sees it: a device, or the backend's
 * VM. Opaque to plugins; passed back to every host API call. */
typedef struct smolvm_ctx smolvm_ctx;
struct smolvm_state_writer;
struct smolvm_state_reader;

enum smolvm_log_level {
	SMOLVM_LOG_ERROR = 0,
	SMOLVM_LOG_WARN = 1,
	SMOLVM_LOG_INFO = 2,
	SMOLVM_LOG_DEBUG = 3,
};

enum smolvm_space {
	SMOLVM_SPACE_PIO = 1,  /* x86 port I/O */
	SMOLVM_SPACE_MMIO = 2, /* guest-physical memory-mapped I/O */
};

/* Handlers for a registered I/O region. They run on vCPU threads, possibly
 * several at once: a device protects its own state. `offset` is relative to
 * the region base; `size` is 1, 2, 4 or 8; data is little-endian. A read
 * handler that leaves bytes alone returns zeros (the buffer is zeroed). */
struct smolvm_io_ops {
	uint32_t struct_size;
	void (*read)(void *opaque, uint64_t offset, void *data, uint32_t size);
	void (*write)(void *opaque, uint64_t offset, const void *data, uint32_t size);
};

/* Called on the core's event-loop thread when `fd` is ready. */
typedef void (*smolvm_fd_cb)(void *opaque, int fd, uint32_t revents);

/* Called on the event-loop thread with bytes typed on the console. Returns
 * how many it took; the core keeps the rest until the device calls
 * console_kick() to say it has room again. */
typedef size_t (*smolvm_console_rx)(void *opaque, const uint8_t *buf, size_t len);

enum smolvm_state_type {
	SMOLVM_STATE_U8 = 1,
	SMOLVM_STATE_U16 = 2,
	SMOLVM_STATE_U32 = 3,
	SMOLVM_STATE_U64 = 4,
	SMOLVM_STATE_BYTES = 5, /* opaque byte string, length-checked on read */
};

/* The services the core offers. Handed to a plugin when it is created;
 * valid until it is destroyed. Entries are appended, never reordered. */
struct smolvm_host_api {
	uint32_t struct_size;
	uint32_t abi_major, abi_minor; /* the host's own ABI version */

	void (*log)(smolvm_ctx *ctx, enum smolvm_log_level level,
		    const char *fmt, ...) SMOLVM_PRINTF(3, 4);
	/* Records why the current call fails; return -errno after it. The
	 * core shows it as the reason, after what it was doing and the
	 * instance ("cannot restore tally0: step 300 out of range"), then
	 * the message of a host entry that failed with the same -errno.
	 * Without it the reason is that entry's message, else strerror. A
	 * device's message with a result of 0, or from a hook that returns
	 * nothing, is dropped (docs/plugin-guide.md, "Messages"). */
	void (*set_error)(smolvm_ctx *ctx, const char *fmt, ...) SMOLVM_PRINTF(2, 3);

	/* Configuration of this instance (its table in the machine script),
	 * as text; NULL when absent. A list option `k = { "a", "b" }` reads
	 * as keys "k[1]", "k[2]". */
	const char *(*config_get)(smolvm_ctx *ctx, const char *key);

	/* Host pointer to guest-physical [gpa, gpa+len), or NULL unless the
	 * whole range is guest RAM. Never touch guest memory any other way. */
	void *(*guest_ptr)(smolvm_ctx *ctx, uint64_t gpa, uint64_t len);

	/* Drive interrupt line `gsi` (IOAPIC pin 0-23) to `level` (0 or 1).
	 * The pin's trigger mode is the guest's: on an edge-triggered line
	 * (the ISA lines 0-15 by default) raise then lower it to signal once;
	 * a level-triggered one (the virtio-mmio lines) stays asserted until
	 * lowered. A line another device claimed (irq_claim, resource_alloc)
	 * is refused with -EBUSY. */
	int (*irq_set)(smolvm_ctx *ctx, uint32_t gsi, int level);

	/* Claim [base, base+len) in `space`; overlapping claims are refused. */
	int (*io_register)(smolvm_ctx *ctx, enum smolvm_space space,
			   uint64_t base, uint64_t len,
			   const struct smolvm_io_ops *ops, void *opaque);

	/* Watch `fd` for POLLIN/POLLOUT (`events`) on the event loop. */
	int (*fd_watch)(smolvm_ctx *ctx, int fd, uint32_t events,
			smolvm_fd_cb cb, void *opaque);
	int (*fd_unwatch)(smolvm_ctx *ctx, int fd);

	/* The VM console (the terminal, or the user's stdout/stdin). */
	int (*console_write)(smolvm_ctx *ctx, const void *buf, size_t len);
	int (*console_attach)(smolvm_ctx *ctx, smolvm_console_rx rx, void *opaque);
	void (*console_kick)(smolvm_ctx *ctx);

	/* Device state: named, typed, little-endian fields, grouped in named
	 * sections. A reader returns -ENOENT for a field that is absent. */
	int (*state_put)(struct smolvm_state_writer *w, const char *name,
			 enum smolvm_state_type type, const void *data, uint32_t len);
	int (*state_get)(struct smolvm_state_reader *r, const char *name,
			 enum smolvm_state_type type, void *data, uint32_t len);
	int (*state_begin)(struct smolvm_state_writer *w, const char *name,
			   int optional);
	int (*state_end)(struct smolvm_state_writer *w);
	int (*state_enter)(struct smolvm_state_reader *r, const char *name);
	int (*state_leave)(struct smolvm_state_reader *r);

	/* Ask the machine to stop (e.g. a reset register was written). */
	void (*request_stop)(smolvm_ctx *ctx, int reset);

	/* Devices on the system bus (virtio-mmio): reserve an MMIO window of
	 * `size` bytes and an interrupt line for this instance. */
	int (*resource_alloc)(smolvm_ctx *ctx, uint64_t size, uint64_t *base,
			      uint32_t *gsi);
	/* Add words to the guest kernel's command line. */
	int (*cmdline_append)(smolvm_ctx *ctx, const char *text);
	/* Fast paths, when the backend has them (else -ENOTSUP): a guest
	 * write of `datamatch` to `gpa` signals `fd` without a vCPU exit;
	 * a write to `fd` pulses interrupt line `gsi`. */
	int (*ioeventfd)(smolvm_ctx *ctx, uint64_t gpa, uint32_t len,
			 uint64_t datamatch, int fd, int assign);
	int (*irqfd)(smolvm_ctx *ctx, uint32_t gsi, int fd, int assign);

	/* Like config_get, for a file name: a relative path is resolved
	 * against the machine script's directory. NULL when absent. */
	const char *(*config_path)(smolvm_ctx *ctx, const char *key);

	/* ABI 1.1: non-zero when this instance is being created to receive
	 * saved state (restore() follows): a device can then skip work the
	 * state will replace, e.g. opening files the snapshot does not use. */
	int (*restoring)(smolvm_ctx *ctx);

	/* ABI 1.2: claim interrupt line `gsi` for this instance (in create):
	 * -EBUSY, with a message naming the other device, when another
	 * device has it; lines from resource_alloc are claimed already. */
	int (*irq_claim)(smolvm_ctx *ctx, uint32_t gsi);

	/* ABI 1.3: this instance's name ("tally0", "virtio-blk1"; a
	 * backend's is its plugin's), the one log() lines and the core's
	 * messages use; valid until destroy. */
	const char *(*instance_name)(smolvm_ctx *ctx);

	/* ABI 1.4: bulk data in the bundle, for what is too big for the
	 * typed state (a disk overlay's clusters). In save(): store `size`
	 * bytes of `fd` from `offset` as this instance's image `name` (1-31
	 * of [a-z0-9_-]): in 1 MiB chunks, compressed, all-zero chunks (holes)
	 * left out, and in a bundle saved from a restored machine only the
	 * chunks that differ from the parent bundle's image of that name. In
	 * restore(): a read-only fd of image `name` as saved, and its size
	 * (close it when done); -ENOENT when the bundle has none. Elsewhere,
	 * or with a host that cannot, -ENOTSUP: keep a state-only fallback. */
	int (*save_image)(smolvm_ctx *ctx, const char *name, int fd, uint64_t offset,
			  uint64_t size);
	int (*open_image)(smolvm_ctx *ctx, const char *name, int *fd, uint64_t *size);
};

/* ---- devices ---------------------------------------------------------- */

/* ABI 1.2: the options a device takes, declared by its plugin (the
 * `options` array of struct smolvm_device_ops). The core checks every
 * device's table in the machine script against them before create(): an
 * unknown option (with the closest declared name suggested), a value of
 * the wrong type, a list where one value is expected or the reverse, and
 * a required option that is missing are refused, naming the script, the
 * device and the option. A plugin still reads its values with config_get
 * or config_path and checks their range itself. */
enum smolvm_option_type {
	SMOLVM_OPT_STRING = 1, /* one value, any text (a number or boolean too) */
	SMOLVM_OPT_INT = 2,    /* an integer: decimal, or 0x hex (strtoll base 0) */
	SMOLVM_OPT_BOOL = 3,   /* true or false */
	SMOLVM_OPT_PATH = 4,   /* a file name: read it with config_path */
	SMOLVM_OPT_LIST = 5,   /* a list { "a", "b" }: keys "k[1]", "k[2]", ... */
};

/* struct smolvm_option.flags */
#define SMOLVM_OPT_REQUIRED (1u << 0) /* create() is not called without it */
#define SMOLVM_OPT_ONE_OR_LIST (1u << 1) /* a LIST that also takes a single
					   * value, read as key "k" */

/* One declared option. Arrays of these end with an entry whose name is
 * NULL. The struct has no size of its own, so it never grows within ABI
 * major 1: new attributes are new flag bits, or a table of their own. */
struct smolvm_option {
	const char *name;         /* [a-z0-9_], as written in the script */
	uint32_t type;            /* enum smolvm_option_type */
	uint32_t flags;           /* SMOLVM_OPT_REQUIRED, SMOLVM_OPT_ONE_OR_LIST */
	const char *default_text; /* what absent means, as shown to users; or NULL */
	const char *help;         /* one line, for `smolvm plugins --options` */
};

struct smolvm_device_ops {
	uint32_t struct_size;
	/* Version of the state this build writes, and the oldest it reads. */
	uint32_t state_version;
	uint32_t min_state_version;

	/* Build an instance from its configuration (config_get). */
	int (*create)(smolvm_ctx *ctx, const struct smolvm_host_api *api,
		      void **dev);
	void (*destroy)(void *dev);
	void (*reset)(void *dev);
	/* Stop / restart touching guest memory and raising interrupts. */
	void (*pause)(void *dev);
	void (*resume)(void *dev);
	/* Called with the machine paused. restore() treats the state as
	 * hostile and validates every value. */
	int (*save)(void *dev, struct smolvm_state_writer *w);
	int (*restore)(void *dev, struct smolvm_state_reader *r,
		       uint32_t saved_version);

	/* ABI 1.2: the options this device takes (see struct smolvm_option),
	 * ended by an entry whose name is NULL; an empty array declares that
	 * it takes none. NULL: nothing declared, nothing checked. */
	const struct smolvm_option *options;
};

/* ---- hypervisor backends ---------------------------------------------- */

enum smolvm_quirk_mode {
	SMOLVM_QUIRKS_AUTO = 0, /* backend probes the host */
	SMOLVM_QUIRKS_ON = 1,
	SMOLVM_QUIRKS_OFF = 2,
};

/* Host defects the backend works around; the core adapts the guest
 * (kernel command line) when they are active. */
#define SMOLVM_QUIRK_SOFT_EMULATION (1u << 0) /* CPL0 emulated, see PLATFORM */

struct smolvm_vm_config {
	uint32_t struct_size;
	uint32_t ncpus;
	uint64_t mem_size;
	uint32_t quirk_mode; /* enum smolvm_quirk_mode */
};

struct smolvm_mem_region {
	uint32_t struct_size;
	uint32_t slot;
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

enum smolvm_boot_mode {
	SMOLVM_BOOT_LONG64 = 1, /* 64-bit, paging on, flat segments */
};

/* Initial register state of the boot vCPU. The core has already written
 * the GDT and page tables into guest memory. */
struct smolvm_x86_boot {
	uint32_t struct_size;
	uint32_t mode;
	uint64_t rip, rsi, rsp;
	uint64_t cr3;
	uint64_t gdt_base;
	uint16_t gdt_limit;
	uint16_t code_sel, data_sel;
};

enum smolvm_exit_reason {
	SMOLVM_EXIT_NONE = 0,
	SMOLVM_EXIT_PIO,      /* io.*: port access, count elements at data */
	SMOLVM_EXIT_MMIO,     /* io.*: one access at data */
	SMOLVM_EXIT_INTR,     /* vcpu_kick() or a signal interrupted the run */
	SMOLVM_EXIT_SHUTDOWN, /* triple fault */
	SMOLVM_EXIT_RESET,    /* the guest asked for a reset */
	SMOLVM_EXIT_POWEROFF, /* the guest asked to power off */
	SMOLVM_EXIT_HLT,      /* halted with no in-kernel irqchip to wake it */
};

struct smolvm_exit {
	uint32_t struct_size;
	uint32_t reason; /* enum smolvm_exit_reason */
	struct {
		uint64_t addr;
		uint32_t size;  /* bytes per element: 1, 2, 4, 8 */
		uint32_t count; /* elements (string PIO), else 1 */
		uint8_t is_write;
		/* count*size bytes; for reads the core fills them and the
		 * backend hands them to the guest on the next vcpu_run. */
		void *data;
	} io;
};

struct smolvm_backend_ops {
	uint32_t struct_size;

	int (*vm_create)(smolvm_ctx *ctx, const struct smolvm_host_api *api,
			 const struct smolvm_vm_config *cfg, void **vm);
	void (*vm_destroy)(void *vm);
	/* Active SMOLVM_QUIRK_* bits, decided at vm_create. */
	uint32_t (*vm_quirks)(void *vm);
	int (*mem_map)(void *vm, const struct smolvm_mem_region *r);
	int (*irq_line)(void *vm, uint32_t gsi, int level);

	int (*vcpu_create)(void *vm, uint32_t index, void **vcpu);
	void (*vcpu_destroy)(void *vcpu);
	int (*vcpu_boot)(void *vcpu, const struct smolvm_x86_boot *boot);
	/* Run until an exit the core must handle. Returns 0 with `exit`
	 * filled, or -errno after set_error() (the message names the vCPU,
	 * its registers and the instruction bytes where it can). */
	int (*vcpu_run)(void *vcpu, struct smolvm_exit *exit);
	/* From any thread: make a running or about-to-run vcpu_run return
	 * SMOLVM_EXIT_INTR promptly. */
	void (*vcpu_kick)(void *vcpu);

	/* Snapshots: machine-wide state (irqchip, PIT, clock) and per-vCPU
	 * state, written through the same typed state writer as devices. */
	int (*vm_save)(void *vm, struct smolvm_state_writer *w);
	int (*vm_restore)(void *vm, struct smolvm_state_reader *r);
	int (*vcpu_save)(void *vcpu, struct smolvm_state_writer *w);
	int (*vcpu_restore)(void *vcpu, struct smolvm_state_reader *r);

	/* Optional (NULL: the core falls back to exits and irq_line). */
	int (*ioeventfd)(void *vm, uint64_t gpa, uint32_t len, uint64_t datamatch,
			 int fd, int assign);
	int (*irqfd)(void *vm, uint32_t gsi, int fd, int assign);
};

/* ---- the exported descriptor ------------------------------------------ */

enum smolvm_plugin_kind {
	SMOLVM_PLUGIN_BACKEND = 1,
	SMOLVM_PLUGIN_DEVICE = 2,
};

struct smolvm_plugin {
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t struct_size;
	uint32_t kind; /* enum smolvm_plugin_kind */
	const char *name;
	const char *version;
	const char *summary;
	const void *ops; /* smolvm_device_ops or smolvm_backend_ops */
};

#define SMOLVM_PLUGIN_SYMBOL "smolvm_plugin_v1"

#define SMOLVM_PLUGIN_DEFINE_(kind_, name_, version_, summary_, ops_)          \
	SMOLVM_EXPORT extern const struct smolvm_plugin smolvm_plugin_v1;      \
	const struct smolvm_plugin smolvm_plugin_v1 = {                        \
		.abi_major = SMOLVM_ABI_MAJOR,                                 \
		.abi_minor = SMOLVM_ABI_MINOR,                                 \
		.struct_size = sizeof(struct smolvm_plugin),                   \
		.kind = (kind_),                                               \
		.name = (name_),                                               \
		.version = (version_),                                         \
		.summary = (summary_),                                         \
		.ops = &(ops_),                                                \
	}

#define SMOLVM_DEVICE_PLUGIN(name, version, summary, ops)                      \
	SMOLVM_PLUGIN_DEFINE_(SMOLVM_PLUGIN_DEVICE, name, version, summary, ops)
#define SMOLVM_BACKEND_PLUGIN(name, version, summary, ops)                     \
	SMOLVM_PLUGIN_DEFINE_(SMOLVM_PLUGIN_BACKEND, name, version, summary, ops)

#ifdef __cplusplus
}
#endif
#endif
