/* src/pg.c and src/tx.c against the real PostgreSQL the test run started:
 * the restricted mode plugins run in, prepared statements across a schema
 * change, parameter counts, transactions and savepoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "pg.h"
#include "test_urls.h"
#include "tx.h"

static char database_url[1200];

static int setup(void **state)
{
    (void)state;
    return test_url("DATABASE_URL", database_url, sizeof database_url);
}

static qr_conn *connect_now(void)
{
    qr_error err;
    qr_conn *c = qr_conn_open(database_url, qr_now_ns() + 5000000000ull, 0, &err);
    assert_non_null(c);
    return c;
}

static PGresult *run(qr_conn *c, qr_stmts *s, const char *sql, int n, const char *const *v, qr_error *err)
{
    qr_stmt *st = s ? qr_stmts_get(s, sql, strlen(sql)) : NULL;
    int lens[4] = {0};
    for (int i = 0; i < n; i++) lens[i] = v[i] ? (int)strlen(v[i]) : 0;
    return qr_conn_exec(c, st, sql, n, v, lens, err);
}

/* A read-only transaction on c, restricted as a plugin's is. */
static void begin_restricted(qr_conn *c)
{
    qr_error err;
    assert_int_equal(qr_tx_begin(c, &(qr_tx_options){.read_only = 1}, &err), 0);
    qr_conn_restrict(c, 1);
}

static void test_restricted_reads_only(void **state)
{
    (void)state;
    qr_conn *c = connect_now();
    qr_stmts *s = qr_stmts_new(NULL);
    qr_error err;
    begin_restricted(c);
    PGresult *r = run(c, s, "SELECT 1", 0, NULL, &err);
    assert_non_null(r);
    PQclear(r);
    const char *refused[] = {"ROLLBACK; SELECT 1", "COMMIT", "SET ROLE postgres", "RESET ROLE",
                             "DROP TABLE x", "/* x */ END"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_null(run(c, s, refused[i], 0, NULL, &err));
        assert_string_equal(err.code, "denied");
    }
    assert_int_equal(PQtransactionStatus(qr_conn_pg(c)), PQTRANS_INTRANS); /* still in it */
    qr_conn_restrict(c, 0);
    assert_int_equal(qr_tx_rollback(c, &err), 0);
    qr_stmts_free(s);
    qr_conn_close(c);
}

static void test_prepared_statements_survive_a_schema_change(void **state)
{
    (void)state;
    qr_conn *c = connect_now();
    qr_stmts *s = qr_stmts_new(NULL);
    qr_error err;
    PGresult *r = run(c, NULL, "DROP TABLE IF EXISTS pg_test_t; CREATE TABLE pg_test_t (a int); "
                               "INSERT INTO pg_test_t VALUES (1)", 0, NULL, &err);
    PQclear(r);
    r = run(c, s, "SELECT * FROM pg_test_t", 0, NULL, &err);
    assert_non_null(r);
    PQclear(r);
    PQclear(run(c, NULL, "ALTER TABLE pg_test_t ALTER COLUMN a TYPE text", 0, NULL, &err));
    r = run(c, s, "SELECT * FROM pg_test_t", 0, NULL, &err);
    assert_non_null(r); /* re-prepared, not "cached plan must not change result type" */
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQclear(run(c, NULL, "DROP TABLE pg_test_t", 0, NULL, &err));
    qr_stmts_free(s);
    qr_conn_close(c);
}

static void test_a_wrong_parameter_count_is_usage(void **state)
{
    (void)state;
    qr_conn *c = connect_now();
    qr_stmts *s = qr_stmts_new(NULL);
    qr_error err;
    const char *one[] = {"1"};
    assert_null(run(c, s, "SELECT $1::int + $2::int", 1, one, &err));
    assert_string_equal(err.code, "usage");
    assert_int_equal(err.retryable, 0);
    assert_false(qr_conn_broken(c));
    qr_stmts_free(s);
    qr_conn_close(c);
}

/* Rows under a cap arrive whole, as without it, prepared or not, NULLs and
 * all; a result past it fails with the connection discarded, and the
 * session, drained, is ready for the rollback. */
static void test_a_result_cap_counts_rows_as_they_come(void **state)
{
    (void)state;
    qr_conn *c = connect_now();
    qr_stmts *s = qr_stmts_new(NULL);
    qr_error err;
    begin_restricted(c);
    qr_conn_cap_result(c, 1 << 20);
    const char *small = "SELECT g, NULLIF(g % 2, 0) AS odd FROM generate_series(1, 1000) g";
    for (int prepared = 0; prepared < 2; prepared++) {
        PGresult *r = run(c, prepared ? s : NULL, small, 0, NULL, &err);
        assert_non_null(r);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(r), 1000);
        assert_int_equal(PQnfields(r), 2);
        assert_string_equal(PQfname(r, 1), "odd");
        assert_string_equal(PQgetvalue(r, 999, 0), "1000");
        assert_true(PQgetisnull(r, 999, 1));
        assert_string_equal(PQgetvalue(r, 998, 1), "1");
        PQclear(r);
    }
    PGresult *none = run(c, s, "SELECT 1 AS x WHERE false", 0, NULL, &err);
    assert_non_null(none);
    assert_int_equal(PQntuples(none), 0);
    assert_string_equal(PQfname(none, 0), "x");
    PQclear(none);
    assert_null(run(c, s, "SELECT 1 / (g - 500) FROM generate_series(1, 1000) g", 0, NULL, &err));
    assert_string_equal(err.sqlstate, "22012"); /* failed half-way: the error, no rows */
    assert_int_equal(qr_tx_rollback(c, &err), 0);
    assert_int_equal(qr_tx_begin(c, &(qr_tx_options){.read_only = 1}, &err), 0);
    assert_false(qr_conn_broken(c));
    assert_null(run(c, s, "SELECT repeat('x', 100000) FROM generate_series(1, 1000)", 0, NULL, &err));
    assert_non_null(strstr(err.message, "grew past 1 MiB"));
    assert_true(qr_conn_broken(c));
    assert_false(qr_conn_busy(c));
    qr_conn_restrict(c, 0);
    qr_conn_cap_result(c, 0);
    assert_int_equal(qr_tx_rollback(c, &err), 0);
    qr_stmts_free(s);
    qr_conn_close(c);
}

static void test_savepoints_nest(void **state)
{
    (void)state;
    qr_conn *c = connect_now();
    qr_error err;
    assert_int_equal(qr_tx_begin(c, NULL, &err), 0);
    assert_int_equal(qr_tx_begin(c, NULL, &err), 0);
    assert_int_equal(qr_tx_depth(c), 2);
    assert_int_equal(qr_tx_rollback(c, &err), 0); /* the savepoint only */
    assert_int_equal(qr_tx_depth(c), 1);
    assert_int_equal(qr_tx_commit(c, &err), 0);
    assert_int_equal(qr_tx_depth(c), 0);
    assert_int_equal(qr_tx_commit(c, &err), -1); /* nothing open */
    qr_conn_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restricted_reads_only),
        cmocka_unit_test(test_prepared_statements_survive_a_schema_change),
        cmocka_unit_test(test_a_wrong_parameter_count_is_usage),
        cmocka_unit_test(test_savepoints_nest),
        cmocka_unit_test(test_a_result_cap_counts_rows_as_they_come),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
