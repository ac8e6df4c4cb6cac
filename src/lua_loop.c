/* lua_loop.c - libevent's loop for quarry.parallel: wait on many sockets
 * at once and say which became ready.
 *
 *   loop = core.loop_new()
 *   loop:watch(fd, write, key)  once: key is reported when fd is readable
 *                               (writable if write)
 *   loop:timer(seconds, key)    once: key is reported after that long
 *   loop:unwatch(key)           forget a watch or timer that has not fired
 *   loop:wait() -> {key, ...}   block until at least one watch fires
 *   loop:close()                also its __close and __gc
 */
#include "lua_quarry.h"

#include <event2/event.h>
#include <stdlib.h>

#define LOOP_MT "quarry.loop"

typedef struct watch {
    struct event *ev;
    lua_Integer key;
    int fired;
} watch;

typedef struct {
    struct event_base *base;
    watch **w;
    int n, cap;
} lloop;

static lloop *check_loop(lua_State *L)
{
    lloop *lp = luaL_checkudata(L, 1, LOOP_MT);
    if (!lp->base) luaL_error(L, "the loop is closed");
    return lp;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((watch *)arg)->fired = 1;
}

static void drop(lloop *lp, int i)
{
    event_free(lp->w[i]->ev);
    free(lp->w[i]);
    lp->w[i] = lp->w[--lp->n];
}

static int l_loop_new(lua_State *L)
{
    lloop *lp = lua_newuserdatauv(L, sizeof *lp, 0);
    lp->base = NULL;
    lp->w = NULL;
    lp->n = lp->cap = 0;
    luaL_setmetatable(L, LOOP_MT);
    lp->base = event_base_new();
    if (!lp->base) luaL_error(L, "cannot start an event loop");
    return 1;
}

static int l_loop_watch(lua_State *L)
{
    lloop *lp = check_loop(L);
    int fd = (int)luaL_checkinteger(L, 2);
    int write = lua_toboolean(L, 3);
    lua_Integer key = luaL_checkinteger(L, 4);
    if (fd < 0) luaL_argerror(L, 2, "not a socket");
    if (lp->n == lp->cap) {
        int cap = lp->cap ? lp->cap * 2 : 16;
        watch **w = realloc(lp->w, sizeof *w * (size_t)cap);
        if (!w) luaL_error(L, "out of memory");
        lp->w = w;
        lp->cap = cap;
    }
    watch *w = calloc(1, sizeof *w);
    if (!w) luaL_error(L, "out of memory");
    w->key = key;
    w->ev = event_new(lp->base, fd, write ? EV_WRITE : EV_READ, on_ready, w);
    if (!w->ev || event_add(w->ev, NULL) != 0) {
        if (w->ev) event_free(w->ev);
        free(w);
        luaL_error(L, "cannot watch socket %d", fd);
    }
    lp->w[lp->n++] = w;
    return 0;
}

static int l_loop_timer(lua_State *L)
{
    lloop *lp = check_loop(L);
    double secs = luaL_checknumber(L, 2);
    lua_Integer key = luaL_checkinteger(L, 3);
    if (lp->n == lp->cap) {
        int cap = lp->cap ? lp->cap * 2 : 16;
        watch **w = realloc(lp->w, sizeof *w * (size_t)cap);
        if (!w) luaL_error(L, "out of memory");
        lp->w = w;
        lp->cap = cap;
    }
    watch *w = calloc(1, sizeof *w);
    if (!w) luaL_error(L, "out of memory");
    w->key = key;
    if (secs < 0) secs = 0;
    struct timeval tv = {(time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};
    w->ev = evtimer_new(lp->base, on_ready, w);
    if (!w->ev || evtimer_add(w->ev, &tv) != 0) {
        if (w->ev) event_free(w->ev);
        free(w);
        luaL_error(L, "cannot set a timer");
    }
    lp->w[lp->n++] = w;
    return 0;
}

static int l_loop_unwatch(lua_State *L)
{
    lloop *lp = check_loop(L);
    lua_Integer key = luaL_checkinteger(L, 2);
    for (int i = lp->n - 1; i >= 0; i--)
        if (lp->w[i]->key == key) drop(lp, i);
    return 0;
}

static int l_loop_wait(lua_State *L)
{
    lloop *lp = check_loop(L);
    if (lp->n == 0) luaL_error(L, "nothing to wait for");
    lua_newtable(L);
    int got = 0;
    while (got == 0) {
        if (event_base_loop(lp->base, EVLOOP_ONCE) < 0) luaL_error(L, "the event loop failed");
        for (int i = lp->n - 1; i >= 0; i--) {
            if (!lp->w[i]->fired) continue;
            lua_pushinteger(L, lp->w[i]->key);
            lua_rawseti(L, -2, ++got);
            drop(lp, i);
        }
    }
    return 1;
}

static int l_loop_close(lua_State *L)
{
    lloop *lp = luaL_checkudata(L, 1, LOOP_MT);
    while (lp->n > 0) drop(lp, lp->n - 1);
    free(lp->w);
    lp->w = NULL;
    lp->cap = 0;
    if (lp->base) event_base_free(lp->base);
    lp->base = NULL;
    return 0;
}

void qr_lua_open_loop(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"watch", l_loop_watch}, {"timer", l_loop_timer}, {"unwatch", l_loop_unwatch},
        {"wait", l_loop_wait},
        {"close", l_loop_close}, {NULL, NULL}};
    luaL_newmetatable(L, LOOP_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_loop_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_loop_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_loop_new);
    lua_setfield(L, -2, "loop_new");
}
