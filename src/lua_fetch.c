/* lua_fetch.c - many GETs at once (src/fetch.c) for Lua.
 *
 *   core.http_get_all({url, ...}, {max_in_flight=, per_minute=, timeout_ms=,
 *                     retries=, backoff_ms=, wait_429_ms=})
 *     -> {{status=, body=, attempts=, error=}, ...} in the order asked
 * error is set (and body nil) when a GET failed after its attempts; a 404
 * is an answer (status 404, its body). Blocks until every GET has ended.
 */
#include "lua_quarry.h"

#include "fetch.h"

#include <stdlib.h>
#include <string.h>

#define BATCH_MT "quarry.fetchbatch"
#define MAX_URLS 100000

typedef struct {
    int n;
    qr_fetch *items;
} batch;

static void batch_free(batch *b)
{
    if (b->items)
        for (int i = 0; i < b->n; i++) free(b->items[i].body);
    free(b->items);
    b->items = NULL;
    b->n = 0;
}

static int batch_gc(lua_State *L)
{
    batch_free(luaL_checkudata(L, 1, BATCH_MT));
    return 0;
}

static int opt_int(lua_State *L, int t, const char *k)
{
    if (lua_isnoneornil(L, t)) return 0;
    lua_getfield(L, t, k);
    int v = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
    return v;
}

static int l_http_get_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n < 0 || n > MAX_URLS) return luaL_argerror(L, 1, "0 to 100000 URLs");
    qr_fetch_opts o = {0};
    o.max_in_flight = opt_int(L, 2, "max_in_flight");
    o.timeout_ms = opt_int(L, 2, "timeout_ms");
    o.retries = opt_int(L, 2, "retries");
    o.backoff_ms = opt_int(L, 2, "backoff_ms");
    o.wait_429_ms = opt_int(L, 2, "wait_429_ms");
    if (!lua_isnoneornil(L, 2)) {
        lua_getfield(L, 2, "per_minute");
        o.per_minute = luaL_optnumber(L, -1, 0);
        lua_pop(L, 1);
    }
    batch *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->n = 0;
    b->items = NULL;
    luaL_setmetatable(L, BATCH_MT);
    int bi = lua_gettop(L);
    lua_createtable(L, (int)n, 0); /* keeps the URL strings alive */
    lua_setiuservalue(L, bi, 1);
    b->items = calloc((size_t)(n ? n : 1), sizeof *b->items);
    if (!b->items) return luaL_error(L, "out of memory");
    b->n = (int)n;
    lua_getiuservalue(L, bi, 1);
    for (int i = 0; i < (int)n; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 1, "URLs are strings");
        b->items[i].url = lua_tostring(L, -1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pop(L, 1);
    qr_error err;
    if (qr_fetch_run(b->items, b->n, &o, &err) < 0) return qr_lua_raise(L, &err);
    lua_createtable(L, (int)n, 0);
    for (int i = 0; i < (int)n; i++) {
        qr_fetch *it = &b->items[i];
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, it->status);
        lua_setfield(L, -2, "status");
        lua_pushinteger(L, it->attempts);
        lua_setfield(L, -2, "attempts");
        if (it->error[0]) {
            lua_pushstring(L, it->error);
            lua_setfield(L, -2, "error");
        } else if (it->body) {
            lua_pushlstring(L, it->body, it->len);
            lua_setfield(L, -2, "body");
        }
        free(it->body);
        it->body = NULL;
        lua_rawseti(L, -2, i + 1);
    }
    batch_free(b);
    return 1;
}

void qr_lua_open_fetch(lua_State *L)
{
    luaL_newmetatable(L, BATCH_MT);
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_http_get_all);
    lua_setfield(L, -2, "http_get_all");
}
