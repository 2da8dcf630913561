/* The machine declaration: the table a script hands to machine { ... },
 * validated into a machine_config with errors naming file, line and field.
 * Inside script/. */
#ifndef SMOLVM_DECLARE_H
#define SMOLVM_DECLARE_H

#include <lua.h>
#include <stddef.h>

#include "lib/err.h"
#include "machine/config.h"

struct vctx {
	lua_State *L;
	const char *name; /* script name for messages */
	const char *src;
	size_t src_len;
	int line;         /* line of the machine { } call */
	char *dir;        /* for relative paths */
	struct err *e;
};

/* Validation quotes values with __tostring, which is script code: it runs
 * protected like any other call into Lua, as this lua_CFunction with a
 * struct validate_args as its light userdata argument. */
struct validate_args {
	const struct vctx *v;
	struct machine_config *cfg;
	int rc;
};

int declare_validate(lua_State *L);

#endif
