/* Fuzz harness for the cache value decoder (src/lua_codec.c): whatever the
 * bytes, core.decode must return a value or nil + message -- never raise,
 * crash, read out of bounds or allocate without bound -- and a value it
 * returns must encode and decode again.
 *
 * libFuzzer:  tests/fuzz/run.sh [SECONDS]
 * Replay:     fuzz_codec_replay FILE... (built by ctest; runs the corpus)
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua_quarry.h"

static lua_State *L;
static int decode_ref, encode_ref;

static void setup(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "quarry.core", luaopen_quarry_core, 0);
    lua_getfield(L, -1, "decode");
    decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "encode");
    encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) setup();
    lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (!lua_isnil(L, -2) || lua_isnil(L, -1)) { /* decoded: must round-trip */
        lua_pop(L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, encode_ref);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            fprintf(stderr, "re-encode raised: %s\n", lua_tostring(L, -1));
            abort();
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
        lua_insert(L, -2);
        lua_call(L, 1, 2);
        if (!lua_isnil(L, -1)) {
            fprintf(stderr, "re-decode failed: %s\n", lua_tostring(L, -1));
            abort();
        }
    }
    lua_settop(L, 0);
    return 0;
}

#ifdef QUARRY_FUZZ_REPLAY
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("replayed %d input(s)\n", n);
    if (L) lua_close(L);
    return n > 0 ? 0 : 1;
}
#endif
