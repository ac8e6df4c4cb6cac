/* lua_loop.c - libevent's loop for quarry.parallel: wait on many sockets
 * at once and say which became ready.
 *
 *   loop = core.loop_new()
 *   loop:watch(fd, write, key [, seconds])  once: key is reported when fd
 *                               is readable (writable if write), or when
 *                               that long has passed
 *   loop:timer(seconds, key)    once: key is reported after that long
 *   loop:unwatch(key)           forget a watch or timer that has not fired
 *   loop:wait() -> {key, ...}   block until at least one watch fires
 *   loop:signals()              from now on SIGTERM, SIGHUP and SIGINT wake wait()
 *   loop:signal_seen(name)      "TERM", "HUP" or "INT" arrived since the last ask
 *   loop:close()                also its __close and __gc
 * wait() also returns (maybe with no key) when a server on the loop
 * (lua_http.c) has taken a request or a signal came.
 */
#include "lua_quarry.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_MT "quarry.loop"

typedef struct watch {
    struct event *ev;
    lua_Integer key;
    int fired;
} watch;

struct qr_lua_loop {
    struct event_base *base;
    watch **w;
    int n, cap;
    int wake;    /* something other than a watch happened: wait returns */
    int sources; /* servers and signals: wait may block with no watch */
    struct event *sig[3];
    volatile int seen[3];
};
typedef struct qr_lua_loop lloop;

static const int SIGNALS[3] = {SIGTERM, SIGHUP, SIGINT};
static const char *const SIGNAL_NAMES[] = {"TERM", "HUP", "INT", NULL};

qr_lua_loop *qr_lua_checkloop(lua_State *L, int arg)
{
    lloop *lp = luaL_checkudata(L, arg, LOOP_MT);
    if (!lp->base) luaL_error(L, "the loop is closed");
    return lp;
}

static lloop *check_loop(lua_State *L)
{
    return qr_lua_checkloop(L, 1);
}

struct event_base *qr_lua_loop_base(qr_lua_loop *lp)
{
    return lp->base;
}

void qr_lua_loop_wake(qr_lua_loop *lp)
{
    lp->wake = 1;
}

void qr_lua_loop_sources(qr_lua_loop *lp, int delta)
{
    lp->sources += delta;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    lloop *lp = arg;
    for (int i = 0; i < 3; i++)
        if (SIGNALS[i] == (int)sig) lp->seen[i] = 1;
    lp->wake = 1;
}

static int l_loop_signals(lua_State *L)
{
    lloop *lp = check_loop(L);
    for (int i = 0; i < 3; i++) {
        if (lp->sig[i]) continue;
        lp->sig[i] = evsignal_new(lp->base, SIGNALS[i], on_signal, lp);
        if (!lp->sig[i] || evsignal_add(lp->sig[i], NULL) != 0) luaL_error(L, "cannot watch signals");
        lp->sources++;
    }
    return 0;
}

static int l_loop_signal_seen(lua_State *L)
{
    lloop *lp = check_loop(L);
    int i = luaL_checkoption(L, 2, NULL, SIGNAL_NAMES);
    lua_pushboolean(L, lp->seen[i]);
    lp->seen[i] = 0;
    return 1;
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
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, LOOP_MT);
    lp->base = event_base_new();
    if (!lp->base) luaL_error(L, "cannot start an event loop");
    return 1;
}

/* A watch for key, kept in the loop (the caller sets its event). */
static watch *add_watch(lua_State *L, lloop *lp, lua_Integer key)
{
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
    lp->w[lp->n++] = w;
    return w;
}

/* After event_new and event_add: a watch whose event could not be set
 * goes again, and the caller raises. */
static int armed(lloop *lp, watch *w, int added)
{
    if (w->ev && added == 0) return 1;
    if (w->ev) event_free(w->ev);
    free(w);
    lp->n--;
    return 0;
}

static struct timeval seconds(double secs)
{
    if (!(secs > 0)) secs = 0;
    if (secs > 1e9) secs = 1e9;
    return (struct timeval){(time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};
}

static int l_loop_watch(lua_State *L)
{
    lloop *lp = check_loop(L);
    int fd = (int)luaL_checkinteger(L, 2);
    int write = lua_toboolean(L, 3);
    lua_Integer key = luaL_checkinteger(L, 4);
    int timed = !lua_isnoneornil(L, 5);
    struct timeval tv = seconds(timed ? luaL_checknumber(L, 5) : 0);
    if (fd < 0) luaL_argerror(L, 2, "not a socket");
    watch *w = add_watch(L, lp, key);
    w->ev = event_new(lp->base, fd, write ? EV_WRITE : EV_READ, on_ready, w);
    if (!armed(lp, w, w->ev ? event_add(w->ev, timed ? &tv : NULL) : -1))
        luaL_error(L, "cannot watch socket %d", fd);
    return 0;
}

static int l_loop_timer(lua_State *L)
{
    lloop *lp = check_loop(L);
    struct timeval tv = seconds(luaL_checknumber(L, 2));
    lua_Integer key = luaL_checkinteger(L, 3);
    watch *w = add_watch(L, lp, key);
    w->ev = evtimer_new(lp->base, on_ready, w);
    if (!armed(lp, w, w->ev ? evtimer_add(w->ev, &tv) : -1)) luaL_error(L, "cannot set a timer");
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
    if (lp->n == 0 && lp->sources == 0) luaL_error(L, "nothing to wait for");
    lua_newtable(L);
    int got = 0;
    while (got == 0 && !lp->wake) {
        if (event_base_loop(lp->base, EVLOOP_ONCE) < 0) luaL_error(L, "the event loop failed");
        for (int i = lp->n - 1; i >= 0; i--) {
            if (!lp->w[i]->fired) continue;
            lua_pushinteger(L, lp->w[i]->key);
            lua_rawseti(L, -2, ++got);
            drop(lp, i);
        }
    }
    lp->wake = 0;
    return 1;
}

static int l_loop_close(lua_State *L)
{
    lloop *lp = luaL_checkudata(L, 1, LOOP_MT);
    while (lp->n > 0) drop(lp, lp->n - 1);
    for (int i = 0; i < 3; i++) {
        if (lp->sig[i]) event_free(lp->sig[i]);
        lp->sig[i] = NULL;
    }
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
        {"wait", l_loop_wait}, {"signals", l_loop_signals}, {"signal_seen", l_loop_signal_seen},
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
