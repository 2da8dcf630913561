/* The `vm` object a script's hooks receive. This file does the Lua side
 * only (arguments, results, errors); every operation is carried out by the
 * session through the ops it hands in, on the thread that runs the hooks. */
#ifndef SMOLVM_VM_OBJECT_H
#define SMOLVM_VM_OBJECT_H

#include <stddef.h>
#include <time.h>

#include "lib/err.h"

struct script;

struct vm_exec_req {
	const char *const *argv; /* NULL-terminated */
	const char *const *env;  /* "K=V", NULL-terminated, may be NULL */
	const char *cwd;         /* may be NULL */
	const void *in;          /* stdin bytes (may be NULL: empty) */
	size_t in_len;
	int timeout_ms;
	/* stream 1 = stdout, 2 = stderr; returns 0 or -errno */
	int (*out)(void *opaque, int stream, const void *p, size_t n);
	void *out_opaque;
};

struct vm_exec_status {
	int signaled, value, timed_out;
};

struct vm_object_ops {
	/* Types text on the console; returns once all of it is taken. */
	int (*console_write)(void *o, const char *p, size_t n, struct err *e);
	/* vm:wait_console: while waiting (on = 1) the line being written
	 * counts too. next_line gives the next console line printed since
	 * the hook call began (or since the last match): 1 with it in `line`
	 * (*partial: still being written), 0 at the deadline, -ECANCELED once
	 * the machine stops. matched() says the last line matched. */
	void (*wait_mode)(void *o, int on);
	int (*next_line)(void *o, const struct timespec *deadline, char *line, size_t len,
			 int *partial);
	void (*matched)(void *o);
	int (*exec)(void *o, const struct vm_exec_req *req, struct vm_exec_status *st,
		    struct err *e);
	int (*snapshot)(void *o, const char *path, struct err *e);
	int (*pause)(void *o, int pause, struct err *e);
	void (*stop)(void *o);
	/* Returns early when the machine stops. */
	void (*sleep)(void *o, double seconds);
	/* vm:keep: val NULL removes key. */
	int (*keep)(void *o, const char *key, const char *val, size_t len, struct err *e);
};

struct vm_object_info {
	const char *name;
	int restored;
	char **vars; /* "K=V", NULL-terminated, may be NULL */
	const char *no_exec;   /* why vm:exec cannot work here, or NULL */
	unsigned max_args;     /* of a vm:exec argv list */
	char **kept;           /* "key", "value", ..., NULL: vm.kept; may be NULL */
};

/* Makes the vm object of `s` (kept in its registry; script_call_hook
 * passes it to every hook). Returns the handle the session detaches, or
 * NULL with e filled (the script's memory cap reached). */
struct vm_object;
struct vm_object *vm_object_new(struct script *s, const struct vm_object_ops *ops, void *o,
				const struct vm_object_info *info, struct err *e);
/* From now on the object's methods raise "machine is gone" (a vm kept in
 * a global, or reached from a finalizer, outlives its machine). */
void vm_object_detach(struct vm_object *v);

#endif
