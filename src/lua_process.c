/* lua_process.c - worker processes for quarry serve --workers N.
 *
 *   core.fork()                 -> 0 in the child, its pid in the parent
 *   core.getpid()               -> this process's pid
 *   core.pid_namespace()        -> "pid:[4026531836]" (which pids this process
 *       sees: a pid means the same process only within one), or nil
 *   core.wait_children({pid} [, replace]) -> exit code: wait for every
 *       child, passing SIGTERM, SIGINT and SIGHUP on to them; 0 if all
 *       exited 0, else the first other code (128 + signal for one killed).
 *       replace(i, code, signalled), unless a SIGTERM or SIGINT came, may
 *       start another process for child i and return its pid (a worker
 *       that crashed); a code it does not replace counts as above.
 *   core.stdout_status()        -> true, or nil, message, errno: whether all
 *       written to standard output reached it (flushed now). A report sent to
 *       a full disk must not end in exit 0; print() and io.write keep no
 *       error of their own beyond stdio's sticky flag, which only C sees.
 */
#include "lua_quarry.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t pending_sig;

static void remember(int sig)
{
    pending_sig = sig;
}

static int l_fork(lua_State *L)
{
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) return luaL_error(L, "cannot start a worker: %s", strerror(errno));
    if (pid == 0) { /* the parent's forwarding of signals is not the child's */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
    }
    lua_pushinteger(L, pid);
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_pid_namespace(lua_State *L)
{
    char buf[64];
    ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
    if (n <= 0) return 0;
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

static int l_wait_children(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int replace = !lua_isnoneornil(L, 2);
    if (replace) luaL_checktype(L, 2, LUA_TFUNCTION);
    int n = (int)luaL_len(L, 1);
    pid_t pids[256];
    if (n > 256) n = 256;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        pids[i] = (pid_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remember; /* no SA_RESTART: waitpid returns to pass the signal on */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int left = n, code = 0, stopping = 0;
    while (left > 0) {
        /* a signal that came while replace ran is passed on here */
        int sig = pending_sig;
        pending_sig = 0;
        if (sig == SIGTERM || sig == SIGINT) stopping = 1;
        for (int i = 0; sig && i < n; i++)
            if (pids[i] > 0) kill(pids[i], sig);
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno != EINTR) break;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (pids[i] != pid) continue;
            pids[i] = 0;
            left--;
            int signalled = WIFSIGNALED(status);
            int c = signalled ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
            /* stopped by the very signal passed on (a worker that had not yet
             * taken it over to drain): the stop it was asked for */
            if (stopping && signalled && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT)) c = 0;
            if (c != 0 && replace && !stopping && pending_sig != SIGTERM && pending_sig != SIGINT) {
                lua_pushvalue(L, 2);
                lua_pushinteger(L, i + 1);
                lua_pushinteger(L, c);
                lua_pushboolean(L, signalled);
                lua_call(L, 3, 1);
                pid_t again = (pid_t)lua_tointeger(L, -1);
                lua_pop(L, 1);
                if (again > 0) {
                    pids[i] = again;
                    left++;
                    continue;
                }
            }
            if (c != 0 && code == 0) code = c;
        }
    }
    lua_pushinteger(L, code);
    return 1;
}

/* Whether standard output is a pipe or socket nobody reads any more. stdio
 * keeps a failed write's flag, not its errno, so a print() that met EPIPE
 * earlier is known only from this; poll reports it as POLLERR (a pipe) or
 * POLLHUP (a socket). */
static int reader_gone(void)
{
    struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

static int l_stdout_status(lua_State *L)
{
    errno = 0;
    int failed = fflush(stdout) != 0;
    int e = failed ? errno : 0;
    if (!failed && !ferror(stdout)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    clearerr(stdout); /* said once */
    if (!e && reader_gone()) e = EPIPE;
    lua_pushnil(L);
    lua_pushstring(L, e ? strerror(e) : "an earlier write to it failed");
    lua_pushinteger(L, e);
    return 3;
}

void qr_lua_open_process(lua_State *L)
{
    lua_pushcfunction(L, l_stdout_status);
    lua_setfield(L, -2, "stdout_status");
    lua_pushcfunction(L, l_fork);
    lua_setfield(L, -2, "fork");
    lua_pushcfunction(L, l_getpid);
    lua_setfield(L, -2, "getpid");
    lua_pushcfunction(L, l_pid_namespace);
    lua_setfield(L, -2, "pid_namespace");
    lua_pushcfunction(L, l_wait_children);
    lua_setfield(L, -2, "wait_children");
}
