/* log.h - one line per event on stderr, as text or JSON.
 *
 * Process-wide: level and format are set once by the host (atomics, so any
 * thread may log). Each call writes one whole line with a single write(2), so
 * lines from several threads or processes never interleave.
 */
#ifndef QR_LOG_H
#define QR_LOG_H

typedef enum { QR_LOG_DEBUG = 0, QR_LOG_INFO, QR_LOG_WARN, QR_LOG_ERROR, QR_LOG_OFF } qr_log_level;

void qr_log_set_level(qr_log_level level);
qr_log_level qr_log_get_level(void);
void qr_log_set_json(int json);
int qr_log_get_json(void);

/* Parse "debug" / "info" / "warn" / "error" / "off"; -1 when unknown. */
int qr_log_level_parse(const char *name);
const char *qr_log_level_name(qr_log_level level);

/* Log msg from module. context is an already formatted fragment or NULL: a
 * JSON object text ("{...}") in JSON mode, "k=v k=v" text otherwise. */
void qr_log_write(qr_log_level level, const char *module, const char *msg, const char *context);

/* printf-style convenience for the C core. */
void qr_log(qr_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
