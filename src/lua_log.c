/* lua_log.c - core.log(level, module, msg [, context]) and its settings. */
#include "lua_quarry.h"

#include "log.h"

#include <unistd.h>

static int check_level(lua_State *L, int arg)
{
    const char *name = luaL_checkstring(L, arg);
    int level = qr_log_level_parse(name);
    if (level < 0) return luaL_argerror(L, arg, lua_pushfstring(L, "unknown log level '%s'", name));
    return level;
}

/* core.log(level, module, msg [, context_fragment]) */
static int l_log(lua_State *L)
{
    int level = check_level(L, 1);
    const char *module = luaL_optstring(L, 2, "script");
    const char *msg = luaL_checkstring(L, 3);
    const char *ctx = luaL_optstring(L, 4, NULL);
    qr_log_write((qr_log_level)level, module, msg, ctx);
    return 0;
}

/* core.log_enabled(level) -> boolean: skip formatting what would be dropped */
static int l_log_enabled(lua_State *L)
{
    lua_pushboolean(L, check_level(L, 1) >= (int)qr_log_get_level());
    return 1;
}

/* core.log_config([level [, json]]) -> level, json */
static int l_log_config(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) qr_log_set_level((qr_log_level)check_level(L, 1));
    if (!lua_isnoneornil(L, 2)) qr_log_set_json(lua_toboolean(L, 2));
    lua_pushstring(L, qr_log_level_name(qr_log_get_level()));
    lua_pushboolean(L, qr_log_get_json());
    return 2;
}

/* core.isatty(fd) -> boolean: progress output only on a terminal */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

void qr_lua_open_log(lua_State *L)
{
    static const luaL_Reg fns[] = {{"log", l_log},
                                   {"isatty", l_isatty},
                                   {"log_enabled", l_log_enabled},
                                   {"log_config", l_log_config},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
