/* pool.h - a bounded, thread-safe pool of PostgreSQL connections.
 *
 * Connections open lazily, up to max_size. qr_pool_acquire never waits longer
 * than connect_timeout_ms in all (waiting for a free connection plus opening
 * one); when it gives up, the error states the pool's size, in-use, idle and
 * waiting counts. A connection idle for validate_after_ms or more is proven
 * with a round trip before it is handed out; a dead one (server restart,
 * pg_terminate_backend, cut network) is discarded and replaced, so callers
 * whose connections were idle never see the restart.
 *
 * qr_pool_release takes back any connection: one still inside a transaction
 * is rolled back, one with a query still running or a broken socket is
 * closed. Idle connections past idle_timeout_ms and connections past their
 * lifetime (max_lifetime_ms less up to 10% at random, so a pool's
 * connections do not all expire together) are closed at the next pool call.
 * A connection held longer than hold_warn_ms is reported once, as a warning
 * naming the `who` text given to acquire.
 *
 * All functions are thread-safe. Network I/O (connect, validate, rollback,
 * close) happens outside the pool's lock.
 */
#ifndef QR_POOL_H
#define QR_POOL_H

#include <stdint.h>

#include "pg.h"
#include "timing.h"

typedef struct qr_pool qr_pool;

/* Valid when zeroed: every 0 means the default shown. */
typedef struct qr_pool_options {
    const char *conninfo;   /* URL or key=value; NULL: libpq's PG* environment */
    int max_size;           /* 20 (DB_POOL_MAX) */
    int idle_timeout_ms;    /* 30000 (DB_IDLE_TIMEOUT); < 0: never */
    int connect_timeout_ms; /* 15000 (DB_CONNECTION_TIMEOUT) */
    int max_lifetime_ms;    /* 1800000; < 0: forever */
    int validate_after_ms;  /* 1000 */
    int hold_warn_ms;       /* 60000; < 0: never warn */
    int no_prepare;         /* DB_PREPARE=off: for a transaction pooler (see qr_conn_open) */
    qr_timings *timings;    /* borrowed, optional: statement timings and "pool.wait" */
} qr_pool_options;

typedef struct qr_pool_stats {
    int max_size, total, idle, in_use, waiting;
    uint64_t created, acquired, timeouts;
    uint64_t closed_idle, closed_lifetime, closed_broken, closed_busy;
    double wait_ms; /* total time callers spent in acquire */
} qr_pool_stats;

/* Copies the options (conninfo too); opens nothing. NULL when out of memory. */
qr_pool *qr_pool_new(const qr_pool_options *opts);

/* Closes idle connections now. Connections still held stay valid: the pool
 * is freed when the last of them is released. */
void qr_pool_free(qr_pool *p);

/* 0 and *out set, or -1 with err set (code "timeout" or "connection"). who
 * (may be NULL) names the taker in hold warnings; it is copied. */
int qr_pool_acquire(qr_pool *p, const char *who, qr_conn **out, qr_error *err);
/* The same without waiting for a connection to be released: 1 (nothing
 * taken, no error) when every one is in use. For an event loop, which waits
 * by running other work. */
int qr_pool_try_acquire(qr_pool *p, const char *who, qr_conn **out, qr_error *err);
void qr_pool_release(qr_pool *p, qr_conn *c);

/* The current hold of c (taken from p) is long on purpose -- a bulk load,
 * a partition copy -- so it gets no hold warning; the next hold does. */
void qr_pool_expect_long_hold(qr_pool *p, qr_conn *c);

/* The pool-wide prepared statement for sql (see qr_stmts_get). */
qr_stmt *qr_pool_stmt(qr_pool *p, const char *sql, size_t len);

void qr_pool_stats_get(qr_pool *p, qr_pool_stats *out);

/* Close what is past its idle timeout or lifetime, and warn of long holds.
 * Every other pool call does this too; a long-lived caller may call it. */
void qr_pool_maintain(qr_pool *p);

#endif
