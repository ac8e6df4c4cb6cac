/* timing.c - see timing.h. */
#include "timing.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUB_BITS 5
#define SUB_COUNT (1u << SUB_BITS)                  /* 32 sub-buckets per octave */
#define BUCKETS ((64 - SUB_BITS + 1) * SUB_COUNT) /* 1920 */

struct qr_hist {
    _Atomic uint64_t count, total, max;
    _Atomic uint64_t buckets[BUCKETS];
};

uint64_t qr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB_COUNT) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    return (msb - SUB_BITS + 1) * SUB_COUNT + (unsigned)((v >> (msb - SUB_BITS)) & (SUB_COUNT - 1));
}

/* Lowest value and width of bucket i. */
static void bucket_range(unsigned i, uint64_t *low, uint64_t *width)
{
    if (i < SUB_COUNT) {
        *low = i;
        *width = 1;
        return;
    }
    unsigned octave = i / SUB_COUNT, sub = i % SUB_COUNT;
    unsigned shift = octave - 1; /* msb - SUB_BITS */
    *low = ((uint64_t)(SUB_COUNT + sub)) << shift;
    *width = (uint64_t)1 << shift;
}

qr_hist *qr_hist_new(void)
{
    return calloc(1, sizeof(qr_hist));
}

void qr_hist_free(qr_hist *h)
{
    free(h);
}

void qr_hist_reset(qr_hist *h)
{
    atomic_store_explicit(&h->count, 0, memory_order_relaxed);
    atomic_store_explicit(&h->total, 0, memory_order_relaxed);
    atomic_store_explicit(&h->max, 0, memory_order_relaxed);
    for (unsigned i = 0; i < BUCKETS; i++)
        atomic_store_explicit(&h->buckets[i], 0, memory_order_relaxed);
}

void qr_hist_record(qr_hist *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->buckets[bucket_of(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->total, ns, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);
    while (ns > max &&
           !atomic_compare_exchange_weak_explicit(&h->max, &max, ns, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

uint64_t qr_hist_percentile(const qr_hist *h, double p)
{
    uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (count == 0) return 0;
    uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);
    if (p <= 0) p = 0;
    if (p >= 100) return max;
    uint64_t rank = (uint64_t)((p / 100.0) * (double)count + 0.999999999);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (seen >= rank) {
            uint64_t low, width;
            bucket_range(i, &low, &width);
            uint64_t mid = low + width / 2;
            return mid > max ? max : mid;
        }
    }
    return max;
}

void qr_hist_summarize(const qr_hist *h, qr_hist_summary *out)
{
    out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
    out->total_ms = (double)atomic_load_explicit(&h->total, memory_order_relaxed) / 1e6;
    out->max_ms = (double)atomic_load_explicit(&h->max, memory_order_relaxed) / 1e6;
    out->p50_ms = (double)qr_hist_percentile(h, 50) / 1e6;
    out->p95_ms = (double)qr_hist_percentile(h, 95) / 1e6;
    out->p99_ms = (double)qr_hist_percentile(h, 99) / 1e6;
}

/* The registry: a small array searched linearly. The number of names is the
 * number of distinct statements and timed blocks in a run (tens), and lookups
 * of hot statements are cached by the caller, so a hash table would not pay. */
struct entry {
    char *name;
    qr_hist *hist;
};

struct qr_timings {
    pthread_mutex_t lock;
    struct entry *entries;
    size_t len, cap;
};

qr_timings *qr_timings_new(void)
{
    qr_timings *t = calloc(1, sizeof *t);
    if (t) pthread_mutex_init(&t->lock, NULL);
    return t;
}

void qr_timings_free(qr_timings *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->len; i++) {
        free(t->entries[i].name);
        qr_hist_free(t->entries[i].hist);
    }
    free(t->entries);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

qr_hist *qr_timings_get(qr_timings *t, const char *name)
{
    qr_hist *found = NULL;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len; i++) {
        if (strcmp(t->entries[i].name, name) == 0) {
            found = t->entries[i].hist;
            goto done;
        }
    }
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct entry *e = realloc(t->entries, cap * sizeof *e);
        if (!e) goto done;
        t->entries = e;
        t->cap = cap;
    }
    char *copy = strdup(name);
    qr_hist *h = qr_hist_new();
    if (!copy || !h) {
        free(copy);
        qr_hist_free(h);
        goto done;
    }
    t->entries[t->len++] = (struct entry){copy, h};
    found = h;
done:
    pthread_mutex_unlock(&t->lock);
    return found;
}

size_t qr_timings_count(qr_timings *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->len;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int qr_timings_at(qr_timings *t, size_t i, const char **name, qr_hist **h)
{
    int ok = 0;
    pthread_mutex_lock(&t->lock);
    if (i < t->len) {
        *name = t->entries[i].name;
        *h = t->entries[i].hist;
        ok = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

void qr_timings_reset(qr_timings *t)
{
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len; i++) qr_hist_reset(t->entries[i].hist);
    pthread_mutex_unlock(&t->lock);
}
