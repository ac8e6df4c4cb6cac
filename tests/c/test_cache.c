/* tests for src/cache.c: URL parsing, failing fast, binary-safe commands
 * against the real Redis the test run started ($QUARRY_HOME/urls). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "test_urls.h"
#include "timing.h"

static char redis_url[1400];

static int load_url(void **state)
{
    (void)state;
    return test_url("REDIS_URL", redis_url, sizeof redis_url);
}

static void parses_the_url_forms(void **state)
{
    (void)state;
    qr_redis_addr a;
    qr_error err;
    assert_int_equal(qr_redis_parse_url("redis://localhost", &a, &err), 0);
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 0);
    assert_null(a.password);

    assert_int_equal(qr_redis_parse_url("redis://:p%40ss:w@cache.example:6380/3", &a, &err), 0);
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 3);
    assert_string_equal(a.password, "p@ss:w");
    assert_null(a.user);

    assert_int_equal(qr_redis_parse_url("redis://analyst:secret@10.0.0.1/2", &a, &err), 0);
    assert_string_equal(a.user, "analyst");
    assert_string_equal(a.password, "secret");
    assert_int_equal(a.db, 2);

    assert_int_equal(qr_redis_parse_url("redis://cache.example:6380?db=4", &a, &err), 0);
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 4);

    assert_int_equal(qr_redis_parse_url("unix:///run/redis.sock?db=5", &a, &err), 0);
    assert_string_equal(a.path, "/run/redis.sock");
    assert_int_equal(a.db, 5);

    const char *bad[] = {"", "http://x", "redis://", "redis://host:0", "redis://host:99999",
                         "redis://host/x", "unix://relative", "unix:///s?db=x", "redis://host?db=",
                         "redis://host?x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(qr_redis_parse_url(bad[i], &a, &err), -1);
        assert_string_equal(err.code, "usage");
    }
}

static void fails_fast_while_redis_is_down(void **state)
{
    (void)state;
    qr_error err;
    qr_cache_options o = {.url = "redis://:pw@127.0.0.1:1/0", .backoff_min_ms = 200};
    qr_cache *c = qr_cache_new(&o, &err);
    assert_non_null(c);
    const char *argv[] = {"GET", "k"};
    uint64_t t0 = qr_now_ns();
    assert_null(qr_cache_command(c, 2, argv, NULL, &err));
    assert_string_equal(err.code, "connection");
    assert_null(strstr(err.message, "pw"));
    for (int i = 0; i < 1000; i++) assert_null(qr_cache_command(c, 2, argv, NULL, &err));
    assert_true(qr_now_ns() - t0 < 150 * 1000000ull); /* no connection attempt in the backoff */
    qr_cache_stats s;
    qr_cache_stats_get(c, &s);
    assert_int_equal(s.outages, 1);
    assert_int_equal(s.errors, 1001);
    assert_int_equal(s.up, 0);
    qr_cache_free(c);
}

static void commands_are_binary_safe(void **state)
{
    (void)state;
    qr_error err;
    qr_cache_options o = {.url = redis_url};
    qr_cache *c = qr_cache_new(&o, &err);
    assert_non_null(c);
    char key[] = "test_cache:\0key", value[256];
    for (int i = 0; i < 256; i++) value[i] = (char)i;
    const char *set[] = {"SET", key, value};
    size_t set_lens[] = {3, sizeof key - 1, sizeof value};
    redisReply *r = qr_cache_command(c, 3, set, set_lens, &err);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    const char *get[] = {"GET", key};
    size_t get_lens[] = {3, sizeof key - 1};
    r = qr_cache_command(c, 2, get, get_lens, &err);
    assert_non_null(r);
    assert_int_equal(r->len, sizeof value);
    assert_memory_equal(r->str, value, sizeof value);
    freeReplyObject(r);
    const char *del[] = {"DEL", key};
    r = qr_cache_command(c, 2, del, get_lens, &err);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    qr_cache_stats s;
    qr_cache_stats_get(c, &s);
    assert_int_equal(s.up, 1);
    assert_int_equal(s.connects, 1);
    qr_cache_free(c);
}

static void pipelines_in_one_round_trip(void **state)
{
    (void)state;
    qr_error err;
    qr_cache_options o = {.url = redis_url};
    qr_cache *c = qr_cache_new(&o, &err);
    const char *a[] = {"SET", "test_cache:p", "1"}, *b[] = {"INCR", "test_cache:p"},
               *d[] = {"DEL", "test_cache:p"};
    const char *const *argvs[] = {a, b, d};
    const size_t *lens[] = {NULL, NULL, NULL};
    int argcs[] = {3, 2, 2};
    redisReply *replies[3];
    assert_int_equal(qr_cache_pipeline(c, 3, argcs, argvs, lens, replies, &err), 0);
    assert_int_equal(replies[1]->integer, 2);
    assert_int_equal(replies[2]->integer, 1);
    for (int i = 0; i < 3; i++) freeReplyObject(replies[i]);
    qr_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_the_url_forms),
        cmocka_unit_test(fails_fast_while_redis_is_down),
        cmocka_unit_test(commands_are_binary_safe),
        cmocka_unit_test(pipelines_in_one_round_trip),
    };
    return cmocka_run_group_tests(tests, load_url, NULL);
}
