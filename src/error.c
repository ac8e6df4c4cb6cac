/* error.c - see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void qr_error_clear(qr_error *e)
{
    memset(e, 0, sizeof *e);
}

void qr_error_set(qr_error *e, const char *code, const char *fmt, ...)
{
    qr_error_clear(e);
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}
