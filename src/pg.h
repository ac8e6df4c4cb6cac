/* pg.h - one PostgreSQL connection and the statements run on it.
 *
 * A qr_conn is used by one thread at a time (the pool hands it out). Every
 * parameter travels apart from the SQL text (extended protocol); SQL seen
 * before is run as a prepared statement of that connection, prepared on first
 * use. Statements are registered once per pool in a qr_stmts registry, which
 * also holds their timing histogram and SQL fingerprint.
 *
 * Errors: functions return NULL / -1 and fill the caller's qr_error; nothing
 * is printed. A connection whose socket failed is marked broken; the pool
 * discards broken connections when they are released.
 */
#ifndef QR_PG_H
#define QR_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "stmts.h"

/* ---- connections ---- */

typedef struct qr_conn qr_conn;

/* Connect to conninfo (URL or key=value text; NULL/"" means libpq's PG*
 * environment) giving up at deadline_ns (qr_now_ns clock). Sessions use ISO
 * dates and UTC so values print the same everywhere. */
qr_conn *qr_conn_open(const char *conninfo, uint64_t deadline_ns, int flags, qr_error *err);

/* flags of qr_conn_open. QR_CONN_POOLER: the server is a transaction pooler
 * (PgBouncer pool_mode=transaction), which hands each transaction to any of
 * its server connections and refuses the "options" startup parameter. Such
 * a connection prepares nothing by name (every statement goes as one
 * unnamed parse-bind-execute), and gets DateStyle and TimeZone as startup
 * parameters the pooler tracks instead of through "options". */
#define QR_CONN_POOLER 1
void qr_conn_close(qr_conn *c);

PGconn *qr_conn_pg(qr_conn *c);
int qr_conn_broken(const qr_conn *c);
void qr_conn_mark_broken(qr_conn *c);
/* "host:port" of the server, for messages. */
const char *qr_conn_where(qr_conn *c, char *buf, size_t cap);

/* Run st with n text parameters (NULL value = SQL NULL). Returns a result the
 * caller owns (PQclear) with status TUPLES_OK or COMMAND_OK, or NULL with err
 * set. st may be NULL for a statement run unprepared: then sql is used. */
PGresult *qr_conn_exec(qr_conn *c, qr_stmt *st, const char *sql, int n,
                       const char *const *values, const int *lengths, qr_error *err);

/* The same in two halves, for an event loop. qr_conn_send checks and sends
 * (0, or -1 with err); values and lengths must stay valid until the result
 * is collected. qr_conn_collect never blocks: 1 when the statement is done
 * (*out as qr_conn_exec returns it, or NULL with err), 0 when it must be
 * called again once qr_conn_socket is readable (writable if
 * qr_conn_wants_write). Use qr_conn_set_nonblocking(c, 1) first so sending
 * never blocks either. One statement at a time per connection. */
int qr_conn_send(qr_conn *c, qr_stmt *st, const char *sql, int n, const char *const *values,
                 const int *lengths, qr_error *err);
int qr_conn_collect(qr_conn *c, PGresult **out, qr_error *err);
/* qr_conn_command's half for an event loop (BEGIN, COMMIT, ...; not
 * restricted, as transaction control is the host's), collected as above. */
int qr_conn_send_command(qr_conn *c, const char *sql, qr_error *err);
int qr_conn_socket(const qr_conn *c);
int qr_conn_wants_write(const qr_conn *c);
int qr_conn_set_nonblocking(qr_conn *c, int on);
/* 1 while a sent statement is not collected. */
int qr_conn_busy(const qr_conn *c);
/* Ask the server to cancel c's running statement (it then fails with 57014). */
int qr_conn_cancel(qr_conn *c);

/* Ask the server to cancel the statement qr_conn_exec runs now (it then
 * fails with SQLSTATE 57014). Async-signal-safe: for a SIGINT handler.
 * Returns 1 if a cancel request was sent. */
int qr_conn_cancel_running(void);

/* Where COPY FROM STDIN data comes from: 1 with the next chunk in *buf, *len,
 * 0 at the end, -1 to abort the COPY (nothing is loaded). */
typedef int (*qr_copy_source)(void *ud, const char **buf, size_t *len);

/* Run sql (a COPY ... FROM STDIN statement) feeding it from src. Returns the
 * rows loaded, or -1 with err (code "usage" with message "aborted" when the
 * source aborted). The connection is left ready for the next statement. */
long long qr_conn_copy_in(qr_conn *c, const char *sql, qr_copy_source src, void *ud, qr_error *err);

/* Restricted (1) or not (0). A restricted connection runs only statements
 * that read (qr_sql_reads_only), one per call, always through the extended
 * protocol (which the server refuses to give several statements), and a
 * statement that leaves the transaction it found (COMMIT, ROLLBACK) fails
 * and discards the connection. For code that must not write: report plugins. */
void qr_conn_restrict(qr_conn *c, int on);
/* The most bytes one statement's rows may take (0: no limit). Under a cap
 * the rows come one at a time (single-row mode) and are counted as they
 * come; past it the statement is cancelled, fails, and the connection is
 * discarded when released. Not for BEGIN/COMMIT (qr_conn_send_command). */
void qr_conn_cap_result(qr_conn *c, size_t bytes);

/* One parameterless command (BEGIN, SAVEPOINT, ...) with the simple protocol. */
int qr_conn_command(qr_conn *c, const char *sql, qr_error *err);

/* A round trip that proves the connection works; 0 if it does. */
int qr_conn_ping(qr_conn *c);

/* Where tx.c keeps a connection's transaction depth: only tx.c uses it
 * (everyone else asks qr_tx_depth). */
int *qr_conn_tx_depth(qr_conn *c);

/* Pool bookkeeping, kept on the connection so the pool needs no side table. */
typedef struct qr_conn_meta {
    uint64_t created_ns, last_used_ns, expires_ns, acquired_ns;
    int hold_warned;
    char who[160];
    qr_conn *next;
} qr_conn_meta;
qr_conn_meta *qr_conn_meta_of(qr_conn *c);

#endif
