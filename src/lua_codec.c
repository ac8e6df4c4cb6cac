/* lua_codec.c - Lua values <-> bytes, for what the cache stores.
 *
 *   core.encode(value) -> string     raises on a function, userdata, thread,
 *                                    or nesting deeper than 64 (a cycle)
 *   core.decode(bytes) -> value | nil, message
 *   core.json_kind(s) -> 0 | 1 | 2   how a string goes into JSON (below)
 *   core.json_string(s) -> text      s quoted and escaped for JSON
 *   core.json_objects(rows, names, heads, numeric, json_value, sep) -> text
 *                                    rows as JSON objects (below)
 *
 * Exact: integers stay integers, floats keep every bit, strings keep every
 * byte, numeric strings stay strings. Safe: the decoder only builds plain
 * values, checks every length against what is left of the input, caps the
 * depth, and reports anything malformed as nil + message -- it never loads
 * code, never raises on bad input and never reads past the buffer.
 *
 * Format: "Q" version(1) value, where value is one tag byte and its body:
 *   '0' nil  'T' true  'F' false  'N' JSON null (cjson.null, core.null: the
 *   light userdata NULL, what json columns and arrays decode NULL to)
 *   'i' int64 little-endian   'd' IEEE double bits little-endian
 *   's' varint length, bytes
 *   't' varint n_array, varint n_hash, n_array values, n_hash key/value pairs
 */
#include "lua_quarry.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_VERSION 1
#define MAX_DEPTH 64

/* The encoder writes into a qr_lua_buf, not a luaL_Buffer: encoding pushes
 * table entries between writes, which a luaL_Buffer (it may sit at the
 * stack top) forbids. */
typedef qr_lua_buf wbuf;

static void put(lua_State *L, wbuf *w, const void *p, size_t n)
{
    if (qr_lua_buf_put(w, p, n) != 0) luaL_error(L, "out of memory encoding a value");
}

static void put_byte(lua_State *L, wbuf *w, int c)
{
    char ch = (char)c;
    put(L, w, &ch, 1);
}

static void put_varint(lua_State *L, wbuf *w, uint64_t v)
{
    while (v >= 0x80) {
        put_byte(L, w, (int)(v | 0x80));
        v >>= 7;
    }
    put_byte(L, w, (int)v);
}

static void put_u64(lua_State *L, wbuf *w, uint64_t v)
{
    char bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (char)(v >> (8 * i));
    put(L, w, bytes, 8);
}

/* Encode the value at stack index idx (absolute). */
static void encode(lua_State *L, wbuf *b, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put_byte(L, b, '0');
        break;
    case LUA_TBOOLEAN:
        put_byte(L, b, lua_toboolean(L, idx) ? 'T' : 'F');
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) luaL_error(L, "cannot cache a userdata value");
        put_byte(L, b, 'N');
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            put_byte(L, b, 'i');
            put_u64(L, b, (uint64_t)lua_tointeger(L, idx));
        } else {
            double d = (double)lua_tonumber(L, idx);
            uint64_t bits;
            memcpy(&bits, &d, 8);
            put_byte(L, b, 'd');
            put_u64(L, b, bits);
        }
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        put_byte(L, b, 's');
        put_varint(L, b, len);
        put(L, b, s, len);
        break;
    }
    case LUA_TTABLE: {
        if (depth >= MAX_DEPTH) luaL_error(L, "cannot cache a value nested deeper than %d (a cycle?)", MAX_DEPTH);
        luaL_checkstack(L, 4, "value too deep");
        lua_Integer n = 0;
        while (lua_rawgeti(L, idx, n + 1) != LUA_TNIL) {
            lua_pop(L, 1);
            n++;
        }
        lua_pop(L, 1);
        uint64_t nhash = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (!(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n))
                nhash++;
        }
        put_byte(L, b, 't');
        put_varint(L, b, (uint64_t)n);
        put_varint(L, b, nhash);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            encode(L, b, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            int v = lua_gettop(L), k = v - 1;
            if (!(lua_isinteger(L, k) && lua_tointeger(L, k) >= 1 && lua_tointeger(L, k) <= n)) {
                encode(L, b, k, depth + 1);
                encode(L, b, v, depth + 1);
            }
            lua_pop(L, 1);
        }
        break;
    }
    default:
        luaL_error(L, "cannot cache a %s value", luaL_typename(L, idx));
    }
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    wbuf *w = qr_lua_buf_new(L);
    put_byte(L, w, 'Q');
    put_byte(L, w, CODEC_VERSION);
    encode(L, w, 1, 0);
    lua_pushlstring(L, w->data, w->len);
    qr_lua_buf_free(w);
    return 1;
}

typedef struct {
    const unsigned char *p, *end;
    const char *error;
} reader;

static int fail(reader *r, const char *why)
{
    if (!r->error) r->error = why;
    return 0;
}

static int get_varint(reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return fail(r, "truncated length");
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return fail(r, "length too long");
}

static int get_u64(reader *r, uint64_t *out)
{
    if (r->end - r->p < 8) return fail(r, "truncated number");
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    *out = v;
    return 1;
}

/* Push one decoded value; 0 (nothing pushed) on malformed input. */
static int decode(lua_State *L, reader *r, int depth)
{
    if (r->p >= r->end) return fail(r, "truncated value");
    if (!lua_checkstack(L, 3)) return fail(r, "value too deep");
    unsigned char tag = *r->p++;
    uint64_t u, n, m;
    switch (tag) {
    case '0': lua_pushnil(L); return 1;
    case 'T': lua_pushboolean(L, 1); return 1;
    case 'F': lua_pushboolean(L, 0); return 1;
    case 'N': lua_pushlightuserdata(L, NULL); return 1;
    case 'i':
        if (!get_u64(r, &u)) return 0;
        lua_pushinteger(L, (lua_Integer)u);
        return 1;
    case 'd': {
        if (!get_u64(r, &u)) return 0;
        double d;
        memcpy(&d, &u, 8);
        lua_pushnumber(L, (lua_Number)d);
        return 1;
    }
    case 's':
        if (!get_varint(r, &n)) return 0;
        if (n > (uint64_t)(r->end - r->p)) return fail(r, "string longer than the value");
        lua_pushlstring(L, (const char *)r->p, (size_t)n);
        r->p += n;
        return 1;
    case 't': {
        if (depth >= MAX_DEPTH) return fail(r, "nested too deep");
        if (!get_varint(r, &n) || !get_varint(r, &m)) return 0;
        /* every element takes at least one byte: a count beyond what is
         * left is a lie, and must not become a huge allocation */
        uint64_t left = (uint64_t)(r->end - r->p);
        if (n > left || m > left / 2) return fail(r, "table larger than the value");
        /* pre-size by at most 256 slots: memory then follows the bytes
         * actually present, not the counts the input claims */
        lua_createtable(L, n > 256 ? 256 : (int)n, m > 256 ? 256 : (int)m);
        for (uint64_t i = 1; i <= n; i++) {
            if (!decode(L, r, depth + 1)) {
                lua_pop(L, 1);
                return 0;
            }
            lua_rawseti(L, -2, (lua_Integer)i);
        }
        for (uint64_t i = 0; i < m; i++) {
            if (!decode(L, r, depth + 1)) {
                lua_pop(L, 1);
                return 0;
            }
            if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
                lua_pop(L, 2);
                return fail(r, "table key is nil or NaN");
            }
            if (!decode(L, r, depth + 1)) {
                lua_pop(L, 2);
                return 0;
            }
            lua_rawset(L, -3);
        }
        return 1;
    }
    default:
        return fail(r, "unknown type tag");
    }
}

/* Decode len bytes at s onto the stack: 1 with the value pushed, or 0 with
 * nothing pushed and *why set. Never raises on bad input. */
int qr_lua_decode(lua_State *L, const char *s, size_t len, const char **why)
{
    reader r = {(const unsigned char *)s, (const unsigned char *)s + len, NULL};
    if (len < 2 || s[0] != 'Q') {
        r.error = "not a quarry value";
    } else if (s[1] != CODEC_VERSION) {
        r.error = "unknown codec version";
    } else {
        r.p += 2;
        if (decode(L, &r, 0)) {
            if (r.p == r.end) return 1;
            lua_pop(L, 1);
            r.error = "trailing bytes";
        }
    }
    *why = r.error;
    return 0;
}

/* core.decode(bytes [, offset]): offset (1-based, default 1) lets a caller
 * skip a header without copying the rest of a large value first. */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer off = luaL_optinteger(L, 2, 1);
    if (off < 1 || (size_t)(off - 1) > len) return luaL_argerror(L, 2, "offset out of range");
    const char *why;
    if (qr_lua_decode(L, s + off - 1, len - (size_t)(off - 1), &why)) return 1;
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

/* How a string goes into JSON: 0 when it is number text as PostgreSQL
 * writes a numeric (-?digits[.digits], the form the JSON writer leaves
 * unquoted in a numeric column), 1 when it can be quoted as it is (no
 * control character, quote or backslash), 2 when it needs escaping. The
 * JSON writer asks this of every value of every row: the same test as two
 * Lua patterns cost some 3,000 instructions a value, a tenth of a computed
 * report's whole cost. */
static int json_kind(const unsigned char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-') i++;
    size_t digits = i;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    if (i > digits) {
        if (i < len && s[i] == '.') i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == len) return 0;
    }
    for (i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') return 2;
    return 1;
}

/* core.json_kind(s) -> 0 | 1 | 2, as above. */
static int l_json_kind(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, json_kind(s, len));
    return 1;
}

static void put_json_string(lua_State *L, wbuf *b, const unsigned char *s, size_t len)
{
    put_byte(L, b, '"');
    size_t run = 0; /* bytes of s[i - run .. i) not yet written: copied in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (!esc) {
            run++;
            continue;
        }
        put(L, b, s + i - run, run);
        run = 0;
        put(L, b, esc, strlen(esc));
    }
    put(L, b, s + len - run, run);
    put_byte(L, b, '"');
}

/* core.json_string(s): s as a JSON string, quoted and escaped: '"', '\\',
 * \n, \r and \t as such, other control characters as \u00XX. The one
 * escaping quarry's JSON has (json_objects writes its strings the same). */
static int l_json_string(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    wbuf *b = qr_lua_buf_new(L);
    put_json_string(L, b, s, len);
    lua_pushlstring(L, b->data, b->len);
    qr_lua_buf_free(b);
    return 1;
}

/* core.json_objects(rows, names, heads, numeric, json_value, sep): each row
 * of the array rows as a JSON object of the fields names (heads[i] is what
 * comes before field i: '{"name":' or ',"name":'), sep between them: what
 * the JSON writer (lua/quarry/formats/json.lua) writes for the rows and the
 * totals. A string goes as json_kind says (number text unquoted in a
 * numeric[i] column, else quoted, escaped as formats.json_string does), an
 * integer in decimal, a float in the fewest of 15 to 17 significant digits
 * that read back the same (NaN and the infinities as null), booleans as
 * such, nil as null, anything else as json_value(v, numeric[i]) returns.
 * Fields are read raw: no metamethod runs. In C because the same in Lua
 * cost more than the rest of a served report after its queries. */
static int l_json_objects(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    size_t seplen;
    const char *sep = luaL_checklstring(L, 6, &seplen);
    lua_Integer nfields = (lua_Integer)lua_rawlen(L, 2), nrows = (lua_Integer)lua_rawlen(L, 1);
    luaL_checkstack(L, 8, "json_objects");
    wbuf *b = qr_lua_buf_new(L);
    for (lua_Integer i = 1; i <= nrows; i++) {
        if (i > 1) put(L, b, sep, seplen);
        if (lua_rawgeti(L, 1, i) != LUA_TTABLE) luaL_error(L, "json_objects: row %d is not a table", (int)i);
        int row = lua_gettop(L);
        for (lua_Integer f = 1; f <= nfields; f++) {
            size_t hl;
            lua_rawgeti(L, 3, f);
            const char *head = lua_tolstring(L, -1, &hl);
            if (!head) luaL_error(L, "json_objects: heads[%d] is not a string", (int)f);
            put(L, b, head, hl);
            lua_pop(L, 1);
            lua_rawgeti(L, 4, f);
            int numeric = lua_toboolean(L, -1);
            lua_pop(L, 1);
            lua_rawgeti(L, 2, f);
            int t = lua_rawget(L, row);
            if (t == LUA_TSTRING) {
                size_t len;
                const unsigned char *s = (const unsigned char *)lua_tolstring(L, -1, &len);
                int kind = json_kind(s, len);
                if (kind == 0 && numeric) {
                    put(L, b, s, len);
                } else if (kind < 2) {
                    put_byte(L, b, '"');
                    put(L, b, s, len);
                    put_byte(L, b, '"');
                } else {
                    put_json_string(L, b, s, len);
                }
            } else if (t == LUA_TNIL) {
                put(L, b, "null", 4);
            } else if (t == LUA_TBOOLEAN) {
                if (lua_toboolean(L, -1)) put(L, b, "true", 4);
                else put(L, b, "false", 5);
            } else if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
                char num[32];
                int n = snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -1));
                put(L, b, num, (size_t)n);
            } else if (t == LUA_TNUMBER) {
                double d = (double)lua_tonumber(L, -1);
                if (d != d || d == HUGE_VAL || d == -HUGE_VAL) {
                    put(L, b, "null", 4);
                } else {
                    char num[40];
                    int n = 0;
                    for (int prec = 15; prec <= 17; prec++) {
                        n = snprintf(num, sizeof num, "%.*g", prec, d);
                        if (strtod(num, NULL) == d) break;
                    }
                    put(L, b, num, (size_t)n);
                }
            } else {
                lua_pushvalue(L, 5);
                lua_insert(L, -2);
                lua_pushboolean(L, numeric);
                lua_call(L, 2, 1);
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                if (!s) luaL_error(L, "json_objects: json_value returned no text");
                put(L, b, s, len);
            }
            lua_pop(L, 1);
        }
        put(L, b, nfields == 0 ? "{}" : "}", nfields == 0 ? 2 : 1);
        lua_pop(L, 1); /* the row */
    }
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    qr_lua_buf_free(b);
    return 1;
}

void qr_lua_open_codec(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", l_encode},
                                   {"decode", l_decode},
                                   {"json_kind", l_json_kind},
                                   {"json_string", l_json_string},
                                   {"json_objects", l_json_objects},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
