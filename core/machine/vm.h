/* A running machine: backend VM, guest RAM, buses, devices, vCPU threads
 * and the main thread's event loop. */
#ifndef SMOLVM_VM_H
#define SMOLVM_VM_H

#include <pthread.h>
#include <stdatomic.h>

#include "arch/x86/i8042.h"
#include "machine/bus.h"
#include "machine/console.h"
#include "machine/loop.h"
#include "machine/config.h"
#include "machine/mem.h"
#include "machine/loader.h"

/* The host API's per-instance handle (opaque to plugins). */
struct smolvm_ctx {
	struct vm *vm;
	char name[64];
	struct dev_config *cfg;
};

struct device {
	struct smolvm_ctx ctx;
	const struct plugin *plugin;
	void *dev;
};

struct vcpu {
	struct vm *vm;
	uint32_t index;
	void *be;
	pthread_t thread;
	int started;
	struct smolvm_exit exit;
};

enum vm_stop {
	VM_RUNNING = 0,
	VM_STOP_RESET,       /* the guest rebooted */
	VM_STOP_POWEROFF,    /* the guest powered off */
	VM_STOP_QUIT,        /* the user quit (escape key) */
	VM_STOP_SIGNAL,      /* SIGINT/SIGTERM/SIGHUP */
	VM_STOP_TRIPLE_FAULT,
	VM_STOP_ERROR,
	VM_STOP_PACKED,      /* pack: the snapshot is written */
	VM_STOP_DONE,        /* a hook (vm:stop()) or smolvm exec ended it */
};

/* What the machine reports; the session decides what it means. Any
 * callback may be NULL. */
struct vm_events {
	void *opaque;
	/* The current line of guest output after each console write (without
	 * the newline): complete lines once, the partial one as it grows. On
	 * the thread that wrote it, often a vCPU: keep it short. */
	void (*console_line)(void *opaque, const char *line, int complete);
	/* Main thread: the user asked for a snapshot (SIGUSR1). */
	void (*snapshot_request)(void *opaque);
	/* Main thread, after every wake-up of the event loop (vm_wake()): the
	 * place to act on what the other callbacks noted. */
	void (*wake)(void *opaque);
	/* Each vCPU thread, before its first run: the place to narrow what
	 * the thread may do. Non-zero (e says why) stops the machine. */
	int (*vcpu_start)(void *opaque, struct err *e);
};

struct vm_opts {
	int verbose;
	int mem_fd;          /* >= 0: RAM is a private mapping of this image */
	int restore;         /* build the machine only: state comes from a bundle */
	int keep_input_open; /* pack: end of input is not passed on as ^D, so
			      * the saved guest does not carry it */
	int detached;        /* exec: the console takes no input and its output
			      * goes to stderr only when verbose */
	int teardown_behind; /* the process exits after vm_destroy(): leave the
			      * kernel's VM teardown to a child */
	int save_flat;       /* saves of a restored machine name no parent
			      * (snapshot/lineage.h): self-contained bundles */
	struct vm_events events;
};

/* A function run on the main thread for another thread (vm_call). */
typedef int (*vm_call_fn)(struct vm *vm, void *arg, struct err *e);
struct vm_call {
	vm_call_fn fn;
	void *arg;
	struct err *e;
	int rc, done;
};

struct vm {
	struct machine_config *cfg;
	int verbose;

	const struct plugin *backend;
	const struct smolvm_backend_ops *be;
	void *be_vm;
	struct smolvm_ctx be_ctx;
	uint32_t quirks;

	struct guest_mem mem;
	struct bus pio, mmio;
	struct loop loop;
	struct console console;
	int signal_fd;

	struct device *devs;
	size_t ndevs;
	struct vcpu *vcpus;
	uint32_t ncpus;
	char *cmdline;     /* as given to the guest */
	char *dev_cmdline; /* what devices asked to add (virtio_mmio.device=...) */
	uint64_t next_mmio; /* next free system-bus MMIO window */
	unsigned next_gsi;  /* index into the free interrupt lines */
	const struct smolvm_ctx *irq_owner[24]; /* who claimed each IOAPIC pin */

	pthread_mutex_t stop_lock;
	atomic_int stop;
	int stop_signal;
	char stop_msg[1024];

	/* Parking vCPU threads outside the backend for a snapshot. */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
	atomic_int pause_req;
	unsigned parked, running;

	struct vm_opts opts;
	struct i8042 i8042;        /* its reset command stops the machine */
	/* Where guest memory came from (snapshot/load.c's struct origin, for
	 * a save that stores only what changed), let go of after the devices
	 * and before the memory goes. */
	void *mem_origin;
	void (*mem_release)(void *origin);
	/* Device images (ABI 1.4 save_image/open_image), set by the snapshot
	 * layer around a save or a restore: `section` is the bundle section's
	 * name ("image.DEV.NAME"). NULL outside. */
	int (*image_save)(void *opaque, const char *section, int fd, uint64_t offset,
			  uint64_t size, struct err *e);
	int (*image_open)(void *opaque, const char *section, int *fd, uint64_t *size,
			  struct err *e);
	void *image_opaque;

	/* vm_call(): one call at a time from other threads. */
	pthread_mutex_t call_lock;
	pthread_cond_t call_cond;
	struct vm_call *call;
	int loop_done;
	double t_start_ms;         /* process-relative, for timings */
};

int vm_create(struct vm *vm, struct machine_config *cfg,
	      const struct plugin_set *plugins, const struct vm_opts *opts,
	      struct err *e) WARN_UNUSED;
/* Each device's plugin is there and the device's options are what the
 * plugin declares (machine/options.h); vm_create() checks this first,
 * before it sets anything up. The message names the script and the
 * device's place in its `devices`. */
int vm_check_devices(const struct machine_config *cfg, const struct plugin_set *plugins,
		     struct err *e) WARN_UNUSED;
/* Stops every vCPU outside the backend (and pauses devices); resume lets
 * them go on. Main thread only. */
int vm_pause(struct vm *vm, struct err *e) WARN_UNUSED;
void vm_resume(struct vm *vm);
/* From any thread: every vCPU parks at its next exit, without waiting for
 * it (a vCPU that calls this parks as soon as its current exit is
 * handled). vm_pause() then completes the pause, vm_resume() ends it. */
void vm_pause_soon(struct vm *vm);
/* From any thread: run the wake callback (and pending vm_call()s) on the
 * main thread soon. */
void vm_wake(struct vm *vm);
/* Main thread: bytes for the console device as if typed; returns how many
 * fit (the rest must be offered again later). */
size_t vm_console_input(struct vm *vm, const void *buf, size_t len);
/* From a thread other than the main one: runs fn on the main thread and
 * returns its result; -ECANCELED once the machine has stopped. */
int vm_call(struct vm *vm, vm_call_fn fn, void *arg, struct err *e);
/* Runs until the guest or the user stops it; returns the process exit
 * status and fills `e` when the stop was a failure. */
int vm_run(struct vm *vm, struct err *e);
void vm_destroy(struct vm *vm);
static inline enum vm_stop vm_stop_reason(struct vm *vm)
{
	return (enum vm_stop)atomic_load(&vm->stop);
}
/* From any thread: the first caller's reason wins. */
void vm_request_stop(struct vm *vm, enum vm_stop why, const char *msg);

#endif
