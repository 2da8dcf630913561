#include "script/sandbox.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script.h"

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct sandbox *sb = ud;

	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		sb->used -= osize;
		return NULL;
	}
	if (nsize > osize && sb->used + (nsize - osize) > sb->limit)
		return NULL; /* Lua raises "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p)
		sb->used = sb->used - osize + nsize;
	return p;
}

#define HOOK_EVERY 1000

static void sb_count(lua_State *L, lua_Debug *ar)
{
	struct sandbox *sb;

	lua_getallocf(L, (void **)&sb);
	sb->steps += HOOK_EVERY;
	if (sb->steps > sb->max_steps) {
		/* From now on every instruction fails, so a pcall() in the
		 * script cannot swallow the error and keep looping. */
		lua_sethook(L, sb_count, LUA_MASKCOUNT, 1);
		/* Level 0 in a hook is the Lua function that was running. */
		if (lua_getstack(L, 0, ar) && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
			luaL_error(L, "%s:%d: instruction budget of %I exhausted (endless loop?)",
				   ar->short_src, ar->currentline, (lua_Integer)sb->max_steps);
		luaL_error(L, "instruction budget of %I exhausted (endless loop?)",
			   (lua_Integer)sb->max_steps);
	}
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

int sandbox_pcall(lua_State *L, int nargs, int nres, int with_traceback, struct err *e)
{
	int base = lua_gettop(L) - nargs;
	int rc;

	if (!with_traceback)
		base = 0;
	else {
		lua_pushcfunction(L, traceback);
		lua_insert(L, base);
	}
	rc = lua_pcall(L, nargs, nres, base);
	if (base)
		lua_remove(L, base);
	if (rc != LUA_OK) {
		err_set(e, -EINVAL, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		return -EINVAL;
	}
	return 0;
}

/* One write per line: stderr is unbuffered and the guest's console may
 * write to the same terminal from a vCPU thread meanwhile. */
static int l_print(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_Buffer b;
	size_t len;
	const char *line;

	luaL_buffinit(L, &b);
	luaL_addstring(&b, "script: ");
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_addchar(&b, '\n');
	luaL_pushresult(&b);
	line = lua_tolstring(L, -1, &len);
	fwrite(line, 1, len, stderr);
	return 0;
}

/* load() restricted to text chunks in the sandbox's environment. */
static int l_load(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optstring(L, 2, "=(load)");

	if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	return 1;
}


static int l_machine(lua_State *L)
{
	lua_Debug ar;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY) != LUA_TNIL)
		return luaL_error(L, "machine() may be called only once");
	lua_pop(L, 1);
	lua_pushvalue(L, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY);
	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) {
		lua_pushinteger(L, ar.currentline);
		lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_MACHINE_KEY ".line");
	}
	return 0;
}

/* setmetatable without finalizers: Lua runs __gc with debug hooks off, so
 * no instruction budget could stop one (at lua_close, after the machine,
 * with signals blocked). An object is marked for finalization only when
 * its metatable has __gc as it is set, so refusing that here is enough. */
static int l_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "__gc finalizers are not allowed in machine scripts "
					  "(they could run unbounded when the script ends)");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

static int l_machine_again(lua_State *L)
{
	return luaL_error(L, "machine() belongs in the machine script, not in a hooks script");
}

lua_State *sandbox_new(struct sandbox *sb)
{
	static const luaL_Reg libs[] = {
		{ LUA_GNAME, luaopen_base },        { LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },  { LUA_MATHLIBNAME, luaopen_math },
		{ LUA_UTF8LIBNAME, luaopen_utf8 },  { LUA_COLIBNAME, luaopen_coroutine },
	};
	static const char *const banned[] = { "dofile", "loadfile", "require",
					      "collectgarbage" };
	lua_State *L;

	sb->limit = SCRIPT_MAX_MEMORY;
	sb->max_steps = SCRIPT_MAX_INSTRUCTIONS;
	L = lua_newstate(sb_alloc, sb);
	if (!L)
		return NULL;
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		luaL_requiref(L, libs[i].name, libs[i].func, 1);
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++) {
		lua_pushnil(L);
		lua_setglobal(L, banned[i]);
	}
	/* string.dump makes bytecode, which we never load: drop it too. */
	lua_getglobal(L, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	lua_register(L, "load", l_load);
	lua_register(L, "setmetatable", l_setmetatable);
	lua_register(L, "print", l_print);
	lua_register(L, "machine", l_machine);
	lua_sethook(L, sb_count, LUA_MASKCOUNT, HOOK_EVERY);
	return L;
}

void sandbox_reset_budget(lua_State *L, struct sandbox *sb)
{
	sb->steps = 0;
	lua_sethook(L, sb_count, LUA_MASKCOUNT, HOOK_EVERY);
}

void sandbox_forbid_machine(lua_State *L)
{
	lua_register(L, "machine", l_machine_again);
}
