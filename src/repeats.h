/* repeats.h - lines of a text that repeat an earlier line exactly, found as
 * the text streams by in chunks of any size (a file on its way to COPY).
 * Two overlapping exports joined into one CSV repeat their shared rows: a
 * load counts them twice. Each line is kept as a 64-bit hash and its line
 * number (16 bytes a line), not its text, so a file of millions of lines
 * costs tens of MB at most and one pass over its bytes. A trailing \r is
 * not part of a line; empty lines are skipped.
 */
#ifndef QR_REPEATS_H
#define QR_REPEATS_H

#include <stddef.h>

typedef struct qr_repeats qr_repeats;

/* first_line: the number of the first line fed (2 after a header). NULL
 * when out of memory. */
qr_repeats *qr_repeats_new(long long first_line);
void qr_repeats_free(qr_repeats *r);

/* The next bytes of the text. -1 when out of memory (what was counted so
 * far stays). */
int qr_repeats_feed(qr_repeats *r, const char *buf, size_t len);

/* The end of the text: a last line without a newline counts too. */
int qr_repeats_finish(qr_repeats *r);

/* How many lines repeat an earlier one; of the first of them, its number
 * and that of the line it repeats (0 when none). */
long long qr_repeats_count(const qr_repeats *r, long long *line, long long *of);

#endif
