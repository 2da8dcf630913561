/* Lua machine scripts: a sandboxed Lua 5.4 state per script. The script
 * calls machine { ... } once; the table is validated into a
 * machine_config with errors naming file, line and field. */
#ifndef SMOLVM_SCRIPT_H
#define SMOLVM_SCRIPT_H

#include "err.h"
#include "machine.h"

/* Limits of one script run (and later of one hook call). */
#define SCRIPT_MAX_INSTRUCTIONS 50000000ull
#define SCRIPT_MAX_MEMORY (64u << 20)

int script_load_machine(const char *path, struct machine_config *cfg,
			struct err *e) WARN_UNUSED;
/* Same, from text already in memory (`name` is used in messages and for
 * relative paths). */
int script_load_machine_buffer(const char *name, const char *src, size_t len,
			       struct machine_config *cfg, struct err *e) WARN_UNUSED;

#endif
