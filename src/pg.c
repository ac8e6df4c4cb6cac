/* pg.c - see pg.h. */
#include "pg.h"

#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parameter formats are chosen on the stack up to this many parameters;
 * beyond, every parameter goes as text. */
#define STACK_FORMATS 64

/* The statement a connection has sent and not yet fully read. */
struct qr_pending {
    qr_stmt *st;
    const char *sql;
    int n;
    const char *const *values; /* the caller's, alive until the statement is collected */
    const int *lengths;
    int kind, attempt, was_idle, active;
    int command; /* qr_conn_send_command: the connection's own BEGIN/COMMIT, past the restriction */
    PGresult *keep; /* the result to return: the last, or the first error */
    /* under a result cap (qr_conn_cap_result): rows come one at a time and
     * are gathered here, counted as they come */
    int over;
    PGresult *rows;
    size_t bytes;
};

struct qr_conn {
    PGconn *pg;
    PGcancel *cancel; /* for qr_conn_cancel_running, from a signal handler */
    unsigned char *prepared; /* bitmap by qr_stmt.id */
    size_t prepared_bytes;
    int broken;
    int tx_depth;
    int restricted;  /* see qr_conn_restrict */
    size_t result_cap; /* see qr_conn_cap_result; 0: none */
    int stale_plans; /* a schema change outdated the prepared statements */
    int want_write;  /* qr_conn_collect waits for the socket to take more */
    int no_prepare;  /* QR_CONN_POOLER: every statement unnamed */
    struct qr_pending pending;
    qr_conn_meta meta;
};

/* ---- errors from the server ---- */

static void copy_line(char *dst, size_t cap, const char *src)
{
    if (!src) src = "";
    size_t n = strcspn(src, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int sqlstate_retryable(const char *s)
{
    return strncmp(s, "08", 2) == 0 || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
           strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0 ||
           strcmp(s, "53300") == 0;
}

/* Fill err from a failed result, or from the connection when there is none. */
static void error_from(qr_error *err, qr_conn *c, const PGresult *r)
{
    qr_error_clear(err);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg) msg = PQerrorMessage(c->pg);
    if (!msg || !*msg) msg = "lost the connection to the server";
    copy_line(err->message, sizeof err->message, msg);
    if (state) snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state);
    if (r) {
        const char *d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        const char *h = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
        const char *p = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
        const char *ctx = PQresultErrorField(r, PG_DIAG_CONTEXT);
        if (ctx) snprintf(err->context, sizeof err->context, "%s", ctx);
        if (d) snprintf(err->detail, sizeof err->detail, "%s", d);
        if (h) snprintf(err->hint, sizeof err->hint, "%s", h);
        if (p) err->position = atoi(p);
    }
    /* The server ending the session (shutdown, crash, not accepting yet) may
     * answer the statement before the socket closes: the connection is as
     * good as lost even while libpq still calls it OK. */
    if (state && strncmp(state, "57P0", 4) == 0) c->broken = 1;
    if (PQstatus(c->pg) != CONNECTION_OK) c->broken = 1;
    /* 08P01 on a live connection is the server refusing what we sent (a
     * parameter count that does not match): the caller's mistake, and the
     * session goes on. Retrying it would only fail again. */
    int misuse = !c->broken && state && strcmp(state, "08P01") == 0;
    int conn_lost = c->broken || (state && strncmp(state, "08", 2) == 0 && !misuse);
    snprintf(err->code, sizeof err->code, "%s", conn_lost ? "connection" : misuse ? "usage" : "query");
    err->retryable = !misuse && (conn_lost || (state && sqlstate_retryable(state)));
}

/* ---- connections ---- */

/* Server notices (RAISE NOTICE, "already exists, skipping", the FATAL that
 * precedes a terminated session) go to the log, not straight to stderr. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char line[1024];
    copy_line(line, sizeof line, message);
    qr_log(QR_LOG_DEBUG, "postgres", "%s", line);
}

qr_conn *qr_conn_open(const char *conninfo, uint64_t deadline_ns, int flags, qr_error *err)
{
    int pooler = (flags & QR_CONN_POOLER) != 0;
    if (pooler) {
        /* libpq sends these two as startup parameters, which PgBouncer
         * accepts and restores on whichever server connection it picks;
         * IntervalStyle has no such way and stays the server's. */
        setenv("PGDATESTYLE", "ISO, YMD", 1);
        setenv("PGTZ", "UTC", 1);
    }
    /* Later keywords override what the URL says: every session speaks ISO
     * dates in UTC, whatever the server's defaults are. */
    /* fallback_application_name: PGAPPNAME or the URL's application_name win */
    const char *keys[] = {"dbname", "fallback_application_name", "options", "client_encoding", NULL};
    const char *vals[] = {conninfo && *conninfo ? conninfo : NULL, "quarry",
                          pooler ? NULL : "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=iso_8601",
                          "UTF8", NULL};
    if (pooler) { /* no "options": the pooler would refuse the connection */
        keys[2] = "client_encoding";
        vals[2] = "UTF8";
        keys[3] = NULL;
        vals[3] = NULL;
    }
    qr_conn *c = calloc(1, sizeof *c);
    if (!c) {
        qr_error_set(err, "connection", "out of memory");
        return NULL;
    }
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg) {
        free(c);
        qr_error_set(err, "connection", "out of memory");
        return NULL;
    }
    char where[300];
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(c->pg) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            char line[700];
            copy_line(line, sizeof line, PQerrorMessage(c->pg));
            qr_error_set(err, "connection", "cannot connect to PostgreSQL at %s: %s%s",
                         qr_conn_where(c, where, sizeof where), line,
                         strstr(line, "unsupported startup parameter")
                             ? " (behind PgBouncer in transaction mode? set DB_PREPARE=off)"
                             : "");
            err->retryable = 1;
            goto fail;
        }
        uint64_t now = qr_now_ns();
        int left_ms = now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
        struct pollfd pfd = {PQsocket(c->pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int ready = left_ms > 0 ? poll(&pfd, 1, left_ms) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) {
            qr_error_set(err, "connection",
                         "cannot connect to PostgreSQL at %s: no answer before the "
                         "connection timeout",
                         qr_conn_where(c, where, sizeof where));
            err->retryable = 1;
            goto fail;
        }
        st = PQconnectPoll(c->pg);
    }
    PQsetNoticeProcessor(c->pg, notice_to_log, NULL);
    c->cancel = PQgetCancel(c->pg);
    c->no_prepare = pooler;
    return c;
fail:
    PQfinish(c->pg);
    free(c);
    return NULL;
}

void qr_conn_close(qr_conn *c)
{
    if (!c) return;
    if (c->cancel) PQfreeCancel(c->cancel);
    PQclear(c->pending.keep);
    PQclear(c->pending.rows);
    PQfinish(c->pg);
    free(c->prepared);
    free(c);
}

PGconn *qr_conn_pg(qr_conn *c)
{
    return c->pg;
}

int qr_conn_broken(const qr_conn *c)
{
    return c->broken || PQstatus(c->pg) != CONNECTION_OK;
}

void qr_conn_mark_broken(qr_conn *c)
{
    c->broken = 1;
}

const char *qr_conn_where(qr_conn *c, char *buf, size_t cap)
{
    const char *host = PQhost(c->pg), *port = PQport(c->pg);
    snprintf(buf, cap, "%s:%s", host && *host ? host : "localhost", port && *port ? port : "5432");
    return buf;
}

int *qr_conn_tx_depth(qr_conn *c)
{
    return &c->tx_depth;
}

qr_conn_meta *qr_conn_meta_of(qr_conn *c)
{
    return &c->meta;
}

static int is_prepared(const qr_conn *c, unsigned id)
{
    return id / 8 < c->prepared_bytes && (c->prepared[id / 8] >> (id % 8)) & 1;
}

static int set_prepared(qr_conn *c, unsigned id)
{
    if (id / 8 >= c->prepared_bytes) {
        size_t n = (id / 8 + 1) * 2;
        unsigned char *p = realloc(c->prepared, n);
        if (!p) return -1;
        memset(p + c->prepared_bytes, 0, n - c->prepared_bytes);
        c->prepared = p;
        c->prepared_bytes = n;
    }
    c->prepared[id / 8] |= (unsigned char)(1u << (id % 8));
    return 0;
}

static PGresult *checked(qr_conn *c, PGresult *r, qr_error *err)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) return r;
    if (s == PGRES_EMPTY_QUERY) return r; /* an empty statement: a command */
    if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
        /* The server now waits on a COPY this API cannot serve; the session
         * stays busy, so the pool will close it rather than reuse it. */
        PQclear(r);
        qr_error_set(err, "usage", "COPY cannot run through query/exec (the connection is "
                                   "discarded when released)");
        return NULL;
    }
    error_from(err, c, r);
    PQclear(r);
    return NULL;
}

void qr_conn_restrict(qr_conn *c, int on)
{
    c->restricted = on != 0;
}

void qr_conn_cap_result(qr_conn *c, size_t bytes)
{
    c->result_cap = bytes;
}

/* Learn st's parameters from the server (once per statement, whichever
 * connection gets there first). NULL on failure: the caller then sends
 * every parameter as text. */
static qr_stmt_params *describe(qr_conn *c, qr_stmt *st, const char *name)
{
    qr_stmt_params *known = atomic_load(&st->params);
    if (known) return known;
    PGresult *r = PQdescribePrepared(c->pg, name);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        PQclear(r);
        return NULL;
    }
    int n = PQnparams(r);
    qr_stmt_params *p = malloc(sizeof *p + (size_t)n + 1);
    if (p) {
        p->n = n;
        for (int i = 0; i < n; i++) p->bytea[i] = PQparamtype(r, i) == 17;
        qr_stmt_params *none = NULL;
        if (!atomic_compare_exchange_strong(&st->params, &none, p)) {
            free(p); /* another connection described it meanwhile */
            p = none;
        }
    }
    PQclear(r);
    return p;
}

/* A server that says a prepared plan no longer fits (a column changed type,
 * a table was recreated) or has gone (DISCARD ALL) is answered by preparing
 * again, as pgx and JDBC do. */
static int plan_outdated(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!state) return 0;
    if (strcmp(state, "26000") == 0) return 1; /* prepared statement does not exist */
    return strcmp(state, "0A000") == 0 && msg && strstr(msg, "cached plan must not change result type");
}

/* Forget every prepared statement of this connection, once it can run a
 * command again (not inside a failed transaction). */
static void drop_plans_if_stale(qr_conn *c)
{
    if (!c->stale_plans || PQtransactionStatus(c->pg) == PQTRANS_INERROR) return;
    PGresult *r = PQexec(c->pg, "DEALLOCATE ALL");
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
        if (c->prepared) memset(c->prepared, 0, c->prepared_bytes);
        c->stale_plans = 0;
    }
    PQclear(r);
}

/* script: whether sql holds several statements, as the statement cache
 * found when it first saw this text (a lexer pass over the whole text). */
static int check_restricted(const char *sql, size_t len, int script, qr_error *err)
{
    if (script) {
        qr_error_set(err, "denied", "one statement per query here: this SQL holds several");
        return -1;
    }
    if (!qr_sql_reads_only(sql, len)) {
        char w[32];
        qr_sql_first_word(sql, len, w, sizeof w);
        qr_error_set(err, "denied", "only reading statements (SELECT, WITH, VALUES, TABLE, SHOW, "
                                   "EXPLAIN) may run here, not %s", *w ? w : "this statement");
        return -1;
    }
    return 0;
}

/* ---- one statement in two halves ----
 * qr_conn_send checks and sends; qr_conn_collect reads the answer as it
 * arrives, without blocking. qr_conn_exec is the two with a poll between
 * them; quarry.parallel runs many of them on one event loop. */

enum { SEND_SCRIPT, SEND_PARAMS, SEND_PREPARED };

static int send_prepared(qr_conn *c, qr_error *err)
{
    struct qr_pending *q = &c->pending;
    qr_stmt *st = q->st;
    char name[24];
    snprintf(name, sizeof name, "qr_%u", st->id);
    q->was_idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    drop_plans_if_stale(c);
    if (!is_prepared(c, st->id)) {
        PGresult *r = checked(c, PQprepare(c->pg, name, st->sql, 0, NULL), err);
        if (!r) return -1;
        PQclear(r);
        if (set_prepared(c, st->id) != 0) {
            qr_error_set(err, "query", "out of memory");
            return -1;
        }
    }
    qr_stmt_params *p = describe(c, st, name);
    int formats[STACK_FORMATS], *fmt = NULL;
    int n = q->n;
    if (p && p->n != n) {
        qr_error_set(err, "usage", "the statement takes %d parameter%s, %d given", p->n,
                     p->n == 1 ? "" : "s", n);
        return -1;
    }
    if (p && n <= STACK_FORMATS) {
        for (int i = 0; i < n; i++) formats[i] = p->bytea[i];
        fmt = formats;
    }
    for (int i = 0; i < n; i++) {
        if (q->values[i] && !(fmt && fmt[i]) && q->lengths &&
            memchr(q->values[i], 0, (size_t)q->lengths[i])) {
            qr_error_set(err, "usage", "parameter $%d holds a zero byte, which only a bytea "
                                       "parameter can take", i + 1);
            return -1;
        }
    }
    /* the parameters are copied into libpq's buffer here; fmt may go */
    if (!PQsendQueryPrepared(c->pg, name, n, q->values, q->lengths, fmt, 0)) {
        error_from(err, c, NULL);
        return -1;
    }
    return 0;
}

static int send_pending(qr_conn *c, qr_error *err)
{
    struct qr_pending *q = &c->pending;
    int ok;
    if (q->kind == SEND_PREPARED) {
        ok = send_prepared(c, err) == 0;
    } else {
        if (q->kind == SEND_SCRIPT) ok = PQsendQuery(c->pg, q->sql);
        else ok = PQsendQueryParams(c->pg, q->sql, q->n, NULL, q->values, q->lengths, NULL, 0);
        if (!ok) error_from(err, c, NULL);
    }
    if (!ok) return -1;
    /* A result libpq gathers whole is held in full before anyone can look
     * at its size: a plugin's SELECT of 3 GB took 3 GB of the process, past
     * every limit. One row at a time, it is counted as it comes. */
    PQclear(q->rows);
    q->rows = NULL;
    q->bytes = 0;
    q->over = 0;
    /* right after sending, or it is refused */
    if (c->result_cap > 0 && !q->command) (void)PQsetSingleRowMode(c->pg);
    return 0;
}

/* One row of a statement under a cap into the rows gathered so far; past
 * the cap, the statement is cancelled and the rest of it read and dropped.
 * The connection is not used again: a cancel that reached the server late
 * would fail its next statement instead. */
static void gather_row(qr_conn *c, PGresult *row)
{
    struct qr_pending *q = &c->pending;
    if (q->over) return;
    int nf = PQnfields(row);
    if (!q->rows) q->rows = PQcopyResult(row, PG_COPYRES_ATTRS);
    int t = q->rows ? PQntuples(q->rows) : 0;
    q->bytes += sizeof(void *) * 2;
    for (int f = 0; f < nf && q->rows; f++) {
        int null = PQgetisnull(row, 0, f);
        int len = null ? -1 : PQgetlength(row, 0, f);
        q->bytes += (size_t)(len > 0 ? len : 0) + 1 + 2 * sizeof(void *);
        if (!PQsetvalue(q->rows, t, f, null ? NULL : PQgetvalue(row, 0, f), len)) {
            PQclear(q->rows); /* out of memory: an error as over the cap */
            q->rows = NULL;
        }
    }
    if (!q->rows || q->bytes > c->result_cap) {
        PQclear(q->rows);
        q->rows = NULL;
        q->over = 1;
        c->broken = 1;
        qr_conn_cancel(c);
    }
}

/* The connection's pending statement, cleared for the next one. */
static struct qr_pending *new_pending(qr_conn *c)
{
    struct qr_pending *q = &c->pending;
    PQclear(q->keep); /* a statement abandoned half-read (a cancelled coroutine) */
    PQclear(q->rows);
    memset(q, 0, sizeof *q);
    return q;
}

int qr_conn_send(qr_conn *c, qr_stmt *st, const char *sql, int n, const char *const *values,
                 const int *lengths, qr_error *err)
{
    if (st) sql = st->sql;
    size_t len = st ? st->len : strlen(sql);
    int script = st ? st->simple : qr_sql_is_script(sql, len);
    if (c->no_prepare) st = NULL; /* behind a pooler a named statement may be on another server */
    struct qr_pending *q = new_pending(c);
    q->st = st;
    q->sql = sql;
    q->n = n;
    q->values = values;
    q->lengths = lengths;
    if (c->restricted) {
        if (check_restricted(sql, len, script, err) != 0) return -1;
        /* Never the simple protocol: even a text the lexer misjudged cannot
         * carry a second statement through PQprepare or PQexecParams. */
        q->kind = st ? SEND_PREPARED : SEND_PARAMS;
    } else {
        if (!st && lengths) {
            for (int i = 0; i < n; i++) {
                if (values[i] && memchr(values[i], 0, (size_t)lengths[i])) {
                    qr_error_set(err, "usage", "parameter $%d holds a zero byte, which only a bytea "
                                               "parameter of a prepared statement can take", i + 1);
                    return -1;
                }
            }
        }
        if (script) {
            if (n > 0) {
                qr_error_set(err, "usage", "a script of several statements cannot take parameters");
                return -1;
            }
            q->kind = SEND_SCRIPT;
        } else {
            q->kind = st ? SEND_PREPARED : SEND_PARAMS;
        }
    }
    if (send_pending(c, err) != 0) return -1;
    q->active = 1;
    return 0;
}

int qr_conn_send_command(qr_conn *c, const char *sql, qr_error *err)
{
    struct qr_pending *q = new_pending(c);
    q->sql = sql;
    q->kind = SEND_SCRIPT;
    q->command = 1;
    if (send_pending(c, err) != 0) return -1;
    q->active = 1;
    return 0;
}

/* The last result has come: what qr_conn_exec returns. 1, or 0 when the
 * statement was sent again (an outdated plan, see plan_outdated). */
static int finish(qr_conn *c, PGresult *r, PGresult **out, qr_error *err)
{
    struct qr_pending *q = &c->pending;
    if (q->kind == SEND_PREPARED && r && plan_outdated(r)) {
        c->stale_plans = 1;
        if (q->was_idle && q->attempt == 0) { /* nothing else was undone by the failure: retry */
            PQclear(r);
            q->attempt = 1;
            if (send_pending(c, err) == 0) return 0;
            q->active = 0;
            *out = NULL;
            return 1;
        }
    }
    q->active = 0;
    PGresult *rows = q->rows; /* under a cap: the rows gathered so far */
    q->rows = NULL;
    if (q->over) {
        PQclear(r);
        qr_error_set(err, "query", "a query's result grew past %zu MiB, the most a plugin may hold "
                                   "(QUARRY_PLUGIN_MEMORY): it was cancelled", c->result_cap >> 20);
        *out = NULL;
        return 1;
    }
    if (!r) {
        PQclear(rows);
        error_from(err, c, NULL);
        *out = NULL;
        return 1;
    }
    if (rows && PQresultStatus(r) == PGRES_TUPLES_OK) { /* the end of the rows: them, gathered */
        PQclear(r);
        r = rows;
    } else {
        PQclear(rows); /* failed half-way: the error, not the rows before it */
    }
    r = checked(c, r, err);
    if (c->restricted && !q->command) {
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);
        if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
            if (r) PQclear(r);
            c->broken = 1;
            qr_error_set(err, "denied", "a statement here may not end its transaction "
                                       "(the connection is discarded)");
            r = NULL;
        }
    }
    *out = r;
    return 1;
}

static int failed(ExecStatusType s)
{
    return s == PGRES_FATAL_ERROR || s == PGRES_BAD_RESPONSE || s == PGRES_NONFATAL_ERROR;
}

int qr_conn_collect(qr_conn *c, PGresult **out, qr_error *err)
{
    struct qr_pending *q = &c->pending;
    *out = NULL;
    c->want_write = 0;
    int f = PQflush(c->pg);
    if (f == 1) {
        c->want_write = 1;
        return 0;
    }
    if (f < 0 || !PQconsumeInput(c->pg)) {
        PQclear(q->keep);
        q->keep = NULL;
        return finish(c, NULL, out, err);
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        ExecStatusType s = r ? PQresultStatus(r) : PGRES_EMPTY_QUERY;
        if (r && (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH)) {
            PQclear(q->keep); /* the server waits on a COPY: nothing more comes */
            q->keep = NULL;
            return finish(c, r, out, err);
        }
        if (s == PGRES_SINGLE_TUPLE) {
            gather_row(c, r);
            PQclear(r);
            continue;
        }
        if (!r) { /* the end: the last result, or the first error (as PQexec) */
            PGresult *last = q->keep;
            q->keep = NULL;
            int done = finish(c, last, out, err);
            if (done) return 1;
            continue; /* sent again */
        }
        if (q->keep && failed(PQresultStatus(q->keep))) {
            PQclear(r);
        } else {
            PQclear(q->keep);
            q->keep = r;
        }
    }
    return 0;
}

int qr_conn_socket(const qr_conn *c)
{
    return PQsocket(c->pg);
}

int qr_conn_wants_write(const qr_conn *c)
{
    return c->want_write;
}

int qr_conn_set_nonblocking(qr_conn *c, int on)
{
    return PQsetnonblocking(c->pg, on != 0);
}

int qr_conn_busy(const qr_conn *c)
{
    return c->pending.active;
}

int qr_conn_cancel(qr_conn *c)
{
    char buf[256];
    return c->cancel && PQcancel(c->cancel, buf, sizeof buf);
}

/* The cancel handle of the statement running now, if any: the process runs
 * one blocking statement at a time, and a signal handler may read this at
 * any moment (qr_conn_cancel_running), so it is an atomic pointer set
 * around the call. */
static _Atomic(PGcancel *) running;

int qr_conn_cancel_running(void)
{
    PGcancel *cn = atomic_load(&running);
    char buf[256];
    return cn && PQcancel(cn, buf, sizeof buf); /* PQcancel is safe in a signal handler */
}

/* A statement that waits on a lock another session holds (an analyst's
 * psql transaction left open on the rows a load replaces) used to wait in
 * silence, for as long as that session stayed open. Every WAIT_NOTE_NS a
 * statement runs, who blocks it is asked on a short connection of its own
 * and logged; a statement that is only slow logs nothing. */
#define WAIT_NOTE_NS 5000000000ull

static void note_wait(qr_conn *c, uint64_t waited_ns)
{
    PQconninfoOption *opts = PQconninfo(c->pg);
    if (!opts) return;
    const char *kw[64], *val[64];
    int k = 0;
    for (PQconninfoOption *o = opts; o->keyword && k < 62; o++) {
        if (!o->val || !*o->val || strcmp(o->keyword, "connect_timeout") == 0) continue;
        kw[k] = o->keyword;
        val[k++] = o->val;
    }
    kw[k] = "connect_timeout";
    val[k++] = "2";
    kw[k] = NULL;
    val[k] = NULL;
    PGconn *side = PQconnectdbParams(kw, val, 0);
    PQconninfoFree(opts);
    if (PQstatus(side) == CONNECTION_OK) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", PQbackendPID(c->pg));
        const char *app = PQparameterStatus(c->pg, "application_name");
        const char *params[2] = {pid, app ? app : ""};
        /* Behind PgBouncer the pid libpq knows is the pooler's, no server's:
         * then the sessions of this application name waiting on a lock
         * stand for this one (its server session is one of them). */
        PGresult *r = PQexecParams(
            side,
            "WITH me AS (SELECT pid FROM pg_stat_activity WHERE pid = $1::int UNION ALL "
            "SELECT pid FROM pg_stat_activity WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity "
            "WHERE pid = $1::int) AND application_name = $2 AND wait_event_type = 'Lock') "
            "SELECT string_agg(format('pid %s (%s, %s for %s s)', pid, "
            "coalesce(nullif(application_name, ''), usename::text, '?'), state, "
            "extract(epoch FROM now() - coalesce(xact_start, query_start))::bigint), '; ') AS who "
            "FROM pg_stat_activity WHERE pid IN (SELECT unnest(pg_blocking_pids(pid)) FROM me)",
            2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
            qr_log(QR_LOG_WARN, "db",
                   "waited %llu s for a lock held by %s: this waits until that session ends its "
                   "transaction (Ctrl-C stops it here, changing nothing)",
                   (unsigned long long)(waited_ns / 1000000000ull), PQgetvalue(r, 0, 0));
        }
        PQclear(r);
    }
    PQfinish(side);
}

PGresult *qr_conn_exec(qr_conn *c, qr_stmt *st, const char *sql, int n, const char *const *values,
                       const int *lengths, qr_error *err)
{
    PGcancel *outer = atomic_exchange(&running, c->cancel);
    PGresult *r = NULL;
    if (qr_conn_send(c, st, sql, n, values, lengths, err) == 0) {
        uint64_t start = qr_now_ns(), note_at = start + WAIT_NOTE_NS;
        while (!qr_conn_collect(c, &r, err)) {
            struct pollfd pfd = {PQsocket(c->pg), c->want_write ? POLLOUT : POLLIN, 0};
            uint64_t now = qr_now_ns();
            if (now >= note_at) {
                note_wait(c, now - start);
                now = qr_now_ns();
                note_at = now + WAIT_NOTE_NS;
            }
            int ms = (int)((note_at - now) / 1000000ull) + 1;
            if (poll(&pfd, 1, ms) < 0 && errno != EINTR) break; /* collect then reports the state */
        }
    }
    atomic_store(&running, outer);
    return r;
}

long long qr_conn_copy_in(qr_conn *c, const char *sql, qr_copy_source src, void *ud, qr_error *err)
{
    PGresult *r = PQexec(c->pg, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        if (PQresultStatus(r) == PGRES_FATAL_ERROR || !r) {
            error_from(err, c, r);
        } else {
            qr_error_set(err, "usage", "copy_in needs a COPY ... FROM STDIN statement");
        }
        PQclear(r);
        /* a statement that started some other COPY leaves the session busy */
        return -1;
    }
    PQclear(r);
    int aborted = 0, sent = 1;
    for (;;) {
        const char *buf = NULL;
        size_t len = 0;
        int s = src(ud, &buf, &len);
        if (s == 1 && len > 0) {
            if (PQputCopyData(c->pg, buf, (int)len) != 1) {
                sent = 0;
                break;
            }
        } else if (s == 1) {
            continue;
        } else {
            aborted = s < 0;
            sent = PQputCopyEnd(c->pg, aborted ? "aborted by quarry" : NULL) == 1;
            break;
        }
    }
    long long rows = -1;
    if (!sent) {
        error_from(err, c, NULL);
    }
    while ((r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK && rows < 0 && sent) {
            rows = strtoll(PQcmdTuples(r), NULL, 10);
        } else if (st != PGRES_COMMAND_OK && sent && !aborted) {
            error_from(err, c, r);
            rows = -1;
        }
        PQclear(r);
    }
    if (aborted) {
        qr_error_set(err, "usage", "aborted");
        return -1;
    }
    if (!sent) return -1;
    return rows;
}

int qr_conn_command(qr_conn *c, const char *sql, qr_error *err)
{
    PGresult *r = checked(c, PQexec(c->pg, sql), err);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

int qr_conn_ping(qr_conn *c)
{
    if (c->broken || PQstatus(c->pg) != CONNECTION_OK) return -1;
    /* Cheap first: a server that closed the socket has already told us so. */
    if (!PQconsumeInput(c->pg)) {
        c->broken = 1;
        return -1;
    }
    PGresult *r = PQexec(c->pg, "");
    int ok = r && PQresultStatus(r) == PGRES_EMPTY_QUERY;
    PQclear(r);
    if (!ok) c->broken = 1;
    return ok ? 0 : -1;
}
