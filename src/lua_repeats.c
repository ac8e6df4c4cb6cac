/* lua_repeats.c - src/repeats.c for Lua.
 *
 *   core.repeats(first_line)    -> r: lines that repeat an earlier line
 *       exactly, as the text is fed in chunks of any size.
 *   r:feed(chunk)               -> r
 *   r:finish()                  -> count, line, of: how many lines repeat
 *       an earlier one, and the first of them with the line it repeats.
 */
#include "lua_quarry.h"

#include "repeats.h"

#define REPEATS_MT "quarry.repeats"

static qr_repeats **check(lua_State *L)
{
    qr_repeats **r = luaL_checkudata(L, 1, REPEATS_MT);
    if (!*r) luaL_error(L, "repeats: used after finish");
    return r;
}

static int l_repeats(lua_State *L)
{
    lua_Integer first = luaL_optinteger(L, 1, 1);
    qr_repeats **r = lua_newuserdatauv(L, sizeof *r, 0);
    *r = NULL;
    luaL_setmetatable(L, REPEATS_MT);
    *r = qr_repeats_new((long long)first);
    if (!*r) return luaL_error(L, "repeats: out of memory");
    return 1;
}

static int l_feed(lua_State *L)
{
    qr_repeats **r = check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (qr_repeats_feed(*r, s, n) != 0) return luaL_error(L, "repeats: out of memory");
    lua_settop(L, 1);
    return 1;
}

static int l_finish(lua_State *L)
{
    qr_repeats **r = check(L);
    int rc = qr_repeats_finish(*r);
    long long line, of;
    long long count = qr_repeats_count(*r, &line, &of);
    qr_repeats_free(*r);
    *r = NULL;
    if (rc != 0) return luaL_error(L, "repeats: out of memory");
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushinteger(L, (lua_Integer)line);
    lua_pushinteger(L, (lua_Integer)of);
    return 3;
}

static int l_gc(lua_State *L)
{
    qr_repeats **r = luaL_checkudata(L, 1, REPEATS_MT);
    qr_repeats_free(*r);
    *r = NULL;
    return 0;
}

void qr_lua_open_repeats(lua_State *L)
{
    static const luaL_Reg methods[] = {{"feed", l_feed}, {"finish", l_finish}, {NULL, NULL}};
    luaL_newmetatable(L, REPEATS_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_repeats);
    lua_setfield(L, -2, "repeats");
}
