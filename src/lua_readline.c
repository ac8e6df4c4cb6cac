/* lua_readline.c - line editing for `quarry shell`, through libedit when the
 * build found it.
 *
 *   core.readline(prompt) -> line | nil (end of input)
 *   core.history_load(path), core.history_save(path)  the shell's history file
 *   core.has_readline     -> boolean
 */
#include "lua_quarry.h"

#include <stdlib.h>

#ifdef QUARRY_HAVE_EDITLINE
#include <editline/readline.h>

#define LINE_MT "quarry.readline.line"

/* The line libedit allocated, owned by a userdata until it is a Lua string,
 * so a raise while pushing cannot leak it. */
static int line_gc(lua_State *L)
{
    char **box = luaL_checkudata(L, 1, LINE_MT);
    free(*box);
    *box = NULL;
    return 0;
}

static int l_readline(lua_State *L)
{
    const char *prompt = luaL_checkstring(L, 1);
    char **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, LINE_MT);
    *box = readline(prompt);
    if (!*box) {
        lua_pushnil(L);
        return 1;
    }
    if (**box) add_history(*box);
    lua_pushstring(L, *box);
    free(*box);
    *box = NULL;
    return 1;
}

static int l_history_load(lua_State *L)
{
    read_history(luaL_checkstring(L, 1)); /* a missing file is a first session */
    return 0;
}

static int l_history_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    stifle_history(1000);
    lua_pushboolean(L, write_history(path) == 0);
    return 1;
}
#else
static int l_readline(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "this quarry was built without libedit");
    return 2;
}

static int l_history_load(lua_State *L)
{
    (void)L;
    return 0;
}

static int l_history_save(lua_State *L)
{
    lua_pushboolean(L, 0);
    return 1;
}
#endif

void qr_lua_open_readline(lua_State *L)
{
#ifdef QUARRY_HAVE_EDITLINE
    luaL_newmetatable(L, LINE_MT);
    lua_pushcfunction(L, line_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "has_readline");
    lua_pushcfunction(L, l_readline);
    lua_setfield(L, -2, "readline");
    lua_pushcfunction(L, l_history_load);
    lua_setfield(L, -2, "history_load");
    lua_pushcfunction(L, l_history_save);
    lua_setfield(L, -2, "history_save");
}
