/* error.h - the one error value of the C core: filled by the function that
 * failed, never printed. Every module (connections, the pool, transactions,
 * the Redis cache) reports through it; nothing here needs libpq or hiredis.
 */
#ifndef QR_ERROR_H
#define QR_ERROR_H

typedef struct qr_error {
    char code[24]; /* "connection", "query", "timeout", "transaction", "usage", "denied" */
    char sqlstate[6];   /* "" when not from the server */
    char message[1024]; /* one line */
    char detail[512];
    char hint[512];
    char context[512]; /* where in the server it happened, e.g. "COPY t, line 5" */
    int position; /* 1-based character in the SQL, 0 when absent */
    int retryable; /* connection lost, serialization failure, deadlock, ... */
} qr_error;

void qr_error_clear(qr_error *e);
void qr_error_set(qr_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
