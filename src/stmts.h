/* stmts.h - the statements a pool has seen: registered once per SQL text,
 * each with an id (its bit in every connection's "prepared" bitmap), its
 * timing histogram and fingerprint, and what the server said of its
 * parameters. Thread-safe; bounded, so generated SQL that never repeats
 * cannot grow it without end.
 */
#ifndef QR_STMTS_H
#define QR_STMTS_H

#include <stddef.h>

#include "sql.h"
#include "timing.h"

/* What the server said of a prepared statement's parameters, learnt once
 * (PQdescribePrepared) and shared by every connection: how many it takes,
 * and which are bytea (sent in binary, so any byte string round-trips). */
typedef struct qr_stmt_params {
    int n;
    unsigned char bytea[];
} qr_stmt_params;

typedef struct qr_stmt {
    unsigned id;       /* index in each connection's "prepared" bitmap */
    _Atomic(qr_stmt_params *) params; /* NULL until first described */
    int simple;         /* several statements in one text: see qr_sql_is_script */
    char *sql;
    size_t len;
    char *fingerprint; /* whitespace collapsed, literals as ?, at most 100 bytes */
    qr_hist *hist;     /* where this statement's timings go (by fingerprint) */
} qr_stmt;

typedef struct qr_stmts qr_stmts;

qr_stmts *qr_stmts_new(qr_timings *timings); /* timings is borrowed, outlives the registry */
void qr_stmts_free(qr_stmts *s);
/* The statement for this SQL, registered on first sight; NULL when out of
 * memory or past the registry's cap (the caller then runs it unprepared). */
qr_stmt *qr_stmts_get(qr_stmts *s, const char *sql, size_t len);

#endif
