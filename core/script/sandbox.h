/* The Lua sandbox every script runs in: a curated global table (base,
 * string, table, math, utf8, coroutine; no io/os/package/debug, no
 * bytecode), a memory cap and an instruction budget, and the one
 * protected-call helper every call into Lua goes through. Inside script/. */
#ifndef SMOLVM_SANDBOX_H
#define SMOLVM_SANDBOX_H

#include <lua.h>
#include <stddef.h>

#include "lib/err.h"

struct sandbox {
	size_t used, limit;
	unsigned long long steps, max_steps;
};

#define SANDBOX_MACHINE_KEY "smolvm.machine"
#define SANDBOX_VM_KEY "smolvm.vm" /* the vm object hooks get */

/* A new state allocating through sb (which must outlive it). */
lua_State *sandbox_new(struct sandbox *sb);
/* A fresh instruction budget for the next call. */
void sandbox_reset_budget(lua_State *L, struct sandbox *sb);
/* Calls the function below the nargs arguments on top of the stack. With
 * `traceback`, the message carries Lua's traceback. A failure leaves
 * nothing on the stack and returns -EINVAL with the message in e. */
int sandbox_pcall(lua_State *L, int nargs, int nres, int traceback, struct err *e) WARN_UNUSED;
/* Hooks scripts may not call machine{}: replaces it with a refusal. */
void sandbox_forbid_machine(lua_State *L);

#endif
