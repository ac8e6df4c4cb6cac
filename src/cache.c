/* cache.c - see cache.h. */
#include "cache.h"

#include "log.h"
#include "timing.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MS 1000000ull

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
};

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
 * default disposition is changed; a handler the program set stays. */
static void ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        struct sigaction ign;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &ign, NULL);
    }
}

qr_cache *qr_cache_new(const qr_cache_options *opts, qr_error *err)
{
    ignore_sigpipe();
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

void qr_cache_free(qr_cache *c)
{
    if (!c) return;
    if (c->ctx) redisFree(c->ctx);
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

/* Enter (or stay in) an outage: no new attempt before the backoff. */
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
    if (c->down) qr_log(QR_LOG_INFO, "cache", "Redis at %s is back: caching again", c->where);
    c->down = 0;
    c->backoff_ms = c->opt.backoff_min_ms;
    c->stats.up = 1;
    c->stats.connects++;
    return 0;
}

/* A live connection, or -1 with err; never waits out a backoff. */
static int ready(qr_cache *c, qr_error *err)
{
    if (c->ctx) return 0;
    if (c->tried && qr_now_ns() < c->retry_at_ns) {
        c->stats.errors++;
        qr_error_set(err, "connection", "Redis at %s unavailable (retrying later)", c->where);
        err->retryable = 1;
        return -1;
    }
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

