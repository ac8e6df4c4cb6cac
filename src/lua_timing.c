/* lua_timing.c - a timings registry as a Lua object.
 *
 *   t = core.timings_new()
 *   t:record(name, ns)        add one duration
 *   t:summary() -> { [name] = {count=, total_ms=, p50=, p95=, p99=, max=} }
 *   t:reset()
 *   core.now_ns() -> integer  monotonic clock
 */
#include "lua_quarry.h"

#include "timing.h"

#include <time.h>

#define TIMINGS_MT "quarry.timings"

typedef struct {
    qr_timings *t;
} ltimings;

static qr_timings *check_timings(lua_State *L, int arg)
{
    ltimings *u = luaL_checkudata(L, arg, TIMINGS_MT);
    if (!u->t) luaL_error(L, "timings object is closed");
    return u->t;
}

static int l_timings_new(lua_State *L)
{
    ltimings *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = NULL;
    luaL_setmetatable(L, TIMINGS_MT);
    u->t = qr_timings_new();
    if (!u->t) return luaL_error(L, "out of memory");
    return 1;
}

static int l_timings_gc(lua_State *L)
{
    ltimings *u = luaL_checkudata(L, 1, TIMINGS_MT);
    qr_timings_free(u->t);
    u->t = NULL;
    return 0;
}

static int l_record(lua_State *L)
{
    qr_timings *t = check_timings(L, 1);
    const char *name = luaL_checkstring(L, 2);
    lua_Integer ns = luaL_checkinteger(L, 3);
    qr_hist *h = qr_timings_get(t, name);
    if (!h) return luaL_error(L, "out of memory");
    qr_hist_record(h, ns < 0 ? 0 : (uint64_t)ns);
    return 0;
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static int l_summary(lua_State *L)
{
    qr_timings *t = check_timings(L, 1);
    lua_newtable(L);
    const char *name;
    qr_hist *h;
    /* No lock is held while we push: the registry only grows. */
    for (size_t i = 0; qr_timings_at(t, i, &name, &h); i++) {
        qr_hist_summary s;
        qr_hist_summarize(h, &s);
        if (s.count == 0) continue;
        lua_createtable(L, 0, 6);
        lua_pushinteger(L, (lua_Integer)s.count);
        lua_setfield(L, -2, "count");
        set_num(L, "total_ms", s.total_ms);
        set_num(L, "p50", s.p50_ms);
        set_num(L, "p95", s.p95_ms);
        set_num(L, "p99", s.p99_ms);
        set_num(L, "max", s.max_ms);
        lua_setfield(L, -2, name);
    }
    return 1;
}

static int l_reset(lua_State *L)
{
    qr_timings_reset(check_timings(L, 1));
    return 0;
}

/* core.sleep(seconds): for waiters (cache locks); EINTR just ends it early. */
static int sleep_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 0;
}

/* core.sleep(seconds): in a task of quarry.tasks, the task waits and the
 * others run; elsewhere the process sleeps. */
static int l_sleep(lua_State *L)
{
    lua_Number secs = luaL_checknumber(L, 1);
    if (qr_lua_in_async(L)) {
        lua_pushliteral(L, "sleep");
        lua_pushnumber(L, secs);
        return lua_yieldk(L, 2, 0, sleep_done);
    }
    if (secs > 0) {
        struct timespec ts = {(time_t)secs, (long)((secs - (lua_Number)(time_t)secs) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* core.wall_ms() -> integer: wall clock, for expiry times shared between processes */
static int l_wall_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static int l_now_ns(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)qr_now_ns());
    return 1;
}

void qr_lua_open_timing(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"record", l_record}, {"summary", l_summary}, {"reset", l_reset}, {NULL, NULL}};
    if (luaL_newmetatable(L, TIMINGS_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_timings_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"timings_new", l_timings_new}, {"now_ns", l_now_ns}, {"sleep", l_sleep},
        {"wall_ms", l_wall_ms},   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}

/* For lua_pool.c: the registry inside a timings object at arg, or NULL. */
qr_timings *qr_lua_totimings(lua_State *L, int arg)
{
    ltimings *u = luaL_testudata(L, arg, TIMINGS_MT);
    return u ? u->t : NULL;
}
