/* cache.c - see cache.h. */
#include "cache.h"

#include "log.h"
#include "timing.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#define MS 1000000ull

/* A ticket of the non-blocking connection: n replies expected, in order. */
typedef struct ticket {
    struct ticket *next;
    uint64_t id;
    int n, got;
    int setup;     /* AUTH or SELECT of a new connection: not a caller's */
    int abandoned; /* its caller went away: replies are dropped */
    int state;     /* PENDING, DONE, FAILED */
    uint64_t deadline_ns;
    qr_error err;  /* FAILED */
    redisReply **r;
} ticket;

enum { PENDING, DONE, FAILED };

struct qr_cache {
    qr_cache_options opt;
    qr_redis_addr addr;
    char where[300];
    redisContext *ctx;
    uint64_t retry_at_ns; /* no connection attempt before this */
    int backoff_ms;
    int down;   /* in an outage: warned already */
    int tried;  /* at least one connection attempt */
    qr_cache_stats stats;
    redisContext *actx; /* the non-blocking connection */
    int connecting;     /* actx's TCP connect not yet known to have completed */
    ticket *head, *tail;
    uint64_t next_ticket;
};

static void fail_tickets(qr_cache *c, const qr_error *err);

static int or_default(int v, int d)
{
    return v > 0 ? v : d;
}

/* Decode %XX escapes in place (passwords may hold reserved characters). */
static void percent_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '%' && s[1] && s[2]) {
            char hex[3] = {s[1], s[2], 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end == '\0') {
                *o++ = (char)v;
                s += 2;
                continue;
            }
        }
        *o++ = *s;
    }
    *o = '\0';
}

static int bad_url(qr_error *err, const char *why)
{
    qr_error_set(err, "usage",
                 "REDIS_URL %s: expected redis://[:password@]host[:port][/db] or unix:///path", why);
    return -1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int qr_redis_parse_url(const char *url, qr_redis_addr *a, qr_error *err)
{
    memset(a, 0, sizeof *a);
    a->port = 6379;
    if (!url || !*url) return bad_url(err, "is empty");
    if (strlen(url) >= sizeof a->buf) return bad_url(err, "is too long");
    snprintf(a->buf, sizeof a->buf, "%s", url);
    char *s = a->buf;
    if (strncmp(s, "unix://", 7) == 0) {
        char *path = s + 7;
        if (*path != '/') return bad_url(err, "needs an absolute socket path");
        char *q = strchr(path, '?');
        if (q) {
            *q++ = '\0';
            if (strncmp(q, "db=", 3) != 0 || parse_int(q + 3, 0, 1000000, &a->db) != 0)
                return bad_url(err, "has a bad ?db= number");
        }
        a->path = path;
        return 0;
    }
    if (strncmp(s, "redis://", 8) != 0) return bad_url(err, "has an unknown scheme");
    char *rest = s + 8;
    char *query = strchr(rest, '?'); /* redis://host:port?db=N, as other clients take it */
    if (query) {
        *query++ = '\0';
        if (strncmp(query, "db=", 3) != 0 || parse_int(query + 3, 0, 1000000, &a->db) != 0)
            return bad_url(err, "has a bad ?db= number");
    }
    char *at = strrchr(rest, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(rest, ':');
        if (colon) {
            *colon = '\0';
            a->password = colon + 1;
        } else {
            a->password = rest; /* redis://password@host */
            rest = at;
        }
        if (colon && *rest) a->user = rest;
        rest = at + 1;
    }
    char *slash = strchr(rest, '/');
    if (slash) {
        *slash = '\0';
        if (slash[1] && parse_int(slash + 1, 0, 1000000, &a->db) != 0)
            return bad_url(err, "has a bad database number");
    }
    char *colon = strrchr(rest, ':');
    if (colon && !strchr(rest, ']')) {
        *colon = '\0';
        if (parse_int(colon + 1, 1, 65535, &a->port) != 0) return bad_url(err, "has a bad port");
    }
    if (!*rest) return bad_url(err, "has no host");
    a->host = rest;
    if (a->password) percent_decode((char *)a->password);
    if (a->user) percent_decode((char *)a->user);
    return 0;
}

/* Writing to a socket Redis has closed raises SIGPIPE, whose default action
 * kills the process: a report must not die because Redis restarted. Only a
 * default disposition is changed; a handler the program set stays. A handler
 * that does nothing, not SIG_IGN: the write still fails with EPIPE, and a
 * program started from here (exec resets a caught signal, not an ignored
 * one) keeps SIGPIPE's default, so `yes | head` in it ends as it should. */
static void sigpipe_noop(int sig)
{
    (void)sig;
}

void qr_survive_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN)) {
        struct sigaction noop;
        memset(&noop, 0, sizeof noop);
        noop.sa_handler = sigpipe_noop;
        noop.sa_flags = SA_RESTART;
        sigemptyset(&noop.sa_mask);
        sigaction(SIGPIPE, &noop, NULL);
    }
}

qr_cache *qr_cache_new(const qr_cache_options *opts, qr_error *err)
{
    qr_survive_sigpipe();
    qr_cache *c = calloc(1, sizeof *c);
    if (!c) {
        qr_error_set(err, "usage", "out of memory");
        return NULL;
    }
    qr_cache_options o = opts ? *opts : (qr_cache_options){0};
    o.connect_timeout_ms = or_default(o.connect_timeout_ms, 250);
    o.command_timeout_ms = or_default(o.command_timeout_ms, 250);
    o.backoff_min_ms = or_default(o.backoff_min_ms, 100);
    o.backoff_max_ms = or_default(o.backoff_max_ms, 5000);
    if (qr_redis_parse_url(o.url, &c->addr, err) != 0) {
        free(c);
        return NULL;
    }
    o.url = NULL; /* parsed into addr; the caller's string is not kept */
    c->opt = o;
    c->backoff_ms = o.backoff_min_ms;
    if (c->addr.path) snprintf(c->where, sizeof c->where, "%s", c->addr.path);
    else snprintf(c->where, sizeof c->where, "%s:%d", c->addr.host, c->addr.port);
    return c;
}

static void ticket_free(ticket *t)
{
    if (t->r)
        for (int i = 0; i < t->got; i++)
            if (t->r[i]) freeReplyObject(t->r[i]);
    free(t->r);
    free(t);
}

void qr_cache_free(qr_cache *c)
{
    if (!c) return;
    if (c->ctx) redisFree(c->ctx);
    if (c->actx) redisFree(c->actx);
    while (c->head) {
        ticket *t = c->head;
        c->head = t->next;
        ticket_free(t);
    }
    free(c);
}

const char *qr_cache_where(qr_cache *c)
{
    return c->where;
}

void qr_cache_stats_get(qr_cache *c, qr_cache_stats *out)
{
    *out = c->stats;
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

/* Enter (or stay in) an outage: no new attempt before the backoff. Both
 * connections go: whatever cut one (a restart, a pause) holds the other. */
static void went_down(qr_cache *c, const char *why, qr_error *err)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    c->stats.up = 0;
    c->stats.errors++;
    if (!c->down) {
        c->down = 1;
        c->stats.outages++;
        qr_log(QR_LOG_WARN, "cache",
               "Redis at %s unreachable (%s): computing without the cache, retrying with backoff",
               c->where, why);
    }
    c->retry_at_ns = qr_now_ns() + (uint64_t)c->backoff_ms * MS;
    c->backoff_ms = c->backoff_ms * 2 > c->opt.backoff_max_ms ? c->opt.backoff_max_ms
                                                              : c->backoff_ms * 2;
    qr_error_set(err, "connection", "Redis at %s unreachable: %s", c->where, why);
    err->retryable = 1;
    if (c->actx) fail_tickets(c, err);
}

static void came_back(qr_cache *c)
{
    if (c->down) qr_log(QR_LOG_INFO, "cache", "Redis at %s is back: caching again", c->where);
    c->down = 0;
    c->backoff_ms = c->opt.backoff_min_ms;
    c->stats.up = 1;
}

static int simple_ok(redisContext *ctx, int argc, const char **argv, char *why, size_t cap)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    snprintf(why, cap, "%s", !r ? ctx->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "");
    if (r) freeReplyObject(r);
    return ok;
}

/* A new, authenticated connection with the database selected, or NULL
 * with the reason in why. */
static redisContext *open_ctx(qr_cache *c, char *why, size_t cap)
{
    struct timeval tv = tv_ms(c->opt.connect_timeout_ms);
    redisContext *ctx = c->addr.path ? redisConnectUnixWithTimeout(c->addr.path, tv)
                                     : redisConnectWithTimeout(c->addr.host, c->addr.port, tv);
    if (!ctx || ctx->err) {
        snprintf(why, cap, "%s", ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv_ms(c->opt.command_timeout_ms));
    if (c->addr.password) {
        const char *auth_user[] = {"AUTH", c->addr.user, c->addr.password};
        const char *auth[] = {"AUTH", c->addr.password};
        int ok = c->addr.user ? simple_ok(ctx, 3, auth_user, why, cap)
                              : simple_ok(ctx, 2, auth, why, cap);
        if (!ok) {
            snprintf(why, cap, "authentication failed");
            redisFree(ctx);
            return NULL;
        }
    }
    if (c->addr.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->addr.db);
        const char *sel[] = {"SELECT", db};
        if (!simple_ok(ctx, 2, sel, why, cap)) {
            redisFree(ctx);
            return NULL;
        }
    }
    return ctx;
}

static int connect_now(qr_cache *c, qr_error *err)
{
    c->tried = 1;
    char why[256];
    c->ctx = open_ctx(c, why, sizeof why);
    if (!c->ctx) {
        went_down(c, why, err);
        return -1;
    }
    came_back(c);
    c->stats.connects++;
    return 0;
}

static int in_backoff(qr_cache *c, qr_error *err)
{
    if (!c->tried || qr_now_ns() >= c->retry_at_ns) return 0;
    c->stats.errors++;
    qr_error_set(err, "connection", "Redis at %s unavailable (retrying later)", c->where);
    err->retryable = 1;
    return 1;
}

/* A live connection, or -1 with err; never waits out a backoff. */
static int ready(qr_cache *c, qr_error *err)
{
    if (c->ctx) return 0;
    if (in_backoff(c, err)) return -1;
    return connect_now(c, err);
}

int qr_cache_pipeline(qr_cache *c, int n, const int *argcs, const char *const *const *argvs,
                      const size_t *const *lens, redisReply **replies, qr_error *err)
{
    for (int i = 0; i < n; i++) replies[i] = NULL;
    /* A connection that worked before may have been cut by a server restart
     * since: then reconnect once, at once, rather than lose this call. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int was_connected = c->ctx != NULL;
        if (ready(c, err) != 0) return -1;
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = redisAppendCommandArgv(c->ctx, argcs[i], (const char **)argvs[i], lens[i]) ==
                 REDIS_OK;
        for (int i = 0; i < n && ok; i++) ok = redisGetReply(c->ctx, (void **)&replies[i]) == REDIS_OK;
        if (ok) return 0;
        for (int i = 0; i < n; i++) {
            if (replies[i]) freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        char why[256];
        snprintf(why, sizeof why, "%s", c->ctx->errstr[0] ? c->ctx->errstr : "I/O error");
        redisFree(c->ctx);
        c->ctx = NULL;
        if (!was_connected || attempt == 1) {
            went_down(c, why, err);
            return -1;
        }
    }
    return -1;
}

redisReply *qr_cache_command(qr_cache *c, int argc, const char **argv, const size_t *lens,
                             qr_error *err)
{
    redisReply *r = NULL;
    const char *const *argvs[] = {argv};
    const size_t *lenss[] = {lens};
    if (qr_cache_pipeline(c, 1, &argc, argvs, lenss, &r, err) != 0) return NULL;
    return r;
}


/* ---- the non-blocking connection ---- */

/* Tickets answered or failed that nobody will poll (set-up, abandoned) go;
 * the tail is found again on the way. */
static void sweep(qr_cache *c)
{
    ticket **pp = &c->head;
    c->tail = NULL;
    while (*pp) {
        ticket *t = *pp;
        if (t->state != PENDING && (t->setup || t->abandoned)) {
            *pp = t->next;
            ticket_free(t);
            continue;
        }
        c->tail = t;
        pp = &t->next;
    }
}

/* Every ticket in flight fails with err; the connection is closed. Tickets
 * stay (FAILED) until their callers poll them, abandoned ones go now. */
static void fail_tickets(qr_cache *c, const qr_error *err)
{
    if (c->actx) {
        redisFree(c->actx);
        c->actx = NULL;
    }
    for (ticket *t = c->head; t; t = t->next)
        if (t->state == PENDING) {
            t->state = FAILED;
            t->err = *err;
        }
    sweep(c);
}

static ticket *enqueue(qr_cache *c, int n, int setup, qr_error *err)
{
    ticket *t = calloc(1, sizeof *t);
    if (t) t->r = calloc((size_t)n, sizeof *t->r);
    if (!t || !t->r) {
        free(t);
        qr_error_set(err, "usage", "out of memory");
        return NULL;
    }
    t->id = ++c->next_ticket;
    t->n = n;
    t->setup = setup;
    uint64_t ms = (uint64_t)c->opt.command_timeout_ms + (c->connecting ? (uint64_t)c->opt.connect_timeout_ms : 0);
    t->deadline_ns = qr_now_ns() + ms * MS;
    if (c->tail) c->tail->next = t;
    else c->head = t;
    c->tail = t;
    return t;
}

/* The I/O failed: an outage, as for the blocking connection. */
static void async_down(qr_cache *c, const char *why)
{
    qr_error e;
    went_down(c, why, &e); /* fails the tickets with e */
}

static int append(qr_cache *c, int argc, const char **argv, const size_t *lens)
{
    return redisAppendCommandArgv(c->actx, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

/* A new non-blocking connection with its AUTH and SELECT queued first. */
static int async_connect(qr_cache *c, qr_error *err)
{
    c->tried = 1;
    redisContext *a = c->addr.path ? redisConnectUnixNonBlock(c->addr.path)
                                   : redisConnectNonBlock(c->addr.host, c->addr.port);
    if (!a || a->err) {
        char why[256];
        snprintf(why, sizeof why, "%s", a ? a->errstr : "out of memory");
        if (a) redisFree(a);
        went_down(c, why, err);
        return -1;
    }
    c->actx = a;
    c->connecting = c->addr.path == NULL; /* a unix socket connects at once or fails */
    char db[16];
    snprintf(db, sizeof db, "%d", c->addr.db);
    const char *auth[] = {"AUTH", c->addr.user ? c->addr.user : c->addr.password, c->addr.password};
    const char *sel[] = {"SELECT", db};
    int ok = 1;
    if (c->addr.password) {
        int argc = c->addr.user ? 3 : 2;
        if (!c->addr.user) auth[1] = c->addr.password;
        ok = enqueue(c, 1, 1, err) && append(c, argc, auth, NULL) == 0;
    }
    if (ok && c->addr.db) ok = enqueue(c, 1, 1, err) && append(c, 2, sel, NULL) == 0;
    if (!ok) {
        async_down(c, "cannot queue the connection's set-up");
        qr_error_set(err, "connection", "Redis at %s unreachable: cannot set up a connection", c->where);
        err->retryable = 1;
        return -1;
    }
    c->stats.connects++;
    return 0;
}

int qr_cache_async_send(qr_cache *c, int n, const int *argcs, const char *const *const *argvs,
                        const size_t *const *lens, uint64_t *id, qr_error *err)
{
    if (!c->actx && (in_backoff(c, err) || async_connect(c, err) != 0)) return -1;
    ticket *t = enqueue(c, n, 0, err);
    if (!t) return -1;
    for (int i = 0; i < n; i++) {
        if (append(c, argcs[i], (const char **)argvs[i], lens[i]) != 0) {
            async_down(c, "out of memory");
            qr_cache_async_abandon(c, t->id);
            qr_error_set(err, "connection", "Redis at %s: cannot queue a command", c->where);
            err->retryable = 1;
            return -1;
        }
    }
    *id = t->id;
    return 0;
}

/* One reply off the reader goes to the oldest ticket still waiting. */
static int dispatch(qr_cache *c, redisReply *r)
{
    ticket *t = c->head;
    while (t && t->state != PENDING) t = t->next;
    if (!t) { /* Redis said more than was asked: nothing after can be trusted */
        freeReplyObject(r);
        async_down(c, "an unexpected reply");
        return -1;
    }
    if (t->setup && r->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof why, "connection set-up refused: %.200s", r->str);
        freeReplyObject(r);
        async_down(c, why);
        return -1;
    }
    t->r[t->got++] = r;
    if (t->got == t->n) t->state = DONE;
    came_back(c);
    return 0;
}

static ticket *find(qr_cache *c, uint64_t id, ticket ***at)
{
    for (ticket **pp = &c->head; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            if (at) *at = pp;
            return *pp;
        }
    return NULL;
}

/* Unlink t (found at *pp) and keep tail right. */
static void unlink_ticket(qr_cache *c, ticket **pp, ticket *t)
{
    *pp = t->next;
    if (c->tail == t) {
        c->tail = NULL;
        for (ticket *x = c->head; x; x = x->next) c->tail = x;
    }
}

/* Move data both ways; -1 when the connection failed (tickets failed). */
static int pump(qr_cache *c)
{
    redisContext *a = c->actx;
    if (c->connecting) {
        struct pollfd p = {.fd = a->fd, .events = POLLOUT};
        if (poll(&p, 1, 0) <= 0) return 0;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
        if (soerr) {
            async_down(c, strerror(soerr));
            return -1;
        }
        c->connecting = 0;
    }
    int done = 0;
    if (sdslen(a->obuf) > 0 && redisBufferWrite(a, &done) != REDIS_OK) {
        async_down(c, a->errstr[0] ? a->errstr : "write failed");
        return -1;
    }
    if (redisBufferRead(a) != REDIS_OK) {
        async_down(c, a->errstr[0] ? a->errstr : "read failed");
        return -1;
    }
    for (;;) {
        void *r = NULL;
        if (redisGetReplyFromReader(a, &r) != REDIS_OK) {
            async_down(c, a->errstr[0] ? a->errstr : "protocol error");
            return -1;
        }
        if (!r) break;
        if (dispatch(c, r) != 0) return -1;
    }
    sweep(c);
    return 0;
}

int qr_cache_async_poll(qr_cache *c, uint64_t id, redisReply **replies, int *fd, int *want_write,
                        int *wait_ms, qr_error *err)
{
    ticket **at;
    ticket *t = find(c, id, &at);
    if (t && t->state == PENDING && c->actx) {
        pump(c);
        t = find(c, id, &at);
    }
    if (!t) {
        qr_error_set(err, "connection", "Redis at %s: the reply was lost", c->where);
        err->retryable = 1;
        return -1;
    }
    if (t->state == PENDING) {
        uint64_t now = qr_now_ns();
        if (now >= t->deadline_ns) {
            async_down(c, "timed out");
            t = find(c, id, &at);
        } else {
            *fd = c->actx->fd;
            *want_write = c->connecting || sdslen(c->actx->obuf) > 0;
            *wait_ms = (int)((t->deadline_ns - now + MS - 1) / MS);
            return 0;
        }
    }
    unlink_ticket(c, at, t);
    if (t->state == FAILED) {
        *err = t->err;
        ticket_free(t);
        return -1;
    }
    for (int i = 0; i < t->n; i++) replies[i] = t->r[i];
    t->got = 0; /* the replies are the caller's now */
    ticket_free(t);
    return 1;
}

void qr_cache_async_abandon(qr_cache *c, uint64_t id)
{
    ticket **at;
    ticket *t = find(c, id, &at);
    if (!t) return;
    if (t->state == PENDING) {
        t->abandoned = 1; /* keeps its place: its replies are still to come */
        return;
    }
    unlink_ticket(c, at, t);
    ticket_free(t);
}
