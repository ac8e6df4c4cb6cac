/* cache.h - a Redis connection that fails open.
 *
 * The cache is the one soft dependency: when Redis is down, slow or
 * restarting, commands fail at once with code "connection" instead of
 * waiting, so callers compute instead of caching. After a failure the
 * connection is retried no sooner than a backoff (100 ms doubling to 5 s);
 * each outage logs one warning, and one info line when Redis is back.
 * Connect and command timeouts are short (250 ms) for the same reason.
 *
 * qr_cache_new calls qr_survive_sigpipe: SIGPIPE at its default would kill
 * the process when Redis closes a socket we write to.
 *
 * Commands are binary-safe (argv with lengths). A qr_cache is used by one
 * thread at a time, like the hiredis context inside it. Replies belong to
 * the caller (freeReplyObject). Nothing here prints except through log.h.
 */
#ifndef QR_CACHE_H
#define QR_CACHE_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct qr_cache qr_cache;

/* Valid when zeroed: every 0 means the default shown. */
typedef struct qr_cache_options {
    const char *url;        /* redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N] */
    int connect_timeout_ms; /* 250 */
    int command_timeout_ms; /* 250 */
    int backoff_min_ms;     /* 100 */
    int backoff_max_ms;     /* 5000 */
} qr_cache_options;

/* Where a URL points; strings point into `buf`. */
typedef struct qr_redis_addr {
    char buf[1024];
    const char *host, *path, *user, *password;
    int port, db;
} qr_redis_addr;

/* 0, or -1 with err (code "usage") when the URL is malformed. */
int qr_redis_parse_url(const char *url, qr_redis_addr *out, qr_error *err);

/* Parses the URL; connects on first use. NULL with err on a bad URL. */
qr_cache *qr_cache_new(const qr_cache_options *opts, qr_error *err);

/* SIGPIPE, if at its default or ignored, gets a handler that does nothing: a
 * write to a closed socket or pipe fails with EPIPE instead of killing the
 * process, and programs it starts get the default back (exec resets a caught
 * signal but keeps an ignored one). */
void qr_survive_sigpipe(void);
void qr_cache_free(qr_cache *c);

/* One command. A reply (any type, REDIS_REPLY_ERROR included) or NULL with
 * err (code "connection") when Redis cannot be reached now. */
redisReply *qr_cache_command(qr_cache *c, int argc, const char **argv, const size_t *lens,
                             qr_error *err);

/* n commands in one round trip; replies[i] set for each, or -1 with err and
 * every replies[i] NULL. */
int qr_cache_pipeline(qr_cache *c, int n, const int *argcs, const char *const *const *argvs,
                      const size_t *const *lens, redisReply **replies, qr_error *err);

/* ---- without blocking, for coroutines on an event loop ----
 * A second connection (opened on first use, without waiting) carries the
 * commands of every task of the process: each send appends to it and gets
 * a ticket; Redis answers in order, so replies are handed to tickets in the
 * order they were sent, whichever task reads them off the socket. A ticket
 * whose task went away keeps its place and its replies are dropped. Each
 * ticket has a deadline (command timeout, plus the connect timeout on a new
 * connection): one that passes, like any I/O error, ends the connection and
 * fails every ticket in flight with code "connection" and starts an outage,
 * as in the blocking calls. hiredis's non-blocking context does the
 * protocol; its async API is not used because the 0.14 one Debian ships
 * has no timeouts and would run callbacks outside the task that waits. */

/* n commands queued; *ticket is theirs. -1 with err when Redis is in an
 * outage (no new attempt before the backoff) or cannot be connected. */
int qr_cache_async_send(qr_cache *c, int n, const int *argcs, const char *const *const *argvs,
                        const size_t *const *lens, uint64_t *ticket, qr_error *err);

/* Makes progress without blocking. 1: the ticket is answered, its n replies
 * are in replies[] (the caller frees them) and the ticket is gone. 0: wait
 * until *fd is readable (writable if *want_write) or *wait_ms pass, then
 * call again. -1 with err: the ticket failed and is gone. */
int qr_cache_async_poll(qr_cache *c, uint64_t ticket, redisReply **replies, int *fd, int *want_write,
                        int *wait_ms, qr_error *err);

/* The caller no longer wants the ticket's replies (its task was stopped). */
void qr_cache_async_abandon(qr_cache *c, uint64_t ticket);

typedef struct qr_cache_stats {
    int up;              /* the last attempt succeeded */
    uint64_t errors;     /* commands that failed for want of Redis */
    uint64_t outages;    /* times Redis went away */
    uint64_t connects;   /* successful connections */
} qr_cache_stats;

void qr_cache_stats_get(qr_cache *c, qr_cache_stats *out);

/* "host:port" or the socket path, for messages (no password). */
const char *qr_cache_where(qr_cache *c);

#endif
