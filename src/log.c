/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = QR_LOG_INFO;
static atomic_int log_json = 0;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void qr_log_set_level(qr_log_level level)
{
    atomic_store(&log_level, (int)level);
}

qr_log_level qr_log_get_level(void)
{
    return (qr_log_level)atomic_load(&log_level);
}

void qr_log_set_json(int json)
{
    atomic_store(&log_json, json != 0);
}

int qr_log_get_json(void)
{
    return atomic_load(&log_json);
}

int qr_log_level_parse(const char *name)
{
    for (int i = 0; i <= QR_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return QR_LOG_WARN;
    return -1;
}

const char *qr_log_level_name(qr_log_level level)
{
    return (level >= QR_LOG_DEBUG && level <= QR_LOG_OFF) ? level_names[level] : "?";
}

/* Append s to buf as the inside of a JSON string, escaping what JSON needs. */
static size_t json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c == '\n') {
            buf[pos++] = '\\';
            buf[pos++] = 'n';
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

void qr_log_write(qr_log_level level, const char *module, const char *msg, const char *context)
{
    if (level < qr_log_get_level() || level >= QR_LOG_OFF) return;

    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);

    char line[8192];
    size_t pos;
    const size_t cap = sizeof line - 2;
    if (!module) module = "quarry";
    if (qr_log_get_json()) {
        pos = (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"", ts,
                               qr_log_level_name(level));
        pos = json_escape(line, pos, cap, module);
        pos += (size_t)snprintf(line + pos, cap - pos, "\",\"msg\":\"");
        pos = json_escape(line, pos, cap, msg ? msg : "");
        if (pos < cap) pos += (size_t)snprintf(line + pos, cap - pos, "\"");
        if (context && *context && pos < cap)
            pos += (size_t)snprintf(line + pos, cap - pos, ",\"context\":%s", context);
        if (pos < cap) pos += (size_t)snprintf(line + pos, cap - pos, "}");
    } else {
        pos = (size_t)snprintf(line, cap, "%s %-5s [%s] %s%s%s", ts, qr_log_level_name(level),
                               module, msg ? msg : "", context && *context ? " " : "",
                               context ? context : "");
    }
    if (pos > cap) pos = cap;
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w; /* nowhere left to report a failed log write */
}

void qr_log(qr_log_level level, const char *module, const char *fmt, ...)
{
    if (level < qr_log_get_level()) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    qr_log_write(level, module, msg, NULL);
}
