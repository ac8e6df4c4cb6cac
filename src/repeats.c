/* repeats.c - see repeats.h. FNV-1a, because it hashes a line a byte at a
 * time: a line split across two chunks hashes as if it came whole, with no
 * copy of its start kept. Open addressing, doubled at half full. */
#include "repeats.h"

#include <stdint.h>
#include <stdlib.h>

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

struct slot {
    uint64_t hash; /* 0: empty (a line hashing to 0 is stored as 1) */
    long long line;
};

struct qr_repeats {
    struct slot *slots;
    size_t cap, used; /* cap: a power of two */
    uint64_t h;       /* the line so far */
    size_t len;       /* its bytes, a held \r not among them */
    int cr;           /* a \r seen last: the line's end, or part of it */
    long long line;   /* the number of the line being read */
    long long count, first, first_of;
};

qr_repeats *qr_repeats_new(long long first_line)
{
    qr_repeats *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cap = 1024;
    r->slots = calloc(r->cap, sizeof *r->slots);
    if (!r->slots) {
        free(r);
        return NULL;
    }
    r->h = FNV_OFFSET;
    r->line = first_line;
    return r;
}

void qr_repeats_free(qr_repeats *r)
{
    if (!r) return;
    free(r->slots);
    free(r);
}

/* The slot of hash h: where it is, or the empty one where it would go. */
static struct slot *find(struct slot *slots, size_t cap, uint64_t h)
{
    size_t i = (size_t)(h ^ (h >> 32)) & (cap - 1);
    while (slots[i].hash && slots[i].hash != h)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(qr_repeats *r)
{
    size_t cap = r->cap * 2;
    struct slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i].hash) *find(slots, cap, r->slots[i].hash) = r->slots[i];
    }
    free(r->slots);
    r->slots = slots;
    r->cap = cap;
    return 0;
}

/* The line read so far is whole: look it up, then start the next. */
static int end_line(qr_repeats *r)
{
    int rc = 0;
    if (r->len > 0) {
        uint64_t h = r->h ? r->h : 1;
        struct slot *s = find(r->slots, r->cap, h);
        if (s->hash) {
            if (r->count++ == 0) {
                r->first = r->line;
                r->first_of = s->line;
            }
        } else if (r->used + 1 > r->cap / 2 && grow(r) != 0) {
            rc = -1;
        } else {
            s = find(r->slots, r->cap, h); /* where it goes after growing */
            s->hash = h;
            s->line = r->line;
            r->used++;
        }
    }
    r->line++;
    r->h = FNV_OFFSET;
    r->len = 0;
    r->cr = 0;
    return rc;
}

static void add(qr_repeats *r, unsigned char c)
{
    r->h = (r->h ^ c) * FNV_PRIME;
    r->len++;
}

int qr_repeats_feed(qr_repeats *r, const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c == '\n') {
            if (end_line(r) != 0) return -1;
            continue;
        }
        if (r->cr) { /* the \r held back was inside the line */
            add(r, '\r');
            r->cr = 0;
        }
        if (c == '\r') {
            r->cr = 1;
        } else {
            add(r, c);
        }
    }
    return 0;
}

int qr_repeats_finish(qr_repeats *r)
{
    return r->len > 0 ? end_line(r) : 0;
}

long long qr_repeats_count(const qr_repeats *r, long long *line, long long *of)
{
    if (line) *line = r->count ? r->first : 0;
    if (of) *of = r->count ? r->first_of : 0;
    return r->count;
}
