/* tests for src/timing.c: histogram accuracy, percentiles, the registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "timing.h"

static void every_value_is_kept_within_two_percent(void **state)
{
    (void)state;
    qr_hist *h = qr_hist_new();
    assert_non_null(h);
    for (uint64_t v = 1; v < ((uint64_t)1 << 62); v = v * 3 + 7) {
        qr_hist_reset(h);
        qr_hist_record(h, v);
        qr_hist_record(h, v);
        uint64_t p = qr_hist_percentile(h, 50);
        double err = fabs((double)p - (double)v) / (double)v;
        assert_true(err <= 0.02);
        assert_true(p <= v); /* never above the maximum */
    }
    qr_hist_free(h);
}

static void percentiles_of_a_uniform_spread(void **state)
{
    (void)state;
    qr_hist *h = qr_hist_new();
    for (uint64_t i = 1; i <= 10000; i++) qr_hist_record(h, i * 1000); /* 1us..10ms */
    qr_hist_summary s;
    qr_hist_summarize(h, &s);
    assert_int_equal(s.count, 10000);
    assert_true(fabs(s.p50_ms - 5.0) / 5.0 < 0.02);
    assert_true(fabs(s.p95_ms - 9.5) / 9.5 < 0.02);
    assert_true(fabs(s.p99_ms - 9.9) / 9.9 < 0.02);
    assert_true(fabs(s.max_ms - 10.0) < 1e-9);
    assert_true(fabs(s.total_ms - 50005.0) < 1e-6);
    qr_hist_free(h);
}

static void an_empty_histogram_reads_zero(void **state)
{
    (void)state;
    qr_hist *h = qr_hist_new();
    assert_int_equal(qr_hist_percentile(h, 99), 0);
    qr_hist_record(h, 0);
    assert_int_equal(qr_hist_percentile(h, 50), 0);
    qr_hist_free(h);
}

static void *record_many(void *arg)
{
    for (int i = 0; i < 100000; i++) qr_hist_record(arg, (uint64_t)i);
    return NULL;
}

static void recording_from_threads_loses_nothing(void **state)
{
    (void)state;
    qr_hist *h = qr_hist_new();
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, record_many, h);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    qr_hist_summary s;
    qr_hist_summarize(h, &s);
    assert_int_equal(s.count, 400000);
    assert_true(fabs(s.max_ms - 99999 / 1e6) < 1e-12);
    qr_hist_free(h);
}

static void the_registry_names_histograms(void **state)
{
    (void)state;
    qr_timings *t = qr_timings_new();
    qr_hist *a = qr_timings_get(t, "daily");
    assert_ptr_equal(a, qr_timings_get(t, "daily"));
    assert_ptr_not_equal(a, qr_timings_get(t, "monthly"));
    for (int i = 0; i < 100; i++) { /* growth keeps earlier handles valid */
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        assert_non_null(qr_timings_get(t, name));
    }
    qr_hist_record(a, 5);
    assert_int_equal(qr_timings_count(t), 102);
    const char *name;
    qr_hist *h;
    assert_true(qr_timings_at(t, 0, &name, &h));
    assert_string_equal(name, "daily");
    assert_ptr_equal(h, a);
    assert_false(qr_timings_at(t, 102, &name, &h));
    qr_timings_reset(t);
    assert_int_equal(qr_hist_percentile(a, 50), 0);
    qr_timings_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_value_is_kept_within_two_percent),
        cmocka_unit_test(percentiles_of_a_uniform_spread),
        cmocka_unit_test(an_empty_histogram_reads_zero),
        cmocka_unit_test(recording_from_threads_loses_nothing),
        cmocka_unit_test(the_registry_names_histograms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
