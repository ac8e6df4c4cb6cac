/* src/stmts.c and src/error.c: the statement registry, without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "stmts.h"

static void test_one_entry_per_sql_text(void **state)
{
    (void)state;
    qr_timings *t = qr_timings_new();
    qr_stmts *s = qr_stmts_new(t);
    const char *a = "SELECT $1::int", *b = "SELECT  $1::int";
    qr_stmt *x = qr_stmts_get(s, a, strlen(a));
    assert_non_null(x);
    assert_ptr_equal(x, qr_stmts_get(s, a, strlen(a)));
    qr_stmt *y = qr_stmts_get(s, b, strlen(b));
    assert_ptr_not_equal(x, y);          /* another text, another statement */
    assert_ptr_equal(x->hist, y->hist);  /* but one fingerprint, one histogram */
    assert_string_equal(x->fingerprint, "SELECT $1::int");
    assert_false(x->simple);
    const char *script = "SELECT 1; SELECT 2";
    assert_true(qr_stmts_get(s, script, strlen(script))->simple);
    qr_stmts_free(s);
    qr_timings_free(t);
}

static void test_bounded(void **state)
{
    (void)state;
    qr_stmts *s = qr_stmts_new(NULL);
    char sql[64];
    int got = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(sql, sizeof sql, "SELECT %d", i);
        if (qr_stmts_get(s, sql, strlen(sql))) got++;
    }
    assert_int_equal(got, 4096); /* past the cap, SQL runs unprepared */
    qr_stmts_free(s);
}

static void test_error_is_one_line(void **state)
{
    (void)state;
    qr_error e;
    qr_error_set(&e, "usage", "bad %s: %d", "thing", 42);
    assert_string_equal(e.code, "usage");
    assert_string_equal(e.message, "bad thing: 42");
    assert_string_equal(e.sqlstate, "");
    assert_int_equal(e.retryable, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_entry_per_sql_text),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_error_is_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
