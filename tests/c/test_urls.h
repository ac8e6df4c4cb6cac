/* For the C tests: the URLs of the services the test run started, read from
 * $QUARRY_HOME/urls (written by scripts/services.sh up). */
#ifndef QR_TEST_URLS_H
#define QR_TEST_URLS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy the value of `key` (e.g. "DATABASE_URL") into out; 0, or -1 if absent. */
static int test_url(const char *key, char *out, size_t cap)
{
    const char *home = getenv("QUARRY_HOME");
    char path[1024], line[2048];
    snprintf(path, sizeof path, "%s/urls", home ? home : ".");
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t klen = strlen(key);
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, cap, "%.*s", (int)(cap - 1), line + klen + 1);
        }
    }
    fclose(f);
    return out[0] ? 0 : -1;
}

#endif
