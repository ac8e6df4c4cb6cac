/* fetch.c - see fetch.h. */
#include "fetch.h"

#include "timing.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MS 1000000ull
#define MAX_BACKOFF_MS 30000

typedef struct slot {
    qr_fetch *item;
    CURL *easy;
    char *buf;
    size_t len, cap;
    int too_big;
    int retry_after; /* seconds from the last answer's Retry-After, or -1 */
    int retried, waited_429;
    uint64_t not_before;
    int state; /* WAITING, RUNNING, DONE */
} slot;

enum { WAITING, RUNNING, DONE };

static int or_default(int v, int d)
{
    return v != 0 ? v : d;
}

int qr_fetch_retry_after(const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    if (!isdigit((unsigned char)*v)) return -1;
    long s = 0;
    for (; isdigit((unsigned char)*v); v++) {
        s = s * 10 + (*v - '0');
        if (s > 86400) return 86400;
    }
    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') v++;
    return *v ? -1 : (int)s;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    slot *s = arg;
    size_t add = size * n;
    if (s->len + add + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 16384;
        while (cap < s->len + add + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, add);
    s->len += add;
    s->buf[s->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    slot *s = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        char v[64];
        size_t vl = len - (sizeof name - 1);
        if (vl >= sizeof v) vl = sizeof v - 1;
        memcpy(v, p + sizeof name - 1, vl);
        v[vl] = '\0';
        s->retry_after = qr_fetch_retry_after(v);
    }
    return len;
}

static int transport_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static void reset_body(slot *s)
{
    s->len = 0;
    if (s->buf) s->buf[0] = '\0';
    s->retry_after = -1;
}

static int start(CURLM *m, slot *s, const qr_fetch_opts *o, qr_error *err)
{
    if (!s->easy) {
        s->easy = curl_easy_init();
        if (!s->easy) {
            qr_error_set(err, "connection", "cannot start libcurl");
            return -1;
        }
        curl_easy_setopt(s->easy, CURLOPT_URL, s->item->url);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
        curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->timeout_ms < 10000 ? o->timeout_ms : 10000));
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_ACCEPT_ENCODING, ""); /* what libcurl can decode */
        curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "quarry (curtailment analytics)");
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
        curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    reset_body(s);
    s->item->attempts++;
    if (curl_multi_add_handle(m, s->easy) != CURLM_OK) {
        qr_error_set(err, "connection", "cannot start a request to %s", s->item->url);
        return -1;
    }
    s->state = RUNNING;
    return 0;
}

static void finish_ok(slot *s, long status)
{
    qr_fetch *it = s->item;
    it->status = status;
    it->body = s->buf ? s->buf : calloc(1, 1);
    it->len = s->len;
    s->buf = NULL;
    s->len = s->cap = 0;
    it->error[0] = '\0';
    s->state = DONE;
}

static void finish_failed(slot *s, long status, const char *why)
{
    qr_fetch *it = s->item;
    it->status = status;
    snprintf(it->error, sizeof it->error, "GET %.300s: %.200s after %d attempt%s", it->url, why, it->attempts,
             it->attempts == 1 ? "" : "s");
    s->state = DONE;
}

/* An attempt ended: done, or when to ask again. *hold: start nothing before. */
static void ended(slot *s, CURLcode code, const qr_fetch_opts *o, uint64_t *hold)
{
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    uint64_t now = qr_now_ns();
    char why[300];
    int retry = 0;
    if (code == CURLE_OK && status == 429) {
        if (s->waited_429 >= o->max_429) {
            finish_failed(s, status, "HTTP 429 (rate limited), still");
            return;
        }
        s->waited_429++;
        uint64_t wait = s->retry_after >= 0 ? (uint64_t)s->retry_after * 1000 * MS : (uint64_t)o->wait_429_ms * MS;
        s->not_before = now + wait;
        if (s->not_before > *hold) *hold = s->not_before; /* the server asked everyone to slow down */
        s->state = WAITING;
        return;
    }
    if (code == CURLE_OK && ((status >= 200 && status < 300) || status == 404)) {
        finish_ok(s, status);
        return;
    }
    if (code == CURLE_OK) {
        snprintf(why, sizeof why, "HTTP %ld", status);
        retry = status >= 500;
    } else if (code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, sizeof why, "the answer is larger than %zu bytes", o->max_body);
    } else {
        snprintf(why, sizeof why, "%s", curl_easy_strerror(code));
        retry = transport_retryable(code);
    }
    if (!retry || s->retried >= o->retries) {
        finish_failed(s, code == CURLE_OK ? status : 0, why);
        return;
    }
    uint64_t backoff = (uint64_t)o->backoff_ms << (s->retried < 16 ? s->retried : 16);
    if (backoff > MAX_BACKOFF_MS) backoff = MAX_BACKOFF_MS;
    s->retried++;
    s->not_before = now + backoff * MS;
    s->state = WAITING;
}

int qr_fetch_run(qr_fetch *items, int n, const qr_fetch_opts *opts, qr_error *err)
{
    static int inited;
    if (!inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            qr_error_set(err, "connection", "cannot initialise libcurl");
            return -1;
        }
        inited = 1;
    }
    qr_fetch_opts o = opts ? *opts : (qr_fetch_opts){0};
    o.max_in_flight = or_default(o.max_in_flight, 16);
    if (!(o.per_minute > 0)) o.per_minute = 4000;
    o.timeout_ms = or_default(o.timeout_ms, 30000);
    o.retries = o.retries < 0 ? 0 : or_default(o.retries, 4);
    o.backoff_ms = or_default(o.backoff_ms, 500);
    o.wait_429_ms = or_default(o.wait_429_ms, 60000);
    o.max_429 = or_default(o.max_429, 20);
    if (!o.max_body) o.max_body = 64u << 20;
    for (int i = 0; i < n; i++) {
        items[i].status = 0;
        items[i].body = NULL;
        items[i].len = 0;
        items[i].attempts = 0;
        items[i].error[0] = '\0';
    }
    if (n == 0) return 0;
    slot *slots = calloc((size_t)n, sizeof *slots);
    CURLM *m = curl_multi_init();
    if (!slots || !m) {
        free(slots);
        if (m) curl_multi_cleanup(m);
        qr_error_set(err, "connection", "out of memory");
        return -1;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o.max_in_flight);
    for (int i = 0; i < n; i++) {
        slots[i].item = &items[i];
        slots[i].retry_after = -1;
    }
    uint64_t gap = (uint64_t)(60e9 / o.per_minute); /* between two starts */
    uint64_t next_start = 0, hold = 0;
    int running = 0, done = 0, rc = 0;
    while (done < n) {
        uint64_t now = qr_now_ns();
        uint64_t wake = now + 100 * MS;
        for (int i = 0; i < n && running < o.max_in_flight; i++) {
            slot *s = &slots[i];
            if (s->state != WAITING) continue;
            uint64_t at = s->not_before;
            if (at < hold) at = hold;
            if (at < next_start) at = next_start;
            if (at > now) {
                if (at < wake) wake = at;
                continue;
            }
            if (start(m, s, &o, err) != 0) {
                rc = -1;
                goto out;
            }
            running++;
            next_start = (next_start > now ? next_start : now) + gap;
        }
        int still = 0;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(m, s->easy);
            running--;
            ended(s, code, &o, &hold);
            if (s->state == DONE) {
                done++;
                if (s->item->error[0]) rc++;
                curl_easy_cleanup(s->easy);
                s->easy = NULL;
                free(s->buf);
                s->buf = NULL;
            }
        }
        if (done >= n) break;
        now = qr_now_ns();
        int ms = wake > now ? (int)((wake - now) / MS) + 1 : 0;
        if (ms > 100) ms = 100;
        curl_multi_poll(m, NULL, 0, running > 0 ? ms : (ms > 0 ? ms : 1), NULL);
    }
out:
    for (int i = 0; i < n; i++) {
        if (slots[i].easy) {
            curl_multi_remove_handle(m, slots[i].easy);
            curl_easy_cleanup(slots[i].easy);
        }
        free(slots[i].buf);
    }
    if (rc < 0)
        for (int i = 0; i < n; i++) {
            free(items[i].body);
            items[i].body = NULL;
        }
    free(slots);
    curl_multi_cleanup(m);
    return rc;
}
