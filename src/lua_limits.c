/* lua_limits.c - a memory budget for code quarry does not trust (report
 * plugins), enforced in the allocator so no allocation escapes it, not even
 * one C function asked for (string.rep of a gigabyte).
 *
 *   core.memory_limit(bytes)   allow this many more bytes from now on
 *   core.memory_limit(nil)     no limit
 *   core.memory_tripped()      true once an allocation was refused
 *   core.memory_budget()       -> bytes still allowed (nil: no limit), tripped
 *   core.memory_restore(bytes|nil, tripped)   set both back, for a scheduler
 *                              switching between tasks with budgets of their own
 *
 * The guard wraps the state's own allocator the first time it is used. It is
 * static, not a userdata: the allocator must outlive everything lua_close
 * frees, and one process runs one quarry state.
 */
#include "lua_quarry.h"

#include <stddef.h>

typedef struct {
    lua_Alloc f;
    void *ud;
    long long used;  /* bytes the state holds, as the allocator saw them */
    long long limit; /* 0: none */
    int tripped;
} memguard;

static memguard guard;

static void *guarded_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    memguard *g = ud;
    long long old = ptr ? (long long)osize : 0; /* with no ptr, osize is a type tag */
    long long grow = (long long)nsize - old;
    if (nsize > 0 && grow > 0 && g->limit > 0 && g->used + grow > g->limit) {
        g->tripped = 1;
        return NULL; /* Lua collects and retries, then raises "not enough memory" */
    }
    void *p = g->f(g->ud, ptr, osize, nsize);
    if (p || nsize == 0) g->used += grow;
    return p;
}

static int l_memory_limit(lua_State *L)
{
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    if (f != guarded_alloc) {
        if (guard.f) return luaL_error(L, "memory limits serve one Lua state per process");
        guard.f = f;
        guard.ud = ud;
        guard.used = (long long)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
        lua_setallocf(L, guarded_alloc, &guard);
    }
    guard.tripped = 0;
    if (lua_isnoneornil(L, 1)) {
        guard.limit = 0;
    } else {
        lua_Integer extra = luaL_checkinteger(L, 1);
        luaL_argcheck(L, extra > 0, 1, "must be a positive number of bytes");
        guard.limit = guard.used + (long long)extra;
    }
    return 0;
}

static int l_memory_budget(lua_State *L)
{
    if (guard.limit == 0) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)(guard.limit > guard.used ? guard.limit - guard.used : 0));
    lua_pushboolean(L, guard.tripped);
    return 2;
}

static int l_memory_restore(lua_State *L)
{
    if (!guard.f) return 0; /* no limit was ever set: nothing to restore */
    guard.limit = lua_isnil(L, 1) ? 0 : guard.used + (long long)luaL_checkinteger(L, 1);
    if (!lua_isnil(L, 1) && guard.limit == guard.used) guard.limit = guard.used + 1; /* spent: the next byte trips */
    guard.tripped = lua_toboolean(L, 2);
    return 0;
}

static int l_memory_tripped(lua_State *L)
{
    lua_pushboolean(L, guard.tripped);
    return 1;
}

void qr_lua_open_limits(lua_State *L)
{
    lua_pushcfunction(L, l_memory_limit);
    lua_setfield(L, -2, "memory_limit");
    lua_pushcfunction(L, l_memory_tripped);
    lua_setfield(L, -2, "memory_tripped");
    lua_pushcfunction(L, l_memory_budget);
    lua_setfield(L, -2, "memory_budget");
    lua_pushcfunction(L, l_memory_restore);
    lua_setfield(L, -2, "memory_restore");
}
