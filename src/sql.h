/* sql.h - what quarry needs to know of SQL text without a server: a
 * statement's fingerprint (for timing names), whether a text holds several
 * statements, and its first keyword. Plain functions of the text; nothing
 * here allocates or talks to PostgreSQL.
 */
#ifndef QR_SQL_H
#define QR_SQL_H

#include <stddef.h>

/* Normalised form of sql for timing names: whitespace runs collapsed, quoted
 * strings and numbers replaced by ?, cut to cap-1 bytes. */
void qr_sql_fingerprint(const char *sql, size_t len, char *out, size_t cap);

/* 1 when sql holds several statements (a script: run with the simple
 * protocol, no parameters), judged outside quotes, comments and $$ bodies. */
int qr_sql_is_script(const char *sql, size_t len);

/* The first keyword of sql, lower-cased into out (at most cap-1 bytes),
 * after blanks, comments and opening parentheses; "" when there is none.
 * "(select 1)" gives "select". */
void qr_sql_first_word(const char *sql, size_t len, char *out, size_t cap);

/* 1 when sql is a statement that only reads (SELECT, WITH, VALUES, TABLE,
 * SHOW, EXPLAIN) by its first keyword. What the server then allows is
 * still up to the transaction (READ ONLY) and the role. */
int qr_sql_reads_only(const char *sql, size_t len);

#endif
