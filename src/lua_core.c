/* lua_core.c - require "quarry.core": the module table and the error object. */
#include "lua_quarry.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tostring(err) -> "message (SQLSTATE xxxxx at character n); detail: ...; hint: ..." */
static int error_tostring(lua_State *L)
{
    int base = lua_gettop(L);
    lua_getfield(L, 1, "message");
    if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "unknown error");
    }
    int state = lua_getfield(L, 1, "sqlstate");
    lua_getfield(L, 1, "position");
    if (state == LUA_TSTRING) {
        if (lua_isinteger(L, -1))
            lua_pushfstring(L, " (SQLSTATE %s at character %d)", lua_tostring(L, -2),
                            (int)lua_tointeger(L, -1));
        else
            lua_pushfstring(L, " (SQLSTATE %s)", lua_tostring(L, -2));
        lua_replace(L, -3);
    } else {
        lua_pushliteral(L, "");
        lua_replace(L, -3);
    }
    lua_pop(L, 1);
    const char *extra[] = {"detail", "hint"};
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, 1, extra[i]) == LUA_TSTRING)
            lua_pushfstring(L, "; %s: %s", extra[i], lua_tostring(L, -1));
        else
            lua_pushliteral(L, "");
        lua_remove(L, -2);
    }
    lua_concat(L, lua_gettop(L) - base);
    return 1;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

void qr_lua_push_error(lua_State *L, const qr_error *e)
{
    lua_createtable(L, 0, 7);
    set_str(L, "code", e->code[0] ? e->code : "error");
    set_str(L, "message", e->message);
    set_str(L, "sqlstate", e->sqlstate);
    set_str(L, "detail", e->detail);
    set_str(L, "hint", e->hint);
    set_str(L, "context", e->context);
    if (e->position > 0) {
        lua_pushinteger(L, e->position);
        lua_setfield(L, -2, "position");
    }
    lua_pushboolean(L, e->retryable);
    lua_setfield(L, -2, "retryable");
    luaL_setmetatable(L, QR_ERROR_MT);
}

int qr_lua_raise(lua_State *L, const qr_error *e)
{
    qr_lua_push_error(L, e);
    return lua_error(L);
}

/* core.error(fields) -> the same error object, for errors raised from Lua. */
static int l_error_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, QR_ERROR_MT);
    return 1;
}

/* core.usage(message): raise the error of bad input ({code = "usage"}: exit
 * 2), the one constructor every module uses for it. */
static int l_usage(lua_State *L)
{
    const char *msg = luaL_checkstring(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "usage");
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, QR_ERROR_MT);
    return lua_error(L);
}

/* ---- Ctrl-C ----
 * A long command (an ingest inside COPY, a seed, a partition copy) blocks in
 * libpq where no Lua hook can run, so SIGINT is answered in the handler: one
 * line, then _exit(130). The server sees the connection close and rolls the
 * open transaction back; nothing half-done is committed. */
static char interrupt_msg[256];
static size_t interrupt_len;

static void on_sigint(int sig)
{
    (void)sig;
    ssize_t w = write(STDERR_FILENO, interrupt_msg, interrupt_len); /* async-signal-safe */
    (void)w;
    _exit(130);
}

/* core.on_interrupt(message): from now on Ctrl-C prints message and exits 130. */
static int l_on_interrupt(lua_State *L)
{
    size_t n;
    const char *msg = luaL_checklstring(L, 1, &n);
    if (n > sizeof interrupt_msg - 2) n = sizeof interrupt_msg - 2;
    memcpy(interrupt_msg, msg, n);
    interrupt_msg[n] = '\n';
    interrupt_len = n + 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    return 0;
}

#define BUF_MT "quarry.buffer"

static int buf_gc(lua_State *L)
{
    qr_lua_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

qr_lua_buf *qr_lua_buf_new(lua_State *L)
{
    qr_lua_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = (qr_lua_buf){NULL, 0, 0};
    if (luaL_newmetatable(L, BUF_MT)) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

int qr_lua_buf_put(qr_lua_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void qr_lua_buf_free(qr_lua_buf *b)
{
    free(b->data);
    *b = (qr_lua_buf){NULL, 0, 0};
}

int luaopen_quarry_core(lua_State *L)
{
    luaL_checkversion(L);
    if (luaL_newmetatable(L, QR_ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "quarry.error");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushcfunction(L, l_error_new);
    lua_setfield(L, -2, "error");
    lua_pushcfunction(L, l_on_interrupt);
    lua_setfield(L, -2, "on_interrupt");
    lua_pushcfunction(L, l_usage);
    lua_setfield(L, -2, "usage");
    luaL_getmetatable(L, QR_ERROR_MT);
    lua_setfield(L, -2, "error_mt");
    qr_lua_open_log(L);
    qr_lua_open_timing(L);
    qr_lua_open_pool(L);
    qr_lua_open_cache(L);
    qr_lua_open_codec(L);
    qr_lua_open_readline(L);
    qr_lua_open_loop(L);
    qr_lua_open_http(L);
    qr_lua_open_process(L);
    qr_lua_open_fetch(L);
    qr_lua_open_repeats(L);
    qr_lua_open_limits(L);
    return 1;
}
