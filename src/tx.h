/* tx.h - transactions and savepoints on one connection.
 *
 * Depth 0 -> begin opens a transaction; deeper begins open savepoints, so
 * nested work rolls back alone. commit/rollback close the innermost level.
 * Options are chosen from fixed lists, never spliced from caller text; the
 * one text option, setup, is the host's own statements.
 * After any failure err is set and -1 returned; a failed rollback marks the
 * connection broken so the pool discards it.
 */
#ifndef QR_TX_H
#define QR_TX_H

#include "pg.h"

typedef enum {
    QR_ISO_DEFAULT = 0,
    QR_ISO_READ_COMMITTED,
    QR_ISO_REPEATABLE_READ,
    QR_ISO_SERIALIZABLE
} qr_isolation;

/* Valid when zeroed: the server's default isolation, read-write. Only the
 * outermost begin uses them. */
typedef struct qr_tx_options {
    qr_isolation isolation;
    int read_only;
    /* Statements sent after BEGIN in the same round trip (the host's own
     * text, e.g. a sandbox's SET LOCALs; never a caller's input), or NULL.
     * If one fails the transaction is not begun and the server's is ended. */
    const char *setup;
} qr_tx_options;

/* Room for a BEGIN and its setup statements. */
#define QR_TX_SQL_MAX 1024

/* "read committed" / "repeatable read" / "serializable" -> level; -1 if unknown. */
int qr_isolation_parse(const char *name);

int qr_tx_begin(qr_conn *c, const qr_tx_options *opt, qr_error *err);
/* The same for a begin with setup statements: the result of the last one
 * (the caller PQclears it), or NULL with err and no transaction open. */
PGresult *qr_tx_begin_rows(qr_conn *c, const qr_tx_options *opt, qr_error *err);
int qr_tx_commit(qr_conn *c, qr_error *err);
int qr_tx_rollback(qr_conn *c, qr_error *err);
int qr_tx_depth(qr_conn *c);

/* The same in halves, for a caller that runs the SQL itself (an event
 * loop): the statement to run (0; commit: 1 when the transaction had failed
 * and must be rolled back instead; -1 with err), then what it did. */
int qr_tx_begin_sql(qr_conn *c, const qr_tx_options *opt, char *sql, size_t cap, qr_error *err);
void qr_tx_began(qr_conn *c);
int qr_tx_commit_sql(qr_conn *c, char *sql, size_t cap, qr_error *err);
void qr_tx_committed(qr_conn *c, int ok);
int qr_tx_rollback_sql(qr_conn *c, char *sql, size_t cap, qr_error *err);
void qr_tx_rolled_back(qr_conn *c, int ok);

/* The connection left every transaction (the pool rolled it back): depth 0. */
void qr_tx_forget(qr_conn *c);

#endif
