/* Lua machine scripts: a sandboxed Lua 5.4 state per script. The script
 * calls machine { ... } once; the table is validated into a
 * machine_config with errors naming file, line and field. */
#ifndef SMOLVM_SCRIPT_H
#define SMOLVM_SCRIPT_H

#include <lua.h>

#include "lib/err.h"
#include "machine/config.h"

/* The lifecycle hooks a script may define as global functions. */
#define SCRIPT_HOOKS "on_boot", "on_console", "before_snapshot", "after_restore", "on_exit"
#define SCRIPT_HOOK_LIST "on_boot, on_console, before_snapshot, after_restore, on_exit"

/* Limits of one script run (and later of one hook call). */
#define SCRIPT_MAX_INSTRUCTIONS 50000000ull
#define SCRIPT_MAX_MEMORY (64u << 20)

int script_load_machine(const char *path, struct machine_config *cfg,
			struct err *e) WARN_UNUSED;
/* Same, from text already in memory (`name` is used in messages and for
 * relative paths). */
int script_load_machine_buffer(const char *name, const char *src, size_t len,
			       struct machine_config *cfg, struct err *e) WARN_UNUSED;

/* A script kept open for its hooks (one Lua state, used by one thread at
 * a time). */
struct script;

/* Loads and validates like script_load_machine_buffer and, with out not
 * NULL, keeps the state for the hooks. Refuses functions named like hooks
 * that are not hooks (on_bot). */
int script_open(const char *name, const char *src, size_t len, struct machine_config *cfg,
		struct script **out, struct err *e) WARN_UNUSED;
int script_open_file(const char *path, struct machine_config *cfg, struct script **out,
		     struct err *e) WARN_UNUSED;
/* Runs a hooks-only script in the state s (script_open_hooks makes it a
 * state of its own: smolvm --hooks). */
int script_load_hooks(struct script *s, const char *path, struct err *e) WARN_UNUSED;
/* A hooks-only script in a state of its own: a machine script's code
 * (a metatable on _G, say) never sees or touches the user's hooks. */
int script_open_hooks(const char *path, struct script **out, struct err *e) WARN_UNUSED;
int script_has_hook(struct script *s, const char *hook);
int script_has_hooks(struct script *s);
lua_State *script_lua(struct script *s);
/* Calls global `hook` with the vm object (script/vm_object.h; nil if none)
 * and `arg` (when not NULL), with a fresh instruction budget; errors come
 * back as "hook NAME (file:line): file:line: ...". */
int script_call_hook(struct script *s, const char *hook, const char *arg,
		     struct err *e) WARN_UNUSED;
void script_close(struct script *s);

#endif
