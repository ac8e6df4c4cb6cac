/* lua_cache.c - a Redis connection for Lua, failing soft.
 *
 *   c = core.cache_new{url=, connect_timeout_ms=, command_timeout_ms=}
 *   c:call(cmd, ...)            -> reply | nil, err
 *   c:pipeline{{cmd, ...}, ...} -> {reply, ...} | nil, err (any error reply fails it)
 *   c:stats() -> {up=, errors=, outages=, connects=}     c:where()   c:close()
 *
 * In a task of quarry.tasks (parallel, serve) call and pipeline yield while
 * Redis answers, like queries; elsewhere they block as always.
 *
 * Unlike the database API this never raises for an unreachable Redis or an
 * error reply: it returns nil and an error object ({code="connection"} or
 * {code="redis"}), because the cache must never fail a report. Misuse (bad
 * URL, a table as an argument) still raises. Replies: bulk strings as Lua
 * strings (binary-safe), integers, status as strings, nil replies as nil at
 * top level and false inside arrays (arrays keep their positions).
 */
#include "lua_quarry.h"

#include "cache.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MT "quarry.cache"
#define REPLY_MT "quarry.redisreply"
#define MAX_ARGS 4096

typedef struct {
    qr_cache *c;
} lcache;

static qr_cache *check_cache(lua_State *L)
{
    lcache *u = luaL_checkudata(L, 1, CACHE_MT);
    if (!u->c) luaL_error(L, "the cache connection is closed");
    return u->c;
}

static int opt_int(lua_State *L, const char *k)
{
    lua_getfield(L, 1, k);
    int v = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
    return v;
}

static int l_cache_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    qr_cache_options o = {0};
    lua_getfield(L, 1, "url");
    o.url = lua_tostring(L, -1);
    o.connect_timeout_ms = opt_int(L, "connect_timeout_ms");
    o.command_timeout_ms = opt_int(L, "command_timeout_ms");
    o.backoff_min_ms = opt_int(L, "backoff_min_ms");
    o.backoff_max_ms = opt_int(L, "backoff_max_ms");
    lcache *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL;
    luaL_setmetatable(L, CACHE_MT);
    qr_error err;
    u->c = qr_cache_new(&o, &err);
    if (!u->c) return qr_lua_raise(L, &err);
    return 1;
}

static int l_cache_close(lua_State *L)
{
    lcache *u = luaL_checkudata(L, 1, CACHE_MT);
    qr_cache_free(u->c);
    u->c = NULL;
    return 0;
}

/* Replies owned by Lua until freed: a raise (out of memory while building
 * the Lua value) cannot leak them, and a pipeline's array stays alive while
 * it is anchored on the stack. */
typedef struct {
    int n;
    redisReply *r[]; /* NULL once freed */
} replybox;

static replybox *new_reply_box(lua_State *L, int n)
{
    replybox *b = lua_newuserdatauv(L, sizeof *b + sizeof b->r[0] * (size_t)n, 0);
    b->n = n;
    for (int i = 0; i < n; i++) b->r[i] = NULL;
    luaL_setmetatable(L, REPLY_MT);
    return b;
}

static void free_replies(replybox *b)
{
    for (int i = 0; i < b->n; i++) {
        if (b->r[i]) freeReplyObject(b->r[i]);
        b->r[i] = NULL;
    }
}

static int reply_gc(lua_State *L)
{
    free_replies(luaL_checkudata(L, 1, REPLY_MT));
    return 0;
}

static void push_reply(lua_State *L, const redisReply *r, int nested)
{
    luaL_checkstack(L, 3, "reply too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "redis");
        lua_setfield(L, -2, "code");
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "message");
        luaL_setmetatable(L, QR_ERROR_MT);
        break;
    default: /* NIL */
        if (nested) lua_pushboolean(L, 0);
        else lua_pushnil(L);
    }
}

/* Arguments first..last as argv; strings are borrowed from the stack. */
static int collect_args(lua_State *L, int first, int last, const char **argv, size_t *lens,
                        char (*num)[32])
{
    int n = last - first + 1;
    if (n < 1) luaL_error(L, "a Redis command needs a name");
    if (n > MAX_ARGS) luaL_error(L, "too many arguments for one Redis command");
    for (int i = 0; i < n; i++) {
        int arg = first + i;
        if (lua_type(L, arg) == LUA_TNUMBER) {
            if (lua_isinteger(L, arg))
                lens[i] = (size_t)snprintf(num[i], 32, "%lld", (long long)lua_tointeger(L, arg));
            else
                lens[i] = (size_t)snprintf(num[i], 32, "%.17g", (double)lua_tonumber(L, arg));
            argv[i] = num[i];
        } else if (lua_type(L, arg) == LUA_TSTRING) {
            argv[i] = lua_tolstring(L, arg, &lens[i]);
        } else {
            luaL_argerror(L, arg, "Redis arguments are strings or numbers");
        }
    }
    return n;
}

/* argv, lengths and number text for n arguments, in one userdata left on
 * the stack (collected with the call). */
typedef struct {
    const char **argv;
    size_t *lens;
    char (*num)[32];
} argbuf;

static argbuf new_argbuf(lua_State *L, int n)
{
    if (n < 1) n = 1;
    char *mem = lua_newuserdatauv(L, (size_t)n * (sizeof(char *) + sizeof(size_t) + 32), 0);
    argbuf a;
    a.argv = (const char **)(void *)mem;
    a.lens = (size_t *)(void *)(mem + (size_t)n * sizeof(char *));
    a.num = (char (*)[32])(void *)(mem + (size_t)n * (sizeof(char *) + sizeof(size_t)));
    return a;
}

static int soft_fail(lua_State *L, const qr_error *err)
{
    lua_pushnil(L);
    qr_lua_push_error(L, err);
    return 2;
}

/* A command's reply onto the stack, as call returns it. */
static int finish_call(lua_State *L, replybox *box)
{
    int is_error = box->r[0]->type == REDIS_REPLY_ERROR;
    if (is_error) lua_pushnil(L);
    push_reply(L, box->r[0], 0);
    free_replies(box);
    return is_error ? 2 : 1;
}

/* A pipeline's replies as one array. An error reply anywhere fails the
 * whole pipeline, as a command's would: a caller that counted on every
 * command (INCR, SET) must not be told they ran when one was refused (OOM,
 * READONLY, WRONGTYPE). */
static int finish_pipeline(lua_State *L, replybox *box)
{
    int ncmd = box->n;
    for (int i = 0; i < ncmd; i++) {
        if (box->r[i]->type == REDIS_REPLY_ERROR) {
            lua_pushnil(L);
            push_reply(L, box->r[i], 0);
            free_replies(box);
            return 2;
        }
    }
    int failed = 0;
    lua_createtable(L, ncmd, 0);
    for (int i = 0; i < ncmd; i++) {
        if (lua_checkstack(L, 4)) push_reply(L, box->r[i], 1);
        else failed = 1, lua_pushboolean(L, 0);
        lua_rawseti(L, -2, i + 1);
    }
    free_replies(box);
    if (failed) return luaL_error(L, "reply too large");
    return 1;
}

/* ---- in a task (quarry.tasks): send, then yield the socket ----
 * The commands go on the cache's non-blocking connection (cache.h) and the
 * coroutine yields (fd, write, seconds) until its replies are in; the
 * ticket is a to-be-closed value, so a task stopped half-way gives its
 * place up without taking anyone else's replies. */

#define TICKET_MT "quarry.cacheticket"

typedef struct {
    lcache *u; /* anchored as the user value */
    uint64_t id;
    int box, pipeline;
} lticket;

static int ticket_close(lua_State *L)
{
    lticket *t = luaL_checkudata(L, 1, TICKET_MT);
    if (t->id && t->u->c) qr_cache_async_abandon(t->u->c, t->id);
    t->id = 0;
    return 0;
}

static int async_step(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int ti = (int)ctx;
    lua_settop(L, ti);
    lticket *t = lua_touserdata(L, ti);
    replybox *box = lua_touserdata(L, t->box);
    if (!t->u->c) luaL_error(L, "the cache connection is closed");
    int fd = -1, want_write = 0, wait_ms = 0;
    qr_error err;
    int st = qr_cache_async_poll(t->u->c, t->id, box->r, &fd, &want_write, &wait_ms, &err);
    if (st == 0) {
        lua_pushinteger(L, fd);
        lua_pushboolean(L, want_write);
        lua_pushnumber(L, wait_ms / 1000.0);
        return lua_yieldk(L, 3, ctx, async_step);
    }
    t->id = 0;
    if (st < 0) return soft_fail(L, &err);
    return t->pipeline ? finish_pipeline(L, box) : finish_call(L, box);
}

static int async_run(lua_State *L, int ncmd, const int *argcs, const char *const *const *argvs,
                     const size_t *const *lens, int box, int pipeline)
{
    lcache *u = luaL_checkudata(L, 1, CACHE_MT);
    lticket *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TICKET_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    int ti = lua_gettop(L);
    lua_toclose(L, ti);
    t->u = u;
    t->box = box;
    t->pipeline = pipeline;
    qr_error err;
    if (qr_cache_async_send(u->c, ncmd, argcs, argvs, lens, &t->id, &err) != 0) return soft_fail(L, &err);
    return async_step(L, LUA_OK, (lua_KContext)ti);
}

static int l_cache_call(lua_State *L)
{
    qr_cache *c = check_cache(L);
    int top = lua_gettop(L);
    argbuf a = new_argbuf(L, top - 1);
    int n = collect_args(L, 2, top, a.argv, a.lens, a.num);
    replybox *box = new_reply_box(L, 1);
    if (qr_lua_in_async(L)) {
        const char *const *argvs[] = {a.argv};
        const size_t *lenss[] = {a.lens};
        return async_run(L, 1, &n, argvs, lenss, lua_gettop(L), 0);
    }
    qr_error err;
    box->r[0] = qr_cache_command(c, n, a.argv, a.lens, &err);
    if (!box->r[0]) return soft_fail(L, &err);
    return finish_call(L, box);
}

/* c:pipeline{{"SET", k, v}, {"EXPIRE", k, 60}} -> {reply, reply} | nil, err */
static int l_cache_pipeline(lua_State *L)
{
    qr_cache *c = check_cache(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ncmd = (int)luaL_len(L, 2);
    if (ncmd < 1 || ncmd > 10000) return luaL_argerror(L, 2, "1 to 10000 commands");
    int *argcs = lua_newuserdatauv(L, sizeof(int) * (size_t)ncmd, 0);
    const char *const **argvs = lua_newuserdatauv(L, sizeof(*argvs) * (size_t)ncmd, 0);
    const size_t **lens = lua_newuserdatauv(L, sizeof(*lens) * (size_t)ncmd, 0);
    replybox *box = new_reply_box(L, ncmd);
    int anchored = lua_gettop(L); /* the arrays above and the replies stay alive up to here */
    for (int i = 0; i < ncmd; i++) {
        lua_rawgeti(L, 2, i + 1); /* the command table stays on the stack */
        int t = lua_gettop(L);
        luaL_checktype(L, t, LUA_TTABLE);
        int nargs = (int)luaL_len(L, t);
        if (nargs > MAX_ARGS) return luaL_error(L, "too many arguments for one Redis command");
        luaL_checkstack(L, nargs + 4, "too many arguments");
        argbuf a = new_argbuf(L, nargs);
        for (int j = 1; j <= nargs; j++) lua_rawgeti(L, t, j);
        argcs[i] = collect_args(L, t + 2, t + 1 + nargs, a.argv, a.lens, a.num);
        argvs[i] = a.argv;
        lens[i] = a.lens;
    }
    /* Commands are copied into hiredis's buffer when sent: the argument
     * tables and buffers can go once the call below returns or yields. */
    if (qr_lua_in_async(L)) return async_run(L, ncmd, argcs, argvs, lens, anchored, 1);
    qr_error err;
    if (qr_cache_pipeline(c, ncmd, argcs, argvs, lens, box->r, &err) != 0) return soft_fail(L, &err);
    lua_settop(L, anchored); /* the replies belong to box, anchored here */
    return finish_pipeline(L, box);
}

static int l_cache_stats(lua_State *L)
{
    qr_cache_stats s;
    qr_cache_stats_get(check_cache(L), &s);
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, s.up);
    lua_setfield(L, -2, "up");
    lua_pushinteger(L, (lua_Integer)s.errors);
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, (lua_Integer)s.outages);
    lua_setfield(L, -2, "outages");
    lua_pushinteger(L, (lua_Integer)s.connects);
    lua_setfield(L, -2, "connects");
    return 1;
}

static int l_cache_where(lua_State *L)
{
    lua_pushstring(L, qr_cache_where(check_cache(L)));
    return 1;
}

void qr_lua_open_cache(lua_State *L)
{
    luaL_newmetatable(L, REPLY_MT);
    lua_pushcfunction(L, reply_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, TICKET_MT);
    lua_pushcfunction(L, ticket_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, ticket_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg methods[] = {
        {"call", l_cache_call},   {"pipeline", l_cache_pipeline},
        {"stats", l_cache_stats}, {"where", l_cache_where},
        {"close", l_cache_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, CACHE_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_cache_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_cache_new);
    lua_setfield(L, -2, "cache_new");
}
