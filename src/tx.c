/* tx.c - see tx.h. */
#include "tx.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const iso_names[] = {NULL, "read committed", "repeatable read", "serializable"};

int qr_isolation_parse(const char *name)
{
    for (int i = 1; i <= QR_ISO_SERIALIZABLE; i++)
        if (strcasecmp(name, iso_names[i]) == 0) return i;
    return -1;
}

int qr_tx_depth(qr_conn *c)
{
    return *qr_conn_tx_depth(c);
}

void qr_tx_forget(qr_conn *c)
{
    *qr_conn_tx_depth(c) = 0;
}

int qr_tx_begin_sql(qr_conn *c, const qr_tx_options *opt, char *sql, size_t cap, qr_error *err)
{
    int depth = *qr_conn_tx_depth(c);
    if (depth == 0) {
        qr_tx_options o = opt ? *opt : (qr_tx_options){0};
        if (o.isolation < QR_ISO_DEFAULT || o.isolation > QR_ISO_SERIALIZABLE) {
            qr_error_set(err, "usage", "unknown isolation level");
            return -1;
        }
        int n = snprintf(sql, cap, "BEGIN%s%s%s%s%s", o.isolation ? " ISOLATION LEVEL " : "",
                         o.isolation ? iso_names[o.isolation] : "", o.read_only ? " READ ONLY" : "",
                         o.setup ? "; " : "", o.setup ? o.setup : "");
        if (n < 0 || (size_t)n >= cap) {
            qr_error_set(err, "usage", "transaction setup statements too long");
            return -1;
        }
    } else {
        snprintf(sql, cap, "SAVEPOINT qr_sp_%d", depth);
    }
    return 0;
}

void qr_tx_began(qr_conn *c)
{
    (*qr_conn_tx_depth(c))++;
}

static void begin_failed(qr_conn *c)
{
    /* BEGIN ran but a setup statement after it failed: the server is in an
     * aborted transaction the caller does not know it has. */
    if (PQtransactionStatus(qr_conn_pg(c)) == PQTRANS_IDLE) return;
    if (qr_conn_command(c, "ROLLBACK", &(qr_error){0}) != 0) qr_conn_mark_broken(c);
}

int qr_tx_commit_sql(qr_conn *c, char *sql, size_t cap, qr_error *err)
{
    int depth = *qr_conn_tx_depth(c);
    if (depth == 0) {
        qr_error_set(err, "transaction", "commit without a transaction");
        return -1;
    }
    if (PQtransactionStatus(qr_conn_pg(c)) == PQTRANS_INERROR) return 1;
    if (depth == 1) snprintf(sql, cap, "COMMIT");
    else snprintf(sql, cap, "RELEASE SAVEPOINT qr_sp_%d", depth - 1);
    return 0;
}

void qr_tx_committed(qr_conn *c, int ok)
{
    int *depth = qr_conn_tx_depth(c);
    if (ok) (*depth)--;
    else if (*depth == 1) *depth = 0; /* a failed COMMIT ends the transaction */
}

int qr_tx_rollback_sql(qr_conn *c, char *sql, size_t cap, qr_error *err)
{
    int *depth = qr_conn_tx_depth(c);
    if (*depth == 0) {
        qr_error_set(err, "transaction", "rollback without a transaction");
        return -1;
    }
    if (*depth == 1)
        snprintf(sql, cap, "ROLLBACK");
    else
        snprintf(sql, cap, "ROLLBACK TO SAVEPOINT qr_sp_%d; RELEASE SAVEPOINT qr_sp_%d", *depth - 1,
                 *depth - 1);
    (*depth)--;
    return 0;
}

void qr_tx_rolled_back(qr_conn *c, int ok)
{
    if (!ok) qr_conn_mark_broken(c); /* the pool discards it */
}

PGresult *qr_tx_begin_rows(qr_conn *c, const qr_tx_options *opt, qr_error *err)
{
    char sql[QR_TX_SQL_MAX];
    if (qr_tx_begin_sql(c, opt, sql, sizeof sql, err) != 0) return NULL;
    PGresult *r = qr_conn_exec(c, NULL, sql, 0, NULL, NULL, err);
    if (!r) {
        begin_failed(c);
        return NULL;
    }
    qr_tx_began(c);
    return r;
}

int qr_tx_begin(qr_conn *c, const qr_tx_options *opt, qr_error *err)
{
    char sql[QR_TX_SQL_MAX];
    if (qr_tx_begin_sql(c, opt, sql, sizeof sql, err) != 0) return -1;
    if (qr_conn_command(c, sql, err) != 0) {
        begin_failed(c);
        return -1;
    }
    qr_tx_began(c);
    return 0;
}

int qr_tx_commit(qr_conn *c, qr_error *err)
{
    char sql[64];
    int st = qr_tx_commit_sql(c, sql, sizeof sql, err);
    if (st < 0) return -1;
    if (st == 1) {
        /* PostgreSQL would answer COMMIT with ROLLBACK and no error: say so. */
        qr_error_set(err, "transaction",
                     "the transaction had failed; it was rolled back, not committed");
        qr_tx_rollback(c, &(qr_error){0});
        return -1;
    }
    int ok = qr_conn_command(c, sql, err) == 0;
    qr_tx_committed(c, ok);
    return ok ? 0 : -1;
}

int qr_tx_rollback(qr_conn *c, qr_error *err)
{
    char sql[96];
    if (qr_tx_rollback_sql(c, sql, sizeof sql, err) != 0) return -1;
    int ok = qr_conn_command(c, sql, err) == 0;
    qr_tx_rolled_back(c, ok);
    return ok ? 0 : -1;
}
