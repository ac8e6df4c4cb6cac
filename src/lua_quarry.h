/* lua_quarry.h - what the binding files share. Only src/lua_*.c and main.c
 * include Lua headers. */
#ifndef QR_LUA_QUARRY_H
#define QR_LUA_QUARRY_H

#include <lauxlib.h>
#include <lua.h>

#include "pg.h"
#include "timing.h"

#define QR_ERROR_MT "quarry.error"

int luaopen_quarry_core(lua_State *L);

/* Each adds its functions to the module table on top of the stack. */
void qr_lua_open_log(lua_State *L);
void qr_lua_open_timing(lua_State *L);
void qr_lua_open_pool(lua_State *L);
void qr_lua_open_cache(lua_State *L);
void qr_lua_open_codec(lua_State *L);
void qr_lua_open_readline(lua_State *L);
void qr_lua_open_limits(lua_State *L);
void qr_lua_open_loop(lua_State *L);
void qr_lua_open_http(lua_State *L);
void qr_lua_open_process(lua_State *L);
void qr_lua_open_fetch(lua_State *L);
void qr_lua_open_repeats(lua_State *L);

/* The event loop of core.loop_new (src/lua_loop.c), for what else runs on it. */
struct event_base;
typedef struct qr_lua_loop qr_lua_loop;
qr_lua_loop *qr_lua_checkloop(lua_State *L, int arg);
struct event_base *qr_lua_loop_base(qr_lua_loop *lp);
void qr_lua_loop_wake(qr_lua_loop *lp);              /* loop:wait() returns */
void qr_lua_loop_sources(qr_lua_loop *lp, int delta); /* a server opened (+1) or closed (-1) */

/* Push the fixed-shape error table for e ({code, message, sqlstate, detail,
 * hint, position, retryable} with __tostring) and raise it. Callers free or
 * anchor everything they own first. */
int qr_lua_raise(lua_State *L, const qr_error *e);
void qr_lua_push_error(lua_State *L, const qr_error *e);

/* A growable byte buffer owned by a userdata (pushed by qr_lua_buf_new), so
 * a raise while it is in use frees it through __gc. qr_lua_buf_put never
 * raises: it returns -1 when out of memory and the caller decides (raise,
 * or note it where raising is unsafe). qr_lua_buf_free releases early. */
typedef struct {
    char *data;
    size_t len, cap;
} qr_lua_buf;

qr_lua_buf *qr_lua_buf_new(lua_State *L);
int qr_lua_buf_put(qr_lua_buf *b, const void *p, size_t n);
void qr_lua_buf_free(qr_lua_buf *b);

/* Decode a cache value (src/lua_codec.c) onto the stack: 1 with the value
 * pushed, or 0 with nothing pushed and *why set. Never raises on bad input. */
int qr_lua_decode(lua_State *L, const char *s, size_t len, const char **why);

/* 1 when L is a coroutine of quarry.tasks (core.async_threads) that may
 * yield here: queries and core.sleep then yield to the scheduler. */
int qr_lua_in_async(lua_State *L);

/* The registry inside a core.timings_new() object at arg, or NULL. */
qr_timings *qr_lua_totimings(lua_State *L, int arg);

#endif
