/* What src/repeats.c finds: lines that repeat an earlier one, whatever the
 * chunks a text comes in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repeats.h"

/* count, first and of of text fed in chunks of `step` bytes (0: whole) */
static long long scan(const char *text, size_t step, long long *line, long long *of)
{
    qr_repeats *r = qr_repeats_new(2);
    assert_non_null(r);
    size_t n = strlen(text);
    if (step == 0) step = n ? n : 1;
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        assert_int_equal(qr_repeats_feed(r, text + i, k), 0);
    }
    assert_int_equal(qr_repeats_finish(r), 0);
    long long c = qr_repeats_count(r, line, of);
    qr_repeats_free(r);
    return c;
}

static void test_counts_repeats_and_names_the_first(void **state)
{
    (void)state;
    long long line, of;
    const char *text = "a,1\nb,2\nc,3\nb,2\na,1\nb,2\n";
    for (size_t step = 0; step <= 7; step++) { /* any split of the lines */
        assert_int_equal(scan(text, step, &line, &of), 3);
        assert_int_equal(line, 5); /* the header is line 1: "b,2" again on line 5 */
        assert_int_equal(of, 3);
    }
    assert_int_equal(scan("a,1\nb,2\nc,3\n", 0, &line, &of), 0);
    assert_int_equal(line, 0);
    assert_int_equal(of, 0);
}

static void test_line_endings_and_empty_lines(void **state)
{
    (void)state;
    long long line, of;
    /* CRLF and a last line without its newline are the same line */
    assert_int_equal(scan("x,1\r\ny,2\r\nx,1", 1, &line, &of), 1);
    assert_int_equal(line, 4);
    assert_int_equal(of, 2);
    /* a \r inside a line is part of it; empty lines are no rows */
    assert_int_equal(scan("x\r1\nx1\n\n\n\r\n", 0, &line, &of), 0);
    /* a line that only starts like another is not it */
    assert_int_equal(scan("abc\nabcd\nab\n", 2, &line, &of), 0);
}

static void test_many_lines_grow_the_table(void **state)
{
    (void)state;
    enum { N = 100000 };
    size_t cap = (size_t)N * 16 * 2;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len, "2024-01-01,%d,T_X-%d\n", i % 48, i);
    for (int i = 0; i < 10; i++)
        len += (size_t)snprintf(text + len, cap - len, "2024-01-01,%d,T_X-%d\n", i * 997 % 48,
                                i * 997);
    long long line, of;
    assert_int_equal(scan(text, 4096, &line, &of), 10);
    assert_int_equal(line, N + 2);
    assert_int_equal(of, 2);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_repeats_and_names_the_first),
        cmocka_unit_test(test_line_endings_and_empty_lines),
        cmocka_unit_test(test_many_lines_grow_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
