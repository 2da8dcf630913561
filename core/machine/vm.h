/* A running machine: backend VM, guest RAM, buses, devices, vCPU threads
 * and the main thread's event loop. */
#ifndef SMOLVM_VM_H
#define SMOLVM_VM_H

#include <pthread.h>
#include <stdatomic.h>

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

struct hooks;

struct vm_opts {
	int verbose;
	int mem_fd;          /* >= 0: RAM is a private mapping of this image */
	int restore;         /* build the machine only: state comes from a bundle */
	const char *ready;   /* pack: snapshot at the first console line containing it */
	const char *save_to; /* bundle written on SIGUSR1 (and by pack) */
	int keep_input_open; /* pack: end of input is not passed on as ^D, so
			      * the saved guest does not carry it */
	int detached;        /* exec: the console takes no input and its output
			      * goes to stderr only when verbose */
	int teardown_behind; /* the process exits after vm_destroy(): leave the
			      * kernel's VM teardown to a child */
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
	atomic_int ready_hit;      /* the ready line was printed */
	atomic_int snapshot_req;   /* SIGUSR1 */
	struct hooks *hooks;       /* the script's lifecycle hooks, if any */

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
/* Stops every vCPU outside the backend (and pauses devices); resume lets
 * them go on. Main thread only. */
int vm_pause(struct vm *vm, struct err *e) WARN_UNUSED;
void vm_resume(struct vm *vm);
/* From a thread other than the main one: runs fn on the main thread and
 * returns its result; -ECANCELED once the machine has stopped. */
int vm_call(struct vm *vm, vm_call_fn fn, void *arg, struct err *e);
double vm_now_ms(void);
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

/* System-bus resources handed to devices (host.c). */
#define VM_MMIO_BASE 0xd0000000ull
#define VM_MMIO_END 0xfec00000ull /* the IOAPIC */

/* The host API table handed to plugins (host.c). */
extern const struct smolvm_host_api host_api;
/* The last set_error() message of this thread. */
const char *host_last_error(void);
void host_clear_error(void);

#endif
