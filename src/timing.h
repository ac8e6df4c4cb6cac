/* timing.h - latency histograms in constant memory.
 *
 * qr_hist is log-linear (HdrHistogram's idea): 32 linear sub-buckets in every
 * power of two of nanoseconds, so any value from 1 ns to 2^64 ns is kept with
 * a relative error under 1.6% (bucket midpoints) in a fixed 15 KB. Recording
 * is lock-free (relaxed atomics): any thread may record while another reads;
 * a reader sees each counter whole, not all counters at one instant.
 *
 * qr_timings is a registry of named histograms, thread-safe, owned by whoever
 * made it; histograms it hands out live until qr_timings_free.
 */
#ifndef QR_TIMING_H
#define QR_TIMING_H

#include <stddef.h>
#include <stdint.h>

typedef struct qr_hist qr_hist;
typedef struct qr_timings qr_timings;

/* Monotonic clock in nanoseconds. */
uint64_t qr_now_ns(void);

qr_hist *qr_hist_new(void); /* NULL when out of memory */
void qr_hist_free(qr_hist *h);
void qr_hist_reset(qr_hist *h);
void qr_hist_record(qr_hist *h, uint64_t ns);

typedef struct qr_hist_summary {
    uint64_t count;
    double total_ms, p50_ms, p95_ms, p99_ms, max_ms;
} qr_hist_summary;

/* Percentile p in [0, 100] in nanoseconds (a bucket midpoint, never above the
 * maximum recorded); 0 for an empty histogram. */
uint64_t qr_hist_percentile(const qr_hist *h, double p);
void qr_hist_summarize(const qr_hist *h, qr_hist_summary *out);

qr_timings *qr_timings_new(void);
void qr_timings_free(qr_timings *t);
/* The histogram called name, made on first use; NULL only when out of memory. */
qr_hist *qr_timings_get(qr_timings *t, const char *name);
/* Histograms are never removed, so index i in [0, qr_timings_count) stays
 * valid and so do the name and histogram handed out; callers may therefore
 * walk the registry without holding any lock of theirs. 0 past the end. */
size_t qr_timings_count(qr_timings *t);
int qr_timings_at(qr_timings *t, size_t i, const char **name, qr_hist **h);
void qr_timings_reset(qr_timings *t);

#endif
