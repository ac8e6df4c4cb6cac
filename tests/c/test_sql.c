/* What src/sql.c says of SQL text: scripts, first words, reading statements. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "sql.h"

static int script(const char *s) { return qr_sql_is_script(s, strlen(s)); }
static int reads(const char *s) { return qr_sql_reads_only(s, strlen(s)); }

static void test_scripts(void **state)
{
    (void)state;
    assert_false(script("SELECT 1"));
    assert_false(script("SELECT 1;"));
    assert_false(script("SELECT 1;  -- done\n"));
    assert_false(script("SELECT ';' AS x"));
    assert_false(script("SELECT $$a; b$$"));
    assert_false(script("SELECT $t$ ; $t$"));
    assert_false(script("SELECT \"a;b\" FROM t"));
    assert_false(script("SELECT 1 /* ; /* nested ; */ ; */"));
    assert_true(script("SELECT 1; SELECT 2"));
    assert_true(script("ROLLBACK; DROP TABLE t"));
    assert_true(script("SELECT E'\\';'; DROP TABLE t"));
    assert_true(script("SELECT 'a''b'; DROP TABLE t"));
}

static void test_first_word(void **state)
{
    (void)state;
    char w[16];
    qr_sql_first_word("  /* c */ -- x\n ((Select 1))", 28, w, sizeof w);
    assert_string_equal(w, "select");
    qr_sql_first_word("", 0, w, sizeof w);
    assert_string_equal(w, "");
    qr_sql_first_word("averyveryverylongword", 21, w, 4);
    assert_string_equal(w, "ave");
}

static void test_reads_only(void **state)
{
    (void)state;
    assert_true(reads("SELECT 1"));
    assert_true(reads("with x as (select 1) select * from x"));
    assert_true(reads("(VALUES (1))"));
    assert_true(reads("TABLE t"));
    assert_true(reads("SHOW work_mem"));
    assert_true(reads("EXPLAIN SELECT 1"));
    assert_false(reads("COMMIT"));
    assert_false(reads("end"));
    assert_false(reads("RESET ROLE"));
    assert_false(reads("SET ROLE x"));
    assert_false(reads("/* SELECT */ DELETE FROM t"));
    assert_false(reads("selectx 1"));
    assert_false(reads("COPY t TO PROGRAM 'x'"));
    assert_false(reads(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_first_word),
        cmocka_unit_test(test_reads_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
