/* lua_pool.c - the pool, its connections and queries, for Lua.
 *
 *   pool = core.pool_new(opts, timings)     opts: conninfo, max_size, *_ms
 *   pool:query(sql, ...)     -> rows (array of {column = value}, rows.fields)
 *   pool:query_one(sql, ...) -> first row or nil
 *   pool:exec(sql, ...)      -> affected row count
 *   pool:acquire(who)        -> conn (same three methods, plus begin/commit/
 *                               rollback/depth/pid/release; __close releases)
 *   pool:stats()  pool:close()
 *
 * sql may be a table {sql = "...", name = "daily_summary"} to time the query
 * under that name instead of its fingerprint. Parameters: nil, booleans,
 * integers, floats and strings; they are always sent apart from the SQL.
 * Values come back by column type: integers, floats, booleans, NULL as nil,
 * json/jsonb decoded, bytea as raw bytes, everything else (numeric, dates,
 * timestamps) as the exact text PostgreSQL sent.
 */
#include "lua_quarry.h"

#include "oid.h"
#include "pool.h"
#include "tx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POOL_MT "quarry.pool"
#define CONN_MT "quarry.conn"
#define RESULT_MT "quarry.pgresult"
#define STACK_PARAMS 16

enum mode { ROWS, ONE, EXEC };

typedef struct {
    qr_pool *p;
    qr_timings *t;
} lpool;

typedef struct {
    qr_conn *c;
    qr_pool *p;
    qr_timings *t;
} lconn;

/* ---- results: anchored so a raise during conversion cannot leak them ---- */

static PGresult **new_result_box(lua_State *L)
{
    PGresult **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, RESULT_MT);
    return box;
}

static int result_gc(lua_State *L)
{
    PGresult **box = luaL_checkudata(L, 1, RESULT_MT);
    PQclear(*box);
    *box = NULL;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
}

static void push_value(lua_State *L, const qr_oid_info *t, const char *v, int len, int decode);

/* Parse one {...} level of an array's text form at *pos into a Lua array;
 * NULL elements become core.null (a light userdata equal to cjson.null). */
/* How many elements the level at v[pos] == '{' holds: the table is made
 * that size at once (grown one element at a time it was reallocated at 1,
 * 2, 4, ... elements, most of the cost of a short array). */
static int array_level_size(const char *v, int len, int pos)
{
    int depth = 0, quoted = 0, n = 0, any = 0;
    for (int i = pos + 1; i < len; i++) {
        char c = v[i];
        if (quoted) {
            if (c == '\\') i++;
            else if (c == '"') quoted = 0;
            continue;
        }
        if (c == '"') quoted = 1;
        else if (c == '{') depth++;
        else if (c == '}' && depth-- == 0) break;
        else if (c == ',' && depth == 0) n++;
        any = 1;
    }
    return any ? n + 1 : 0;
}

static void push_array_level(lua_State *L, const qr_oid_info *elem, const char *v, int len, int *pos,
                             int decode)
{
    luaL_checkstack(L, 6, "array nested too deep");
    lua_createtable(L, array_level_size(v, len, *pos), 0);
    int i = *pos + 1, n = 0; /* past '{' */
    while (i < len && v[i] != '}') {
        if (v[i] == '{') {
            push_array_level(L, elem, v, len, &i, decode);
        } else if (v[i] == '"') {
            /* quoted: pushed in place unless it holds an escape (then unescaped
             * into a buffer first) */
            int start = ++i, escaped = 0;
            for (; i < len && v[i] != '"'; i++) {
                if (v[i] == '\\' && i + 1 < len) {
                    escaped = 1;
                    i++;
                }
            }
            if (!escaped) {
                push_value(L, elem, v + start, i - start, decode);
            } else {
                luaL_Buffer b;
                luaL_buffinit(L, &b);
                for (int k = start; k < i; k++) {
                    if (v[k] == '\\' && k + 1 < i) k++;
                    luaL_addchar(&b, v[k]);
                }
                luaL_pushresult(&b);
                size_t sl;
                const char *s = lua_tolstring(L, -1, &sl);
                push_value(L, elem, s, (int)sl, decode);
                lua_remove(L, -2);
            }
            i++; /* the closing quote */
        } else {
            /* unquoted: pushed in place, the bytes up to the next ',' or '}'
             * (the number parsers of push_value stop there too) */
            int start = i;
            while (i < len && v[i] != ',' && v[i] != '}') i++;
            if (i - start == 4 && strncasecmp(v + start, "NULL", 4) == 0)
                lua_pushlightuserdata(L, NULL);
            else
                push_value(L, elem, v + start, i - start, decode);
        }
        lua_rawseti(L, -2, ++n);
        if (i < len && v[i] == ',') i++;
    }
    *pos = i + 1; /* past '}' */
}

static void push_array(lua_State *L, const qr_oid_info *elem, const char *v, int len, int decode)
{
    int pos = 0;
    if (len > 0 && v[0] == '[') { /* explicit bounds: "[0:2]={...}" */
        while (pos < len && v[pos] != '=') pos++;
        pos++;
    }
    if (pos >= len || v[pos] != '{') {
        lua_pushlstring(L, v, (size_t)len);
        return;
    }
    push_array_level(L, elem, v, len, &pos, decode);
}

/* Push one non-NULL value of type t (NULL: unknown, as text). decode is the
 * stack index of cjson's decode. */
static void push_value(lua_State *L, const qr_oid_info *t, const char *v, int len, int decode)
{
    switch (t ? t->decode : QR_DECODE_TEXT) {
    case QR_DECODE_ARRAY:
        push_array(L, qr_oid_lookup(t->elem), v, len, decode);
        break;
    case QR_DECODE_INT:
        lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        break;
    case QR_DECODE_FLOAT:
        lua_pushnumber(L, (lua_Number)strtod(v, NULL));
        break;
    case QR_DECODE_BOOL:
        lua_pushboolean(L, v[0] == 't');
        break;
    case QR_DECODE_JSON:
        if (lua_isfunction(L, decode)) {
            lua_pushvalue(L, decode);
            lua_pushlstring(L, v, (size_t)len);
            lua_call(L, 1, 1);
        } else {
            lua_pushlstring(L, v, (size_t)len);
        }
        break;
    case QR_DECODE_BYTEA:
        if (len >= 2 && v[0] == '\\' && v[1] == 'x') {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 2; i + 1 < len; i += 2)
                luaL_addchar(&b, (char)(hexval(v[i]) << 4 | hexval(v[i + 1])));
            luaL_pushresult(&b);
            break;
        }
        /* fallthrough */
    default:
        lua_pushlstring(L, v, (size_t)len);
    }
}

/* Push rows (mode ROWS), the first row or nil (ONE), or the count (EXEC). */
static void push_result(lua_State *L, PGresult *r, enum mode mode, int decode)
{
    if (mode == EXEC) {
        const char *n = PQcmdTuples(r);
        lua_pushinteger(L, *n ? (lua_Integer)strtoll(n, NULL, 10) : 0);
        return;
    }
    int nrows = PQntuples(r), ncols = PQnfields(r);
    if (mode == ONE && nrows == 0) {
        lua_pushnil(L);
        return;
    }
    luaL_checkstack(L, ncols + 5, "too many columns");
    /* each column's type, looked up once (anchored below the names) */
    const qr_oid_info **types = lua_newuserdatauv(L, sizeof *types * (size_t)(ncols > 0 ? ncols : 1), 0);
    for (int c = 0; c < ncols; c++) types[c] = qr_oid_lookup(PQftype(r, c));
    int names = lua_gettop(L) + 1;
    for (int c = 0; c < ncols; c++) lua_pushstring(L, PQfname(r, c));
    if (mode == ROWS) lua_createtable(L, nrows, 1);
    int last = mode == ONE ? 1 : nrows;
    for (int i = 0; i < last; i++) {
        lua_createtable(L, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            if (PQgetisnull(r, i, c)) continue;
            lua_pushvalue(L, names + c);
            push_value(L, types[c], PQgetvalue(r, i, c), PQgetlength(r, i, c), decode);
            lua_rawset(L, -3);
        }
        if (mode == ONE) break;
        lua_rawseti(L, -2, i + 1);
    }
    if (mode == ROWS) {
        lua_createtable(L, ncols, 0);
        for (int c = 0; c < ncols; c++) {
            lua_createtable(L, 0, 3);
            lua_pushvalue(L, names + c);
            lua_setfield(L, -2, "name");
            lua_pushstring(L, types[c] ? types[c]->name : "unknown");
            lua_setfield(L, -2, "type");
            lua_pushinteger(L, (lua_Integer)PQftype(r, c));
            lua_setfield(L, -2, "oid");
            lua_rawseti(L, -2, c + 1);
        }
        lua_setfield(L, -2, "fields");
    }
    if (ncols > 0) lua_replace(L, names); /* keep the result, drop the column names */
    lua_settop(L, names);
    lua_remove(L, names - 1); /* and the types */
}

/* ---- parameters ---- */

typedef struct {
    const char **values;
    int *lengths;
    char (*text)[32];
} params;

/* Shortest text that reads back as the same double. */
static void format_float(char *buf, size_t cap, double d)
{
    if (isnan(d)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, cap, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

/* Convert arguments first..top into text parameters. Raises on a value that
 * cannot be sent, before anything is acquired. */
static int collect_params(lua_State *L, int first, params *pp, const char **sv, int *sl,
                          char (*st)[32])
{
    int top = lua_gettop(L), n = top >= first ? top - first + 1 : 0;
    if (n > 65535) luaL_error(L, "too many parameters (%d; PostgreSQL takes 65535)", n);
    if (n <= STACK_PARAMS && sv) {
        pp->values = sv;
        pp->lengths = sl;
        pp->text = st;
    } else {
        size_t each = sizeof(char *) + sizeof(int) + 32;
        char *mem = lua_newuserdatauv(L, (size_t)(n ? n : 1) * each, 0); /* anchored on the stack */
        pp->values = (const char **)(void *)mem;
        pp->text = (char (*)[32])(void *)(mem + (size_t)n * sizeof(char *));
        pp->lengths = (int *)(void *)(mem + (size_t)n * (sizeof(char *) + 32));
    }
    for (int i = 0; i < n; i++) {
        int arg = first + i;
        size_t len = 0;
        pp->lengths[i] = 0;
        switch (lua_type(L, arg)) {
        case LUA_TNIL:
            pp->values[i] = NULL;
            break;
        case LUA_TBOOLEAN:
            pp->values[i] = lua_toboolean(L, arg) ? "t" : "f";
            pp->lengths[i] = 1;
            break;
        case LUA_TNUMBER:
            if (lua_isinteger(L, arg))
                snprintf(pp->text[i], 32, "%lld", (long long)lua_tointeger(L, arg));
            else
                format_float(pp->text[i], 32, (double)lua_tonumber(L, arg));
            pp->values[i] = pp->text[i];
            pp->lengths[i] = (int)strlen(pp->text[i]);
            break;
        case LUA_TSTRING:
            pp->values[i] = lua_tolstring(L, arg, &len); /* zero bytes: only for bytea (pg.c) */
            if (len > 0x7fffffff) luaL_argerror(L, arg, "string too long for a parameter");
            pp->lengths[i] = (int)len;
            break;
        default:
            luaL_argerror(L, arg,
                          lua_pushfstring(L, "parameter $%d: cannot send a %s (use nil, a "
                                             "boolean, a number or a string)",
                                          i + 1, luaL_typename(L, arg)));
        }
    }
    return n;
}

/* ---- running a query ---- */

/* Arg 2 is the SQL text or {sql=, name=}. */
static const char *check_sql(lua_State *L, size_t *len, const char **name)
{
    *name = NULL;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "sql");
        lua_getfield(L, 2, "name");
        const char *sql = lua_tolstring(L, -2, len);
        if (!sql) luaL_argerror(L, 2, "statement table needs a 'sql' string");
        *name = lua_tostring(L, -1);
        lua_pop(L, 2); /* both strings stay alive in the table */
        return sql;
    }
    return luaL_checklstring(L, 2, len);
}

/* Where a statement's time is recorded: under its name, else its
 * statement's own histogram, else its fingerprint. */
static qr_hist *hist_of(qr_timings *t, qr_stmt *stmt, const char *sql, size_t len, const char *name)
{
    qr_hist *hist = name && t ? qr_timings_get(t, name) : stmt ? stmt->hist : NULL;
    if (!hist && t) {
        char fp[101];
        qr_sql_fingerprint(sql, len, fp, sizeof fp);
        hist = qr_timings_get(t, fp);
    }
    return hist;
}

/* ---- the same from a coroutine of quarry.parallel ----
 * The statement is sent, then the coroutine yields the socket to wait on
 * (fd, write) -- or "pool" while every connection is taken -- and the
 * scheduler (lua/quarry/parallel.lua) resumes it when that is ready. What
 * must outlive the yields lives on the coroutine's stack: the arguments,
 * the parameters (forced into a userdata) and the job below, a to-be-closed
 * value, so a coroutine closed half-way cancels its statement and gives its
 * connection back. */

static const char ASYNC_KEY = 0; /* registry: weak set of the coroutines whose queries yield */

#define JOB_MT "quarry.job"

typedef struct {
    qr_conn *c;
    qr_pool *from;  /* take a connection from here for this statement (NULL: held) */
    int taken;      /* c came from `from`: give it back at the end */
    qr_timings *t;
    qr_hist *hist;
    qr_stmt *stmt;
    const char *sql;
    params pp;
    int n, mode, decode;
    int after; /* a transaction step: TX_BEGAN, TX_COMMITTED, TX_ROLLED_BACK, or 0 */
    uint64_t t0;
} job;

enum { TX_BEGAN = 1, TX_COMMITTED, TX_ROLLED_BACK };

/* What a transaction step did, once its statement is answered. */
static void tx_done(qr_conn *c, int after, int ok)
{
    if (after == TX_BEGAN && ok) qr_tx_began(c);
    else if (after == TX_BEGAN && PQtransactionStatus(qr_conn_pg(c)) != PQTRANS_IDLE)
        qr_conn_mark_broken(c); /* a setup statement failed after BEGIN: no blocking ROLLBACK in a task */
    else if (after == TX_COMMITTED) qr_tx_committed(c, ok);
    else if (after == TX_ROLLED_BACK) qr_tx_rolled_back(c, ok);
}

static void job_end(job *j)
{
    if (!j->c) return;
    if (qr_conn_busy(j->c)) qr_conn_cancel(j->c); /* abandoned half-way */
    qr_conn_set_nonblocking(j->c, 0);
    if (j->taken) qr_pool_release(j->from, j->c); /* a busy one is closed, not reused */
    j->c = NULL;
    j->taken = 0;
}

static int job_close(lua_State *L)
{
    job_end(luaL_checkudata(L, 1, JOB_MT));
    return 0;
}

int qr_lua_in_async(lua_State *L)
{
    if (!lua_isyieldable(L)) return 0;
    if (lua_pushthread(L)) { /* the main thread never yields */
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ASYNC_KEY);
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    int on = lua_toboolean(L, -1);
    lua_pop(L, 3);
    return on;
}

static int async_step(lua_State *L, int status, lua_KContext ctx);

static int async_yield_io(lua_State *L, job *j, lua_KContext ctx)
{
    lua_pushinteger(L, qr_conn_socket(j->c));
    lua_pushboolean(L, qr_conn_wants_write(j->c));
    return lua_yieldk(L, 2, ctx, async_step);
}

static int async_step(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int ji = (int)ctx;
    lua_settop(L, ji); /* drop what resume passed */
    job *j = lua_touserdata(L, ji);
    qr_error err;
    if (!j->c) { /* waiting for a connection */
        int got = qr_pool_try_acquire(j->from, j->stmt ? j->stmt->fingerprint : NULL, &j->c, &err);
        if (got < 0) return qr_lua_raise(L, &err);
        if (got == 1) {
            lua_pushliteral(L, "pool");
            return lua_yieldk(L, 1, ctx, async_step);
        }
        j->taken = 1;
        qr_conn_set_nonblocking(j->c, 1);
        j->t0 = qr_now_ns();
        if (qr_conn_send(j->c, j->stmt, j->sql, j->n, j->pp.values, j->pp.lengths, &err) != 0) {
            job_end(j);
            return qr_lua_raise(L, &err);
        }
        return async_yield_io(L, j, ctx);
    }
    PGresult *r;
    if (!qr_conn_collect(j->c, &r, &err)) return async_yield_io(L, j, ctx);
    if (j->hist) qr_hist_record(j->hist, qr_now_ns() - j->t0);
    qr_conn *c = j->c;
    job_end(j);
    if (j->after) {
        tx_done(c, j->after, r != NULL);
        if (!r) return qr_lua_raise(L, &err);
        if (j->mode != ROWS) {
            PQclear(r);
            return 0;
        }
        /* a begin's setup: the rows of its last statement, as a query's */
    }
    if (!r) return qr_lua_raise(L, &err);
    PGresult **box = new_result_box(L);
    *box = r;
    push_result(L, r, (enum mode)j->mode, j->decode);
    PQclear(r);
    *box = NULL;
    return 1;
}

static int run_async(lua_State *L, qr_pool *pool, qr_timings *t, qr_conn *held, enum mode mode)
{
    size_t len;
    const char *name;
    const char *sql = check_sql(L, &len, &name);
    params pp;
    int n = collect_params(L, 3, &pp, NULL, NULL, NULL); /* pushes the parameters' userdata */
    lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.decode, or nil */
    int decode = lua_gettop(L);
    if (held && qr_conn_busy(held)) luaL_error(L, "this connection is already running a statement");
    job *j = lua_newuserdatauv(L, sizeof *j, 0);
    memset(j, 0, sizeof *j);
    luaL_setmetatable(L, JOB_MT);
    int ji = lua_gettop(L);
    lua_toclose(L, ji);
    j->stmt = qr_pool_stmt(pool, sql, len);
    j->sql = sql;
    j->pp = pp;
    j->n = n;
    j->mode = mode;
    j->decode = decode;
    j->t = t;
    j->hist = hist_of(t, j->stmt, sql, len, name);
    qr_error err;
    if (held) {
        j->c = held;
        qr_conn_set_nonblocking(held, 1);
        j->t0 = qr_now_ns();
        if (qr_conn_send(held, j->stmt, sql, n, pp.values, pp.lengths, &err) != 0) {
            job_end(j);
            return qr_lua_raise(L, &err);
        }
        return async_yield_io(L, j, (lua_KContext)ji);
    }
    j->from = pool;
    return async_step(L, LUA_OK, (lua_KContext)ji);
}

static int run(lua_State *L, qr_pool *pool, qr_timings *t, qr_conn *held, enum mode mode)
{
    if (qr_lua_in_async(L)) return run_async(L, pool, t, held, mode);
    size_t len;
    const char *name;
    const char *sql = check_sql(L, &len, &name);
    const char *sv[STACK_PARAMS];
    int sl[STACK_PARAMS];
    char st[STACK_PARAMS][32];
    params pp;
    int n = collect_params(L, 3, &pp, sv, sl, st);
    lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.decode, or nil */
    int decode = lua_gettop(L);
    PGresult **box = new_result_box(L);

    qr_stmt *stmt = qr_pool_stmt(pool, sql, len);
    qr_hist *hist = hist_of(t, stmt, sql, len, name);

    qr_error err;
    qr_conn *c = held;
    if (!c && qr_pool_acquire(pool, stmt ? stmt->fingerprint : NULL, &c, &err) != 0)
        return qr_lua_raise(L, &err);
    uint64_t t0 = qr_now_ns();
    PGresult *r = qr_conn_exec(c, stmt, sql, n, pp.values, pp.lengths, &err);
    if (hist) qr_hist_record(hist, qr_now_ns() - t0);
    if (!held) qr_pool_release(pool, c);
    if (!r) return qr_lua_raise(L, &err);
    *box = r;
    push_result(L, r, mode, decode);
    PQclear(r);
    *box = NULL;
    return 1;
}

/* ---- pool ---- */

static lpool *check_pool(lua_State *L)
{
    lpool *u = luaL_checkudata(L, 1, POOL_MT);
    if (!u->p) luaL_error(L, "the pool is closed");
    return u;
}

static int opt_int(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum && !lua_isnil(L, -1)) luaL_error(L, "pool option '%s' must be an integer", k);
    lua_pop(L, 1);
    return (int)v;
}

/* core.pool_new({conninfo=, max_size=, ...}, timings) */
static int l_pool_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    qr_timings *t = qr_lua_totimings(L, 2);
    qr_pool_options o = {0};
    lua_getfield(L, 1, "conninfo");
    o.conninfo = lua_tostring(L, -1); /* copied by qr_pool_new */
    o.max_size = opt_int(L, 1, "max_size");
    o.idle_timeout_ms = opt_int(L, 1, "idle_timeout_ms");
    o.connect_timeout_ms = opt_int(L, 1, "connect_timeout_ms");
    o.max_lifetime_ms = opt_int(L, 1, "max_lifetime_ms");
    o.validate_after_ms = opt_int(L, 1, "validate_after_ms");
    o.hold_warn_ms = opt_int(L, 1, "hold_warn_ms");
    lua_getfield(L, 1, "no_prepare");
    o.no_prepare = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.timings = t;
    lpool *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->p = NULL;
    u->t = t;
    luaL_setmetatable(L, POOL_MT);
    lua_pushvalue(L, 2); /* keep the timings alive as long as the pool */
    lua_setiuservalue(L, -2, 1);
    u->p = qr_pool_new(&o);
    if (!u->p) return luaL_error(L, "out of memory");
    return 1;
}

static int l_pool_close(lua_State *L)
{
    lpool *u = luaL_checkudata(L, 1, POOL_MT);
    qr_pool_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_pool_query(lua_State *L)
{
    lpool *u = check_pool(L);
    return run(L, u->p, u->t, NULL, ROWS);
}

static int l_pool_query_one(lua_State *L)
{
    lpool *u = check_pool(L);
    return run(L, u->p, u->t, NULL, ONE);
}

static int l_pool_exec(lua_State *L)
{
    lpool *u = check_pool(L);
    return run(L, u->p, u->t, NULL, EXEC);
}

/* In a task (quarry.tasks), waiting for a connection yields "pool" until
 * one is free; stack: pool, who, conn. */
static int acquire_step(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    lua_settop(L, 3);
    lpool *u = check_pool(L);
    lconn *lc = lua_touserdata(L, 3);
    qr_error err;
    int got = qr_pool_try_acquire(u->p, lua_tostring(L, 2), &lc->c, &err);
    if (got < 0) return qr_lua_raise(L, &err);
    if (got == 1) {
        lua_pushliteral(L, "pool");
        return lua_yieldk(L, 1, 0, acquire_step);
    }
    return 1;
}

/* pool:acquire([who]) -> conn */
static int l_pool_acquire(lua_State *L)
{
    lpool *u = check_pool(L);
    const char *who = luaL_optstring(L, 2, NULL);
    lua_settop(L, 2);
    lconn *lc = lua_newuserdatauv(L, sizeof *lc, 1);
    lc->c = NULL;
    lc->p = u->p;
    lc->t = u->t;
    luaL_setmetatable(L, CONN_MT);
    lua_pushvalue(L, 1); /* the pool outlives its connections */
    lua_setiuservalue(L, -2, 1);
    if (qr_lua_in_async(L)) return acquire_step(L, LUA_OK, 0);
    qr_error err;
    if (qr_pool_acquire(u->p, who, &lc->c, &err) != 0) return qr_lua_raise(L, &err);
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_pool_stats(lua_State *L)
{
    lpool *u = check_pool(L);
    qr_pool_stats s;
    qr_pool_stats_get(u->p, &s);
    lua_createtable(L, 0, 12);
    set_int(L, "max", s.max_size);
    set_int(L, "total", s.total);
    set_int(L, "idle", s.idle);
    set_int(L, "in_use", s.in_use);
    set_int(L, "waiting", s.waiting);
    set_int(L, "created", (lua_Integer)s.created);
    set_int(L, "acquired", (lua_Integer)s.acquired);
    set_int(L, "timeouts", (lua_Integer)s.timeouts);
    set_int(L, "closed", (lua_Integer)(s.closed_idle + s.closed_lifetime + s.closed_broken +
                                       s.closed_busy));
    lua_createtable(L, 0, 4);
    set_int(L, "idle", (lua_Integer)s.closed_idle);
    set_int(L, "lifetime", (lua_Integer)s.closed_lifetime);
    set_int(L, "broken", (lua_Integer)s.closed_broken);
    set_int(L, "busy", (lua_Integer)s.closed_busy);
    lua_setfield(L, -2, "closed_by");
    lua_pushnumber(L, s.wait_ms);
    lua_setfield(L, -2, "wait_ms");
    return 1;
}

static int l_pool_maintain(lua_State *L)
{
    qr_pool_maintain(check_pool(L)->p);
    return 0;
}

/* ---- a held connection ---- */

static lconn *check_conn(lua_State *L)
{
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (!lc->c) luaL_error(L, "the connection was released");
    return lc;
}

static int l_conn_query(lua_State *L)
{
    lconn *lc = check_conn(L);
    return run(L, lc->p, lc->t, lc->c, ROWS);
}

static int l_conn_query_one(lua_State *L)
{
    lconn *lc = check_conn(L);
    return run(L, lc->p, lc->t, lc->c, ONE);
}

static int l_conn_exec(lua_State *L)
{
    lconn *lc = check_conn(L);
    return run(L, lc->p, lc->t, lc->c, EXEC);
}

/* The Lua source of conn:copy_in: calls the function at `fn` for each
 * chunk under pcall, so a raise there aborts the COPY instead of leaving the
 * session half-way through it. The last chunk stays on the stack until the
 * next call, so its bytes stay alive while libpq sends them. */
typedef struct {
    lua_State *L;
    int fn;
    int failed; /* the function raised: its error is on the stack */
} copy_src;

static int lua_copy_source(void *ud, const char **buf, size_t *len)
{
    copy_src *cs = ud;
    lua_State *L = cs->L;
    lua_settop(L, cs->fn); /* drop the previous chunk */
    lua_pushvalue(L, cs->fn);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        cs->failed = 1;
        return -1;
    }
    if (lua_isnil(L, -1)) return 0;
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pushliteral(L, "copy_in source must return strings, then nil");
        cs->failed = 1;
        return -1;
    }
    *buf = lua_tolstring(L, -1, len);
    return 1;
}

/* conn:copy_in(sql, source) -> rows: sql is COPY ... FROM STDIN; source()
 * returns the data in chunks of any size, then nil. An error in source is
 * re-raised after the COPY is aborted. */
static int l_conn_copy_in(lua_State *L)
{
    lconn *lc = check_conn(L);
    const char *sql = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    copy_src cs = {L, 3, 0};
    qr_error err;
    long long rows = qr_conn_copy_in(lc->c, sql, lua_copy_source, &cs, &err);
    if (cs.failed) return lua_error(L); /* the source's own error, on top */
    lua_settop(L, 3);
    if (rows < 0) return qr_lua_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)rows);
    return 1;
}

/* conn:begin([{isolation = "serializable", read_only = true, setup = "SET LOCAL ...; SELECT ..."}]):
 * setup runs in BEGIN's round trip (quarry's own statements, not a caller's
 * input); with setup, begin returns its last statement's rows */
/* BEGIN, COMMIT or ROLLBACK (sql) on a held connection from a task: sent,
 * then the task yields until the server answers, as for a query. */
static int tx_async(lua_State *L, lconn *lc, const char *sql, int after, enum mode mode)
{
    lua_pushstring(L, sql); /* kept on the stack until answered */
    const char *text = lua_tostring(L, -1);
    lua_pushnil(L); /* no JSON decoding of what transaction control returns */
    int decode = lua_gettop(L);
    job *j = lua_newuserdatauv(L, sizeof *j, 0);
    memset(j, 0, sizeof *j);
    luaL_setmetatable(L, JOB_MT);
    int ji = lua_gettop(L);
    lua_toclose(L, ji);
    j->c = lc->c;
    j->mode = mode;
    j->decode = decode;
    j->after = after;
    qr_conn_set_nonblocking(j->c, 1);
    qr_error err;
    if (qr_conn_send_command(j->c, text, &err) != 0) {
        qr_conn *c = j->c;
        job_end(j);
        tx_done(c, after, 0);
        return qr_lua_raise(L, &err);
    }
    return async_yield_io(L, j, (lua_KContext)ji);
}

static int l_conn_begin(lua_State *L)
{
    lconn *lc = check_conn(L);
    qr_tx_options o = {0};
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "isolation");
        if (!lua_isnil(L, -1)) {
            const char *iso = luaL_checkstring(L, -1);
            int level = qr_isolation_parse(iso);
            if (level < 0)
                return luaL_error(L, "unknown isolation level '%s' (read committed, repeatable "
                                     "read or serializable)", iso);
            o.isolation = (qr_isolation)level;
        }
        lua_getfield(L, 2, "read_only");
        o.read_only = lua_toboolean(L, -1);
        lua_getfield(L, 2, "setup");
        o.setup = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1); /* kept alive by the table */
        lua_pop(L, 3);
    }
    qr_error err;
    if (qr_lua_in_async(L)) {
        char sql[QR_TX_SQL_MAX];
        if (qr_tx_begin_sql(lc->c, &o, sql, sizeof sql, &err) != 0) return qr_lua_raise(L, &err);
        return tx_async(L, lc, sql, TX_BEGAN, o.setup ? ROWS : EXEC);
    }
    if (!o.setup) {
        if (qr_tx_begin(lc->c, &o, &err) != 0) return qr_lua_raise(L, &err);
        return 0;
    }
    lua_pushnil(L); /* no JSON decoding */
    int decode = lua_gettop(L);
    PGresult **box = new_result_box(L);
    PGresult *r = qr_tx_begin_rows(lc->c, &o, &err);
    if (!r) return qr_lua_raise(L, &err);
    *box = r;
    push_result(L, r, ROWS, decode);
    PQclear(r);
    *box = NULL;
    return 1;
}

static int l_conn_commit(lua_State *L)
{
    lconn *lc = check_conn(L);
    qr_error err;
    if (qr_lua_in_async(L)) {
        char sql[64];
        int st = qr_tx_commit_sql(lc->c, sql, sizeof sql, &err);
        if (st < 0) return qr_lua_raise(L, &err);
        if (st == 0) return tx_async(L, lc, sql, TX_COMMITTED, EXEC);
        /* a failed transaction: qr_tx_commit says so and rolls back (rare: blocking) */
    }
    if (qr_tx_commit(lc->c, &err) != 0) return qr_lua_raise(L, &err);
    return 0;
}

static int l_conn_rollback(lua_State *L)
{
    lconn *lc = check_conn(L);
    qr_error err;
    if (qr_lua_in_async(L)) {
        char sql[96];
        if (qr_tx_rollback_sql(lc->c, sql, sizeof sql, &err) != 0) return qr_lua_raise(L, &err);
        return tx_async(L, lc, sql, TX_ROLLED_BACK, EXEC);
    }
    if (qr_tx_rollback(lc->c, &err) != 0) return qr_lua_raise(L, &err);
    return 0;
}

static int l_conn_depth(lua_State *L)
{
    lua_pushinteger(L, qr_tx_depth(check_conn(L)->c));
    return 1;
}

/* conn:restrict(on [, max_result_bytes]): only reading statements, one per
 * call, each result at most that big (pg.h). */
static int l_conn_restrict(lua_State *L)
{
    qr_conn *c = check_conn(L)->c;
    int on = lua_toboolean(L, 2);
    lua_Integer cap = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, cap >= 0, 3, "a size in bytes");
    qr_conn_restrict(c, on);
    qr_conn_cap_result(c, on ? (size_t)cap : 0);
    return 0;
}

static int l_conn_pid(lua_State *L)
{
    lua_pushinteger(L, PQbackendPID(qr_conn_pg(check_conn(L)->c)));
    return 1;
}

/* conn:release(): idempotent; also __close. */
/* conn:expect_long_hold(): quarry's own bulk writers hold on purpose. */
static int l_conn_expect_long_hold(lua_State *L)
{
    lconn *lc = check_conn(L);
    qr_pool_expect_long_hold(lc->p, lc->c);
    return 0;
}

static int l_conn_release(lua_State *L)
{
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (lc->c) qr_pool_release(lc->p, lc->c);
    lc->c = NULL;
    return 0;
}

/* __gc: no network round trip from a finalizer; a connection dropped
 * inside a transaction is marked broken so the pool just closes it. */
static int l_conn_gc(lua_State *L)
{
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    if (lc->c) {
        if (qr_tx_depth(lc->c) > 0 || PQtransactionStatus(qr_conn_pg(lc->c)) != PQTRANS_IDLE)
            qr_conn_mark_broken(lc->c);
        qr_pool_release(lc->p, lc->c);
        lc->c = NULL;
    }
    return 0;
}

static int l_conn_tostring(lua_State *L)
{
    lconn *lc = luaL_checkudata(L, 1, CONN_MT);
    lua_pushfstring(L, "quarry.conn (%s)", lc->c ? "held" : "released");
    return 1;
}

static int l_pool_tostring(lua_State *L)
{
    lpool *u = luaL_checkudata(L, 1, POOL_MT);
    lua_pushfstring(L, "quarry.pool (%s)", u->p ? "open" : "closed");
    return 1;
}

void qr_lua_open_pool(lua_State *L)
{
    /* A private cjson instance decodes json columns; its settings are ours. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "new");
        lua_remove(L, -2);
        if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_getfield(L, -1, "decode");
            lua_remove(L, -2);
        }
    }
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    int decode = lua_gettop(L);

    luaL_newmetatable(L, RESULT_MT);
    lua_pushcfunction(L, result_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, JOB_MT);
    lua_pushcfunction(L, job_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, job_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    /* core.async_threads: quarry.parallel marks its coroutines here */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ASYNC_KEY);
    lua_setfield(L, decode - 1, "async_threads"); /* module, decode */

    static const luaL_Reg conn_methods[] = {
        {"query", l_conn_query}, {"query_one", l_conn_query_one}, {"exec", l_conn_exec},
        {"begin", l_conn_begin}, {"commit", l_conn_commit},       {"rollback", l_conn_rollback},
        {"depth", l_conn_depth}, {"pid", l_conn_pid},             {"release", l_conn_release},
        {"expect_long_hold", l_conn_expect_long_hold},
        {"copy_in", l_conn_copy_in}, {"restrict", l_conn_restrict},
        {NULL, NULL}};
    luaL_newmetatable(L, CONN_MT);
    lua_newtable(L);
    lua_pushvalue(L, decode);
    luaL_setfuncs(L, conn_methods, 1);
    /* Exposed so lua/quarry/db.lua can add the Lua-level methods
     * (transaction, explain) that build on these. */
    lua_pushvalue(L, -1);
    lua_setfield(L, -5, "conn_methods"); /* module, decode, mt, methods */
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_conn_release);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_conn_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    static const luaL_Reg pool_methods[] = {
        {"query", l_pool_query},     {"query_one", l_pool_query_one},
        {"exec", l_pool_exec},       {"acquire", l_pool_acquire},
        {"stats", l_pool_stats},     {"maintain", l_pool_maintain},
        {"close", l_pool_close},     {NULL, NULL}};
    luaL_newmetatable(L, POOL_MT);
    lua_newtable(L);
    lua_pushvalue(L, decode);
    luaL_setfuncs(L, pool_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_pool_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_pool_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushcfunction(L, l_pool_new);
    lua_setfield(L, -3, "pool_new"); /* module table sits below decode */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -3, "null"); /* NULL inside arrays; equal to cjson.null */
    lua_pop(L, 1);
}
