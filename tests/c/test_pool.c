/* tests for src/pool.c against the real PostgreSQL the test run started
 * ($QUARRY_HOME/urls holds its URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "test_urls.h"
#include "tx.h"

static char database_url[1200];

static int load_url(void **state)
{
    (void)state;
    return test_url("DATABASE_URL", database_url, sizeof database_url);
}

static qr_pool *new_pool(int max, int timeout_ms)
{
    qr_pool_options o = {.conninfo = database_url, .max_size = max,
                         .connect_timeout_ms = timeout_ms};
    qr_pool *p = qr_pool_new(&o);
    assert_non_null(p);
    return p;
}

static int backend_pid(qr_conn *c)
{
    return PQbackendPID(qr_conn_pg(c));
}

static void opens_lazily_and_reuses(void **state)
{
    (void)state;
    qr_pool *p = new_pool(3, 5000);
    qr_pool_stats s;
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.total, 0);
    qr_error err;
    qr_conn *a;
    assert_int_equal(qr_pool_acquire(p, "test", &a, &err), 0);
    int pid = backend_pid(a);
    qr_pool_release(p, a);
    assert_int_equal(qr_pool_acquire(p, "test", &a, &err), 0);
    assert_int_equal(backend_pid(a), pid);
    qr_pool_release(p, a);
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.idle, 1);
    qr_pool_free(p);
}

static void exhausted_acquire_times_out_with_the_state(void **state)
{
    (void)state;
    qr_pool *p = new_pool(2, 300);
    qr_error err;
    qr_conn *a, *b, *c;
    assert_int_equal(qr_pool_acquire(p, NULL, &a, &err), 0);
    assert_int_equal(qr_pool_acquire(p, NULL, &b, &err), 0);
    uint64_t t0 = qr_now_ns();
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), -1);
    uint64_t ms = (qr_now_ns() - t0) / 1000000;
    assert_true(ms >= 295 && ms < 400);
    assert_string_equal(err.code, "timeout");
    assert_non_null(strstr(err.message, "pool size 2 of 2, 2 in use, 0 idle"));
    qr_pool_release(p, a);
    qr_pool_release(p, b);
    qr_pool_stats s;
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.in_use, 0);
    qr_pool_free(p);
}

struct worker {
    qr_pool *p;
    int failures;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 300; i++) {
        qr_error err;
        qr_conn *c;
        if (qr_pool_acquire(w->p, "thread", &c, &err) != 0) {
            w->failures++;
            continue;
        }
        qr_stmt *st = qr_pool_stmt(w->p, "SELECT $1::int", 14);
        const char *v[] = {"7"};
        PGresult *r = qr_conn_exec(c, st, NULL, 1, v, NULL, &err);
        if (!r || strcmp(PQgetvalue(r, 0, 0), "7") != 0) w->failures++;
        PQclear(r);
        qr_pool_release(w->p, c);
    }
    return NULL;
}

static void many_threads_share_a_small_pool(void **state)
{
    (void)state;
    qr_pool *p = new_pool(3, 10000);
    struct worker w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){p, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    qr_pool_stats s;
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.in_use, 0);
    assert_true(s.total <= 3);
    assert_int_equal(s.closed_idle, 0);
    assert_true(s.created <= 3);
    assert_int_equal(s.acquired, 2400);
    qr_pool_free(p);
}

static void a_connection_returned_in_a_transaction_is_rolled_back(void **state)
{
    (void)state;
    qr_pool *p = new_pool(1, 5000);
    qr_error err;
    qr_conn *c;
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), 0);
    assert_int_equal(qr_tx_begin(c, NULL, &err), 0);
    assert_int_equal(qr_conn_command(c, "CREATE TEMP TABLE pool_giveback (a int)", &err), 0);
    qr_pool_release(p, c);
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), 0);
    assert_int_equal(PQtransactionStatus(qr_conn_pg(c)), PQTRANS_IDLE);
    assert_int_equal(qr_tx_depth(c), 0);
    PGresult *r = qr_conn_exec(c, NULL, "SELECT to_regclass('pg_temp.pool_giveback') IS NULL", 0,
                               NULL, NULL, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    qr_pool_release(p, c);
    qr_pool_free(p);
}

static void a_terminated_idle_connection_is_replaced(void **state)
{
    (void)state;
    qr_pool_options o = {.conninfo = database_url, .max_size = 2, .validate_after_ms = 1};
    qr_pool *p = qr_pool_new(&o);
    qr_error err;
    qr_conn *victim, *killer;
    assert_int_equal(qr_pool_acquire(p, NULL, &victim, &err), 0);
    assert_int_equal(qr_pool_acquire(p, NULL, &killer, &err), 0);
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", backend_pid(victim));
    int dead = backend_pid(victim);
    qr_pool_release(p, victim);
    assert_int_equal(qr_conn_command(killer, sql, &err), 0);
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    qr_conn *c;
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), 0);
    assert_int_not_equal(backend_pid(c), dead);
    assert_int_equal(qr_conn_command(c, "SELECT 1", &err), 0);
    qr_pool_release(p, c);
    qr_pool_release(p, killer);
    qr_pool_stats s;
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.closed_broken, 1);
    qr_pool_free(p);
}

static void an_unreachable_server_fails_fast_naming_host_and_port(void **state)
{
    (void)state;
    qr_pool_options o = {.conninfo = "postgresql://u:pw@127.0.0.1:1/x", .connect_timeout_ms = 2000};
    qr_pool *p = qr_pool_new(&o);
    qr_error err;
    qr_conn *c = NULL;
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.code, "connection");
    assert_non_null(strstr(err.message, "127.0.0.1:1"));
    assert_null(strstr(err.message, "pw@"));
    qr_pool_stats s;
    qr_pool_stats_get(p, &s);
    assert_int_equal(s.total, 0);
    qr_pool_free(p);
}

static void the_pool_outlives_a_held_connection(void **state)
{
    (void)state;
    qr_pool *p = new_pool(1, 5000);
    qr_error err;
    qr_conn *c;
    assert_int_equal(qr_pool_acquire(p, NULL, &c, &err), 0);
    qr_pool_free(p); /* freed for real once c comes back */
    assert_int_equal(qr_conn_command(c, "SELECT 1", &err), 0);
    qr_pool_release(p, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens_lazily_and_reuses),
        cmocka_unit_test(exhausted_acquire_times_out_with_the_state),
        cmocka_unit_test(many_threads_share_a_small_pool),
        cmocka_unit_test(a_connection_returned_in_a_transaction_is_rolled_back),
        cmocka_unit_test(a_terminated_idle_connection_is_replaced),
        cmocka_unit_test(an_unreachable_server_fails_fast_naming_host_and_port),
        cmocka_unit_test(the_pool_outlives_a_held_connection),
    };
    return cmocka_run_group_tests(tests, load_url, NULL);
}
