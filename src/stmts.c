/* stmts.c - see stmts.h. */
#include "stmts.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A pool never needs more distinct prepared statements than this; SQL beyond
 * it (generated text that never repeats) runs unprepared, so memory on both
 * sides stays bounded. */
#define STMTS_CAP 4096

struct qr_stmts {
    pthread_mutex_t lock;
    qr_timings *timings;
    qr_stmt **slots; /* open addressing by hash of the SQL */
    size_t nslots, count;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

qr_stmts *qr_stmts_new(qr_timings *timings)
{
    qr_stmts *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->nslots = 8192; /* power of two, twice STMTS_CAP: probes stay short */
    s->slots = calloc(s->nslots, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    s->timings = timings;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void qr_stmts_free(qr_stmts *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nslots; i++) {
        if (!s->slots[i]) continue;
        free(s->slots[i]->sql);
        free(s->slots[i]->fingerprint);
        free(atomic_load(&s->slots[i]->params));
        free(s->slots[i]);
    }
    free(s->slots);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

qr_stmt *qr_stmts_get(qr_stmts *s, const char *sql, size_t len)
{
    uint64_t h = hash_bytes(sql, len);
    qr_stmt *found = NULL;
    pthread_mutex_lock(&s->lock);
    size_t i = (size_t)h & (s->nslots - 1);
    for (; s->slots[i]; i = (i + 1) & (s->nslots - 1)) {
        qr_stmt *st = s->slots[i];
        if (st->len == len && memcmp(st->sql, sql, len) == 0) {
            found = st;
            goto done;
        }
    }
    if (s->count >= STMTS_CAP) goto done;
    qr_stmt *st = calloc(1, sizeof *st);
    char fp[101];
    qr_sql_fingerprint(sql, len, fp, sizeof fp);
    if (st) {
        st->sql = strndup(sql, len);
        st->len = len;
        st->simple = qr_sql_is_script(sql, len);
        st->fingerprint = strdup(fp);
        st->hist = s->timings ? qr_timings_get(s->timings, fp) : NULL;
    }
    if (!st || !st->sql || !st->fingerprint || (s->timings && !st->hist)) {
        if (st) {
            free(st->sql);
            free(st->fingerprint);
            free(st);
        }
        goto done;
    }
    st->id = (unsigned)s->count++;
    s->slots[i] = st;
    found = st;
done:
    pthread_mutex_unlock(&s->lock);
    return found;
}
