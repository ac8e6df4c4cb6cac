/* fetch.h - many HTTP GETs at once, politely, with libcurl's multi API.
 *
 * For public sources (Elexon's settlement stacks: a hundred small GETs a
 * day). Requests run concurrently up to max_in_flight, and are started no
 * faster than per_minute. What a well-behaved client does with a flaky
 * public API is done here once, for every source:
 *   - HTTP 429: wait Retry-After (seconds; else wait_429_ms), and start
 *     nothing new meanwhile; then ask again (not counted as a retry, up to
 *     max_429 times).
 *   - HTTP 5xx, time-outs, refused or reset connections, a body shorter
 *     than its Content-Length: retried up to `retries` more times, waiting
 *     backoff_ms, doubling, up to 30 s.
 *   - Any other answer is final: 2xx and 404 come back with their body
 *     (what a 404 means is the caller's business); other statuses fail.
 * An item that failed has `error` set to one line naming the URL, the
 * reason and the attempts. Nothing here prints; no Lua in it.
 */
#ifndef QR_FETCH_H
#define QR_FETCH_H

#include <stddef.h>

#include "error.h"

/* Valid when zeroed: every 0 means the default shown. */
typedef struct qr_fetch_opts {
    int max_in_flight;  /* 16 */
    double per_minute;  /* 4000 (Elexon publishes 5000) */
    int timeout_ms;     /* 30000, one attempt */
    int retries;        /* 4 (-1: none) */
    int backoff_ms;     /* 500 */
    int wait_429_ms;    /* 60000 */
    int max_429;        /* 20 */
    size_t max_body;    /* 64 MiB */
} qr_fetch_opts;

typedef struct qr_fetch {
    const char *url; /* in */
    long status;     /* out: the final HTTP status, 0 when none came */
    char *body;      /* out: malloc'd, NUL-terminated, the caller frees; NULL on error */
    size_t len;
    int attempts;
    char error[600]; /* out: "" on success */
} qr_fetch;

/* Runs every GET to its end. Returns how many failed, or -1 with err when
 * libcurl cannot start at all. */
int qr_fetch_run(qr_fetch *items, int n, const qr_fetch_opts *opts, qr_error *err);

/* Seconds a Retry-After value asks for, or -1 (an HTTP date, garbage). */
int qr_fetch_retry_after(const char *value);

#endif
