/* bench_core: the physical limits quarry is measured against, and the C
 * core's own costs. Prints "name value unit" lines for bench/run.sh.
 *
 *   bench_core DATABASE_URL ROUNDS
 *
 * raw_rtt_us       median round trip of SELECT $1::int through bare libpq
 *                  (prepared once, text parameters: what quarry sends)
 * pool_rtt_us      the same query through qr_pool acquire/exec/release
 * acquire_ns       mean warm acquire+release of the pool, no I/O
 * fresh_conn_us    median connect + query + close per query (no pool)
 * hist_record_ns   mean qr_hist_record
 *
 *   bench_core --redis REDIS_URL KEY ROUNDS
 *
 * raw_get_us       median GET of KEY through bare hiredis (the physical limit
 *                  of a cache hit)
 */
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "pool.h"
#include "timing.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_us(uint64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof *ns, cmp_u64);
    return (double)ns[n / 2] / 1000.0;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_core: %s: %s\n", what, why);
    exit(1);
}

static double raw_rtt(const char *url, int rounds, uint64_t *ns)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) die("connect", PQerrorMessage(c));
    PGresult *r = PQprepare(c, "q", "SELECT $1::int AS v", 0, NULL);
    PQclear(r);
    char buf[16];
    for (int i = 0; i < rounds; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        const char *v[] = {buf};
        uint64_t t0 = qr_now_ns();
        r = PQexecPrepared(c, "q", 1, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || atoi(PQgetvalue(r, 0, 0)) != i)
            die("raw query", PQerrorMessage(c));
        PQclear(r);
        ns[i] = qr_now_ns() - t0;
    }
    PQfinish(c);
    return median_us(ns, rounds);
}

static double pool_rtt(qr_pool *p, int rounds, uint64_t *ns)
{
    const char *sql = "SELECT $1::int AS v";
    char buf[16];
    qr_error err;
    for (int i = 0; i < rounds; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        const char *v[] = {buf};
        uint64_t t0 = qr_now_ns();
        qr_conn *c;
        if (qr_pool_acquire(p, NULL, &c, &err) != 0) die("acquire", err.message);
        qr_stmt *st = qr_pool_stmt(p, sql, strlen(sql));
        PGresult *r = qr_conn_exec(c, st, sql, 1, v, NULL, &err);
        qr_pool_release(p, c);
        if (!r || atoi(PQgetvalue(r, 0, 0)) != i) die("pool query", err.message);
        PQclear(r);
        ns[i] = qr_now_ns() - t0;
    }
    return median_us(ns, rounds);
}

static double acquire_release(qr_pool *p, int n)
{
    qr_error err;
    qr_conn *c;
    uint64_t t0 = qr_now_ns();
    for (int i = 0; i < n; i++) {
        if (qr_pool_acquire(p, "bench", &c, &err) != 0) die("acquire", err.message);
        qr_pool_release(p, c);
    }
    return (double)(qr_now_ns() - t0) / n;
}

static double fresh_conn(const char *url, int rounds, uint64_t *ns)
{
    for (int i = 0; i < rounds; i++) {
        uint64_t t0 = qr_now_ns();
        PGconn *c = PQconnectdb(url);
        if (PQstatus(c) != CONNECTION_OK) die("connect", PQerrorMessage(c));
        const char *v[] = {"1"};
        PGresult *r = PQexecParams(c, "SELECT $1::int AS v", 1, NULL, v, NULL, NULL, 0);
        PQclear(r);
        PQfinish(c);
        ns[i] = qr_now_ns() - t0;
    }
    return median_us(ns, rounds);
}

static double hist_record(int n)
{
    qr_hist *h = qr_hist_new();
    uint64_t t0 = qr_now_ns();
    for (int i = 0; i < n; i++) qr_hist_record(h, (uint64_t)i * 7919u);
    double per = (double)(qr_now_ns() - t0) / n;
    if (qr_hist_percentile(h, 50) == 0) die("histogram", "empty");
    qr_hist_free(h);
    return per;
}

static int redis_get(const char *url, const char *key, int rounds)
{
    qr_redis_addr a;
    qr_error err;
    if (qr_redis_parse_url(url, &a, &err) != 0) die("redis url", err.message);
    redisContext *c = a.path ? redisConnectUnix(a.path) : redisConnect(a.host, a.port);
    if (!c || c->err) die("redis connect", c ? c->errstr : "out of memory");
    uint64_t *ns = calloc((size_t)rounds, sizeof *ns);
    size_t len = 0;
    for (int warm = 0; warm < 2; warm++) {
        for (int i = 0; i < rounds; i++) {
            uint64_t t0 = qr_now_ns();
            redisReply *r = redisCommand(c, "GET %s", key);
            if (!r || r->type != REDIS_REPLY_STRING) die("GET", "no such key");
            len = r->len;
            freeReplyObject(r);
            ns[i] = qr_now_ns() - t0;
        }
    }
    printf("raw_get_us %.2f us\nvalue_bytes %zu bytes\n", median_us(ns, rounds), len);
    free(ns);
    redisFree(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--redis") == 0) return redis_get(argv[2], argv[3], atoi(argv[4]));
    if (argc < 3) {
        fprintf(stderr, "usage: bench_core DATABASE_URL ROUNDS\n");
        return 2;
    }
    const char *url = argv[1];
    int rounds = atoi(argv[2]);
    uint64_t *ns = calloc((size_t)rounds, sizeof *ns);
    qr_pool_options o = {.conninfo = url, .max_size = 4};
    qr_pool *p = qr_pool_new(&o);
    if (!ns || !p) die("setup", "out of memory");

    raw_rtt(url, rounds / 10 + 1, ns); /* warm the server's caches */
    printf("raw_rtt_us %.2f us\n", raw_rtt(url, rounds, ns));
    pool_rtt(p, rounds / 10 + 1, ns);
    printf("pool_rtt_us %.2f us\n", pool_rtt(p, rounds, ns));
    printf("acquire_ns %.1f ns\n", acquire_release(p, 2000000));
    int fresh = rounds / 20 < 200 ? 200 : rounds / 20;
    printf("fresh_conn_us %.2f us\n", fresh_conn(url, fresh, ns));
    printf("hist_record_ns %.2f ns\n", hist_record(20000000));
    qr_pool_free(p);
    free(ns);
    return 0;
}
