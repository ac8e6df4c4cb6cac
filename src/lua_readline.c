/* lua_readline.c - the terminal side of `quarry shell`: line editing through
 * libedit when the build found it, and Ctrl-C as psql answers it.
 *
 *   core.readline(prompt) -> line | false (Ctrl-C: the line is dropped) | nil (end of input)
 *   core.history_load(path), core.history_save(path)  the shell's history file
 *   core.has_readline     -> boolean
 *   core.shell_interrupts()  from now on Ctrl-C cancels instead of exiting:
 *   core.interruptible(f, ...) -> pcall(f, ...), where Ctrl-C cancels the
 *       running statement (libpq cancel) and stops Lua code with an error
 *       "interrupted (Ctrl-C)"; outside readline and interruptible, Ctrl-C
 *       does nothing.
 */
#include "lua_quarry.h"

#include "pg.h"

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QUARRY_HAVE_EDITLINE
#include <editline/readline.h>
#endif

/* What a SIGINT meets. The handler leaves readline with siglongjmp (as psql
 * does; no Lua frame lies between the jump and its target), and inside
 * interruptible it sends the server a cancel and sets a hook that raises at
 * the next Lua instruction, the way lua.c stops a script. */
static sigjmp_buf readline_jump;
static volatile sig_atomic_t in_readline, in_eval;
static lua_State *volatile eval_L;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted (Ctrl-C)");
}

static void on_shell_sigint(int sig)
{
    (void)sig;
    if (in_readline) siglongjmp(readline_jump, 1);
    if (in_eval) {
        qr_conn_cancel_running();
        lua_sethook(eval_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
}

static int l_shell_interrupts(lua_State *L)
{
    (void)L;
#ifdef QUARRY_HAVE_EDITLINE
    rl_catch_signals = 0; /* libedit's own handler would re-raise SIGINT to the process group */
#endif
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_shell_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    return 0;
}

static int l_interruptible(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int n = lua_gettop(L) - 1;
    eval_L = L;
    in_eval = 1;
    int st = lua_pcall(L, n, LUA_MULTRET, 0);
    in_eval = 0;
    lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that came as the call ended must not fire later */
    lua_pushboolean(L, st == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

#ifdef QUARRY_HAVE_EDITLINE
#define LINE_MT "quarry.readline.line"

/* The line libedit allocated, owned by a userdata until it is a Lua string,
 * so a raise while pushing cannot leak it. */
static int line_gc(lua_State *L)
{
    char **box = luaL_checkudata(L, 1, LINE_MT);
    free(*box);
    *box = NULL;
    return 0;
}

static int l_readline(lua_State *L)
{
    const char *prompt = luaL_checkstring(L, 1);
    char **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, LINE_MT);
    if (sigsetjmp(readline_jump, 1)) { /* Ctrl-C: the line is dropped, as in psql */
        in_readline = 0;
        fputs("\n", stdout);
        fflush(stdout);
        lua_pushboolean(L, 0);
        return 1;
    }
    in_readline = 1;
    *box = readline(prompt);
    in_readline = 0;
    if (!*box) {
        lua_pushnil(L);
        return 1;
    }
    if (**box) add_history(*box);
    lua_pushstring(L, *box);
    free(*box);
    *box = NULL;
    return 1;
}

static int l_history_load(lua_State *L)
{
    read_history(luaL_checkstring(L, 1)); /* a missing file is a first session */
    return 0;
}

static int l_history_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    stifle_history(1000);
    lua_pushboolean(L, write_history(path) == 0);
    return 1;
}
#else
static int l_readline(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "this quarry was built without libedit");
    return 2;
}

static int l_history_load(lua_State *L)
{
    (void)L;
    return 0;
}

static int l_history_save(lua_State *L)
{
    lua_pushboolean(L, 0);
    return 1;
}
#endif

void qr_lua_open_readline(lua_State *L)
{
#ifdef QUARRY_HAVE_EDITLINE
    luaL_newmetatable(L, LINE_MT);
    lua_pushcfunction(L, line_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "has_readline");
    lua_pushcfunction(L, l_readline);
    lua_setfield(L, -2, "readline");
    lua_pushcfunction(L, l_history_load);
    lua_setfield(L, -2, "history_load");
    lua_pushcfunction(L, l_history_save);
    lua_setfield(L, -2, "history_save");
    lua_pushcfunction(L, l_shell_interrupts);
    lua_setfield(L, -2, "shell_interrupts");
    lua_pushcfunction(L, l_interruptible);
    lua_setfield(L, -2, "interruptible");
}
