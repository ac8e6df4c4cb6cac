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
 *   core.shared_slots(n, bytes) -> slots: n buffers of up to `bytes` each in
 *       memory the processes forked after it share. slots:put(i, s) -> true,
 *       or nil, "too big"; slots:get(i) -> the last string put in slot i,
 *       or nil (none yet, or being written past a few retries). Each slot
 *       has one writer (the worker of that number) and is read by any:
 *       what one worker's /metrics needs of the others.
 *   core.fsync(file)            -> true, or nil, message, errno: an open Lua file's
 *       data on the disk (fsync), before a rename makes it the file a
 *       success message names: a machine that crashes after "wrote X"
 *       leaves X whole, not empty.
 *   core.fsync_dir(path)        -> true, or nil, message, errno: the directory's
 *       entries (a rename into it) on the disk.
 *   core.stdout_status()        -> true, or nil, message, errno: whether all
 *       written to standard output reached it (flushed now). A report sent to
 *       a full disk must not end in exit 0; print() and io.write keep no
 *       error of their own beyond stdio's sticky flag, which only C sees.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "lua_quarry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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

/* ---- slots shared by forked workers ----
 *
 * A sequence lock per slot: the writer makes the sequence odd, copies,
 * then makes it even; a reader copies and keeps the copy only if the
 * sequence was even and unchanged around it. A reader never blocks a
 * writer (a worker answering requests waits for no other), and a worker
 * killed mid-write leaves an odd sequence its replacement simply carries on
 * from. In memory rather than files: nothing to clean up after a crash. */

#define SLOTS_MT "quarry.slots"

typedef struct {
    _Atomic uint64_t seq;
    _Atomic uint64_t len;
} slot_head;

typedef struct {
    unsigned char *base; /* n slots of stride bytes, MAP_SHARED */
    size_t n, stride, cap;
} slots;

static slots *check_slots(lua_State *L)
{
    slots *s = luaL_checkudata(L, 1, SLOTS_MT);
    if (!s->base) luaL_error(L, "the shared slots are closed");
    return s;
}

static slot_head *slot_at(lua_State *L, slots *s)
{
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && (size_t)i <= s->n, 2, "no such slot");
    return (slot_head *)(s->base + (size_t)(i - 1) * s->stride);
}

static int l_shared_slots(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1), bytes = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "from 1 to 1024 slots");
    luaL_argcheck(L, bytes >= 1 && bytes <= (64 << 20), 2, "from 1 byte to 64 MiB a slot");
    slots *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, SLOTS_MT);
    size_t stride = (sizeof(slot_head) + (size_t)bytes + 63) & ~(size_t)63;
    /* untouched pages of an anonymous mapping cost no memory */
    void *m = mmap(NULL, stride * (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return luaL_error(L, "cannot map shared memory: %s", strerror(errno));
    s->base = m;
    s->n = (size_t)n;
    s->stride = stride;
    s->cap = (size_t)bytes;
    return 1;
}

static int l_slots_put(lua_State *L)
{
    slots *s = check_slots(L);
    slot_head *h = slot_at(L, s);
    size_t len;
    const char *v = luaL_checklstring(L, 3, &len);
    if (len > s->cap) {
        luaL_pushfail(L);
        lua_pushliteral(L, "too big");
        return 2;
    }
    uint64_t seq = atomic_load_explicit(&h->seq, memory_order_relaxed);
    if (seq & 1) seq++; /* a writer before this one died mid-write */
    atomic_store_explicit(&h->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy((unsigned char *)(h + 1), v, len);
    atomic_store_explicit(&h->len, len, memory_order_relaxed);
    atomic_store_explicit(&h->seq, seq + 2, memory_order_release);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_slots_get(lua_State *L)
{
    slots *s = check_slots(L);
    slot_head *h = slot_at(L, s);
    luaL_Buffer b;
    for (int tries = 0; tries < 100; tries++) {
        uint64_t before = atomic_load_explicit(&h->seq, memory_order_acquire);
        if (before == 0) break; /* never written */
        if (before & 1) continue;
        size_t len = atomic_load_explicit(&h->len, memory_order_relaxed);
        if (len > s->cap) continue;
        char *p = luaL_buffinitsize(L, &b, len);
        memcpy(p, (unsigned char *)(h + 1), len);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&h->seq, memory_order_relaxed) != before) {
            luaL_pushresultsize(&b, 0);
            lua_pop(L, 1);
            continue;
        }
        luaL_pushresultsize(&b, len);
        return 1;
    }
    luaL_pushfail(L);
    return 1;
}

static int l_slots_gc(lua_State *L)
{
    slots *s = luaL_checkudata(L, 1, SLOTS_MT);
    if (s->base) munmap(s->base, s->stride * s->n);
    s->base = NULL;
    return 0;
}

/* Both answer as io's functions do (luaL_fileresult): true, or fail, the
 * reason and errno. */
static int l_fsync(lua_State *L)
{
    luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
    if (!p->f || !p->closef) return luaL_error(L, "attempt to use a closed file");
    return luaL_fileresult(L, fflush(p->f) == 0 && fsync(fileno(p->f)) == 0, NULL);
}

static int l_fsync_dir(lua_State *L)
{
    int fd = open(luaL_checkstring(L, 1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ok = fd >= 0 && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0) close(fd);
    errno = e; /* the open's or the fsync's, not the close's */
    return luaL_fileresult(L, ok, NULL);
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
    lua_pushcfunction(L, l_shared_slots);
    lua_setfield(L, -2, "shared_slots");
    lua_pushcfunction(L, l_fsync);
    lua_setfield(L, -2, "fsync");
    lua_pushcfunction(L, l_fsync_dir);
    lua_setfield(L, -2, "fsync_dir");
    static const luaL_Reg slot_methods[] = {{"put", l_slots_put}, {"get", l_slots_get}, {NULL, NULL}};
    luaL_newmetatable(L, SLOTS_MT);
    luaL_newlib(L, slot_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_slots_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
