/* main.c - the quarry host: a Lua 5.4 state with the engine preloaded,
 * running lua/quarry/cli.lua. Everything a user sees is decided in Lua; this
 * file only finds the Lua side, routes warnings to the log and turns an
 * uncaught error into one line and exit code 1. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "lua_quarry.h"
#include "paths.h"

/* Where quarry's Lua modules are: the source tree for a binary run from its
 * build tree; else share/lua/5.4 beside the binary's bin/ (an install under
 * any prefix, or moved whole); else the configured install directory. Never
 * the current directory. Plugins and scripts are found from there by
 * quarry.paths. */
static const char *find_lua_dir(void)
{
    static char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const char *bin = dirname(exe);
        if (strcmp(bin, QUARRY_BINARY_DIR) == 0) return QUARRY_SOURCE_DIR "/lua";
        snprintf(dir, sizeof dir, "%s/../share/lua/5.4", bin);
        char probe[PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/quarry/cli.lua", dir);
        if (access(probe, R_OK) == 0) return dir;
    }
    return QUARRY_LUADIR;
}

/* lua_WarnFunction: pieces of one warning arrive with tocont set. */
typedef struct {
    char buf[2048];
    size_t len;
    int on;
} warn_state;

static void warn_to_log(void *ud, const char *msg, int tocont)
{
    warn_state *w = ud;
    if (w->len == 0 && !tocont && msg[0] == '@') { /* control message */
        if (strcmp(msg, "@on") == 0) w->on = 1;
        else if (strcmp(msg, "@off") == 0) w->on = 0;
        return;
    }
    size_t n = strlen(msg);
    if (n > sizeof w->buf - 1 - w->len) n = sizeof w->buf - 1 - w->len;
    memcpy(w->buf + w->len, msg, n);
    w->len += n;
    if (tocont) return;
    w->buf[w->len] = '\0';
    if (w->on) qr_log_write(QR_LOG_WARN, "lua", w->buf, NULL);
    w->len = 0;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Keep only the entries of a default search path that are absolute. */
static void push_absolute_entries(lua_State *L, const char *field)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, field);
    const char *path = lua_tostring(L, -1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (path && *path) {
        size_t n = strcspn(path, ";");
        if (path[0] == '/') {
            luaL_addlstring(&b, path, n);
            luaL_addchar(&b, ';');
        }
        path += n + (path[n] == ';');
    }
    luaL_pushresult(&b);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

static int boot(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    const char *lua_dir = find_lua_dir();
    luaL_openlibs(L);

    push_absolute_entries(L, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    push_absolute_entries(L, "cpath");
    lua_getglobal(L, "package");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "cpath");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_quarry_core);
    lua_setfield(L, -2, "quarry.core");
    lua_settop(L, 2);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "quarry.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_createtable(L, 0, 2);
    lua_pushstring(L, QUARRY_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, argv[0]);
    lua_setfield(L, -2, "exe");
    lua_call(L, 2, 1);
    return 1;
}

int main(int argc, char **argv)
{
    /* From the start, not when the cache connects: `quarry ... | head` then
     * ends the same way with or without Redis (cli.lua: EPIPE on standard
     * output is a reader that took what it wanted). */
    qr_survive_sigpipe();
    lua_State *L = luaL_newstate();
    if (!L) {
        fputs("quarry: cannot create a Lua state (out of memory)\n", stderr);
        return 1;
    }
    warn_state w = {.len = 0, .on = 1};
    lua_setwarnf(L, warn_to_log, &w);
    lua_pushcfunction(L, traceback);
    lua_pushcfunction(L, boot);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = 1;
    if (lua_pcall(L, 2, 1, 1) == LUA_OK) {
        status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    } else {
        /* cli.lua catches script errors itself; reaching here is a bug in quarry. */
        fprintf(stderr, "quarry: %s\n", lua_tostring(L, -1));
    }
    lua_close(L);
    return status;
}
