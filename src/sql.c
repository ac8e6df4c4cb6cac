/* sql.c - see sql.h. */
#include "sql.h"

#include <ctype.h>
#include <string.h>

void qr_sql_fingerprint(const char *sql, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)sql[i];
        if (isspace(ch)) {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < cap) out[o++] = ' ';
        space = 0;
        if (ch == '\'') { /* string literal -> ? */
            for (i++; i < len; i++)
                if (sql[i] == '\'' && !(i + 1 < len && sql[i + 1] == '\'' && ++i)) break;
            out[o++] = '?';
        } else if (isdigit(ch) && !(o > 0 && (isalnum((unsigned char)out[o - 1]) ||
                                             out[o - 1] == '_' || out[o - 1] == '$'))) {
            while (i + 1 < len && (isdigit((unsigned char)sql[i + 1]) || sql[i + 1] == '.' ||
                                   ((sql[i + 1] == 'e' || sql[i + 1] == 'E') && i + 2 < len &&
                                    (isdigit((unsigned char)sql[i + 2]) || sql[i + 2] == '-' ||
                                     sql[i + 2] == '+'))))
                i += (sql[i + 1] == 'e' || sql[i + 1] == 'E') ? 2 : 1;
            out[o++] = '?';
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

/* Does sql hold more than one statement? A ';' outside quotes, comments and
 * dollar-quoted bodies followed by more than blanks says so. Such a script
 * cannot be prepared, and a failed PREPARE would abort an open transaction,
 * so it is recognised here, before it reaches the server. */
static int is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

int qr_sql_is_script(const char *s, size_t n)
{
    int after_semicolon = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (isspace((unsigned char)c)) continue;
        if (c == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n') i++;
            continue;
        }
        if (c == '/' && i + 1 < n && s[i + 1] == '*') { /* comments nest in PostgreSQL */
            int depth = 1;
            for (i += 2; i < n && depth > 0; i++) {
                if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') depth++, i++;
                else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/') depth--, i++;
            }
            i--;
            continue;
        }
        if (after_semicolon) return 1;
        if (c == ';') {
            after_semicolon = 1;
        } else if (c == '\'') {
            int backslash = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
            for (i++; i < n; i++) {
                if (backslash && s[i] == '\\') i++;
                else if (s[i] == '\'' && i + 1 < n && s[i + 1] == '\'') i++;
                else if (s[i] == '\'') break;
            }
        } else if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
            }
        } else if (c == '$' && !(i > 0 && is_ident(s[i - 1]))) {
            size_t t = i + 1;
            while (t < n && is_ident(s[t]) && !(t == i + 1 && isdigit((unsigned char)s[t]))) t++;
            if (t < n && s[t] == '$') { /* $tag$ ... $tag$ */
                size_t taglen = t - i + 1;
                size_t j = t + 1;
                while (j + taglen <= n && memcmp(s + j, s + i, taglen) != 0) j++;
                i = j + taglen <= n ? j + taglen - 1 : n;
            }
        }
    }
    return 0;
}

/* Index of the first byte at or after i that is not a blank or inside a
 * comment. */
static size_t skip_blank(const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (isspace((unsigned char)s[i])) {
            i++;
        } else if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n') i++;
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            int depth = 1;
            for (i += 2; i < n && depth > 0; i++) {
                if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') depth++, i++;
                else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/') depth--, i++;
            }
        } else {
            break;
        }
    }
    return i;
}

void qr_sql_first_word(const char *s, size_t n, char *out, size_t cap)
{
    size_t i = skip_blank(s, n, 0), o = 0;
    while (i < n && s[i] == '(') i = skip_blank(s, n, i + 1);
    while (i < n && is_ident(s[i]) && o + 1 < cap) out[o++] = (char)tolower((unsigned char)s[i++]);
    if (cap > 0) out[o] = '\0';
}

int qr_sql_reads_only(const char *sql, size_t len)
{
    static const char *const reading[] = {"select", "with", "values", "table", "show", "explain", NULL};
    char w[16];
    qr_sql_first_word(sql, len, w, sizeof w);
    for (int i = 0; reading[i]; i++)
        if (strcmp(w, reading[i]) == 0) return 1;
    return 0;
}
