/* pool.c - see pool.h.
 *
 * State lives in two stacks under one mutex: idle connections (most recently
 * used on top, so the ones below age out and get closed) and busy ones. A
 * slot count `total` includes connections being opened, so the pool never
 * exceeds max_size even while connects run outside the lock.
 */
#include "pool.h"
#include "tx.h"

#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MS 1000000ull

struct qr_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed; /* a connection came back or a slot opened */
    qr_pool_options opt;
    char *conninfo;
    qr_stmts *stmts;
    qr_hist *wait_hist;

    qr_conn **idle, **busy;
    int nidle, nbusy, total, waiting;
    int orphaned; /* qr_pool_free was called while connections were held */
    unsigned rand_state;

    uint64_t created, acquired, timeouts;
    uint64_t closed_idle, closed_lifetime, closed_broken, closed_busy;
    uint64_t wait_ns;
};

/* Time from then to now. Callers read the clock before taking the lock, so
 * another thread may have stamped a later time meanwhile: that is 0, not a
 * wrapped-around eternity. */
static uint64_t since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

static int or_default(int v, int d)
{
    return v == 0 ? d : v;
}

qr_pool *qr_pool_new(const qr_pool_options *opts)
{
    qr_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    qr_pool_options o = opts ? *opts : (qr_pool_options){0};
    o.max_size = or_default(o.max_size, 20);
    if (o.max_size < 1) o.max_size = 1;
    o.idle_timeout_ms = or_default(o.idle_timeout_ms, 30000);
    o.connect_timeout_ms = or_default(o.connect_timeout_ms, 15000);
    o.max_lifetime_ms = or_default(o.max_lifetime_ms, 1800000);
    o.validate_after_ms = or_default(o.validate_after_ms, 1000);
    o.hold_warn_ms = or_default(o.hold_warn_ms, 60000);
    p->opt = o;
    p->conninfo = o.conninfo ? strdup(o.conninfo) : NULL;
    p->opt.conninfo = p->conninfo;
    p->idle = calloc((size_t)o.max_size, sizeof *p->idle);
    p->busy = calloc((size_t)o.max_size, sizeof *p->busy);
    p->stmts = qr_stmts_new(o.timings);
    p->wait_hist = o.timings ? qr_timings_get(o.timings, "pool.wait") : NULL;
    if ((o.conninfo && !p->conninfo) || !p->idle || !p->busy || !p->stmts ||
        (o.timings && !p->wait_hist)) {
        free(p->conninfo);
        free(p->idle);
        free(p->busy);
        qr_stmts_free(p->stmts);
        free(p);
        return NULL;
    }
    p->rand_state = (unsigned)qr_now_ns();
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    return p;
}

static void destroy(qr_pool *p)
{
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    qr_stmts_free(p->stmts);
    free(p->idle);
    free(p->busy);
    free(p->conninfo);
    free(p);
}

/* Close a list of connections taken out of the pool (outside the lock). */
static void close_list(qr_conn *c)
{
    while (c) {
        qr_conn *next = qr_conn_meta_of(c)->next;
        qr_conn_close(c);
        c = next;
    }
}

/* With the lock held: take idle connections past their idle timeout or
 * lifetime out of the pool; returns them as a list to close. */
static qr_conn *reap_locked(qr_pool *p, uint64_t now)
{
    qr_conn *out = NULL;
    int keep = 0;
    for (int i = 0; i < p->nidle; i++) {
        qr_conn *c = p->idle[i];
        qr_conn_meta *m = qr_conn_meta_of(c);
        int idle_out = p->opt.idle_timeout_ms > 0 &&
                       since(now, m->last_used_ns) >= (uint64_t)p->opt.idle_timeout_ms * MS;
        int life_out = m->expires_ns && now >= m->expires_ns;
        if (idle_out || life_out) {
            if (idle_out) p->closed_idle++;
            else p->closed_lifetime++;
            p->total--;
            m->next = out;
            out = c;
        } else {
            p->idle[keep++] = c;
        }
    }
    if (keep != p->nidle) pthread_cond_broadcast(&p->freed);
    p->nidle = keep;
    return out;
}

/* With the lock held: one warning per hold that outlasted hold_warn_ms. */
static void warn_holds_locked(qr_pool *p, uint64_t now)
{
    if (p->opt.hold_warn_ms < 0) return;
    for (int i = 0; i < p->nbusy; i++) {
        qr_conn_meta *m = qr_conn_meta_of(p->busy[i]);
        uint64_t held = since(now, m->acquired_ns);
        if (!m->hold_warned && held >= (uint64_t)p->opt.hold_warn_ms * MS) {
            m->hold_warned = 1;
            qr_log(QR_LOG_WARN, "pool", "connection held for %llu ms (over %d ms), taken at %s",
                   (unsigned long long)(held / MS), p->opt.hold_warn_ms,
                   m->who[0] ? m->who : "an unknown place");
        }
    }
}

/* With the lock held: c becomes busy, stamped so hold warnings (read by
 * other threads under this lock) see when and where it was taken. */
static void take_locked(qr_pool *p, qr_conn *c, const char *who, uint64_t now)
{
    qr_conn_meta *m = qr_conn_meta_of(c);
    m->acquired_ns = now;
    m->hold_warned = 0;
    snprintf(m->who, sizeof m->who, "%s", who ? who : "");
    p->busy[p->nbusy++] = c;
}

static void remove_busy_locked(qr_pool *p, qr_conn *c)
{
    for (int i = 0; i < p->nbusy; i++) {
        if (p->busy[i] == c) {
            p->busy[i] = p->busy[--p->nbusy];
            return;
        }
    }
}

static void format_exhausted(qr_pool *p, qr_error *err)
{
    qr_error_set(err, "timeout",
                 "no database connection within %d ms: pool size %d of %d, %d in use, %d idle, "
                 "%d waiting",
                 p->opt.connect_timeout_ms, p->total, p->opt.max_size, p->nbusy, p->nidle,
                 p->waiting);
    err->retryable = 1;
}

static int acquire(qr_pool *p, const char *who, qr_conn **out, qr_error *err, int wait)
{
    uint64_t start = qr_now_ns();
    uint64_t deadline = start + (uint64_t)p->opt.connect_timeout_ms * MS;
    qr_conn *c = NULL;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        uint64_t now = qr_now_ns();
        qr_conn *dead = reap_locked(p, now);
        warn_holds_locked(p, now);
        if (p->nidle > 0) {
            c = p->idle[--p->nidle];
            take_locked(p, c, who, now);
            pthread_mutex_unlock(&p->lock);
            close_list(dead);
            qr_conn_meta *m = qr_conn_meta_of(c);
            if (since(now, m->last_used_ns) < (uint64_t)p->opt.validate_after_ms * MS ||
                qr_conn_ping(c) == 0)
                break;
            /* Dead while idle: drop it and try again, within the same deadline. */
            pthread_mutex_lock(&p->lock);
            remove_busy_locked(p, c);
            p->total--;
            p->closed_broken++;
            pthread_mutex_unlock(&p->lock);
            qr_conn_close(c);
            c = NULL;
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->total < p->opt.max_size) {
            p->total++; /* reserve the slot, connect outside the lock */
            pthread_mutex_unlock(&p->lock);
            close_list(dead);
            c = qr_conn_open(p->conninfo, deadline, p->opt.no_prepare ? QR_CONN_POOLER : 0, err);
            pthread_mutex_lock(&p->lock);
            if (!c) {
                p->total--;
                pthread_cond_signal(&p->freed);
                pthread_mutex_unlock(&p->lock);
                return -1;
            }
            qr_conn_meta *m = qr_conn_meta_of(c);
            m->created_ns = m->last_used_ns = qr_now_ns();
            if (p->opt.max_lifetime_ms > 0) {
                uint64_t life = (uint64_t)p->opt.max_lifetime_ms * MS;
                uint64_t jitter = life / 10 ? (uint64_t)rand_r(&p->rand_state) % (life / 10) : 0;
                m->expires_ns = m->created_ns + life - jitter;
            }
            p->created++;
            take_locked(p, c, who, m->created_ns);
            pthread_mutex_unlock(&p->lock);
            break;
        }
        if (dead) { /* close outside the lock, then look again */
            pthread_mutex_unlock(&p->lock);
            close_list(dead);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (!wait) { /* every connection is taken: the caller waits its own way */
            pthread_mutex_unlock(&p->lock);
            return 1;
        }
        if (now >= deadline) {
            p->timeouts++;
            format_exhausted(p, err);
            pthread_mutex_unlock(&p->lock);
            return -1;
        }
        struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
        p->waiting++;
        pthread_cond_timedwait(&p->freed, &p->lock, &ts);
        p->waiting--;
    }

    uint64_t now = qr_now_ns();
    if (p->wait_hist) qr_hist_record(p->wait_hist, now - start);
    pthread_mutex_lock(&p->lock);
    p->acquired++;
    p->wait_ns += now - start;
    pthread_mutex_unlock(&p->lock);
    *out = c;
    return 0;
}

void qr_pool_expect_long_hold(qr_pool *p, qr_conn *c)
{
    if (!c) return;
    pthread_mutex_lock(&p->lock);
    qr_conn_meta_of(c)->hold_warned = 1; /* as if warned: warn_holds_locked skips it */
    pthread_mutex_unlock(&p->lock);
}

int qr_pool_acquire(qr_pool *p, const char *who, qr_conn **out, qr_error *err)
{
    return acquire(p, who, out, err, 1);
}

int qr_pool_try_acquire(qr_pool *p, const char *who, qr_conn **out, qr_error *err)
{
    return acquire(p, who, out, err, 0);
}

void qr_pool_release(qr_pool *p, qr_conn *c)
{
    if (!c) return;
    qr_conn_restrict(c, 0); /* a restriction lasts while one holder has it */
    qr_conn_cap_result(c, 0);
    enum { KEEP, BROKEN, BUSY, LIFETIME } fate = KEEP;
    if (qr_conn_broken(c)) {
        fate = BROKEN;
    } else {
        switch (PQtransactionStatus(qr_conn_pg(c))) {
        case PQTRANS_IDLE:
            break;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR: {
            qr_error err;
            if (qr_conn_command(c, "ROLLBACK", &err) != 0) fate = BROKEN;
            break;
        }
        case PQTRANS_ACTIVE:
            fate = BUSY; /* a query still running: closing is the only safe way */
            break;
        default:
            fate = BROKEN;
        }
    }
    qr_tx_forget(c);
    uint64_t now = qr_now_ns();
    qr_conn_meta *m = qr_conn_meta_of(c);
    if (fate == KEEP && m->expires_ns && now >= m->expires_ns) fate = LIFETIME;

    pthread_mutex_lock(&p->lock);
    warn_holds_locked(p, now);
    remove_busy_locked(p, c);
    if (fate == KEEP && !p->orphaned) {
        m->last_used_ns = now;
        p->idle[p->nidle++] = c;
        c = NULL;
    } else {
        p->total--;
        if (fate == BROKEN) p->closed_broken++;
        else if (fate == BUSY) p->closed_busy++;
        else p->closed_lifetime++;
    }
    qr_conn *dead = reap_locked(p, now);
    pthread_cond_signal(&p->freed);
    int last = p->orphaned && p->nbusy == 0;
    pthread_mutex_unlock(&p->lock);

    qr_conn_close(c);
    close_list(dead);
    if (last) destroy(p);
}

void qr_pool_free(qr_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    qr_conn *dead = NULL;
    for (int i = 0; i < p->nidle; i++) {
        qr_conn_meta_of(p->idle[i])->next = dead;
        dead = p->idle[i];
        p->total--;
    }
    p->nidle = 0;
    int held = p->nbusy > 0;
    p->orphaned = 1;
    pthread_mutex_unlock(&p->lock);
    close_list(dead);
    if (!held) destroy(p);
}

qr_stmt *qr_pool_stmt(qr_pool *p, const char *sql, size_t len)
{
    return qr_stmts_get(p->stmts, sql, len);
}

void qr_pool_maintain(qr_pool *p)
{
    pthread_mutex_lock(&p->lock);
    uint64_t now = qr_now_ns();
    qr_conn *dead = reap_locked(p, now);
    warn_holds_locked(p, now);
    pthread_mutex_unlock(&p->lock);
    close_list(dead);
}

void qr_pool_stats_get(qr_pool *p, qr_pool_stats *out)
{
    qr_pool_maintain(p);
    pthread_mutex_lock(&p->lock);
    *out = (qr_pool_stats){
        .max_size = p->opt.max_size,
        .total = p->total,
        .idle = p->nidle,
        .in_use = p->nbusy,
        .waiting = p->waiting,
        .created = p->created,
        .acquired = p->acquired,
        .timeouts = p->timeouts,
        .closed_idle = p->closed_idle,
        .closed_lifetime = p->closed_lifetime,
        .closed_broken = p->closed_broken,
        .closed_busy = p->closed_busy,
        .wait_ms = (double)p->wait_ns / 1e6,
    };
    pthread_mutex_unlock(&p->lock);
}
