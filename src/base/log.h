/* log — one logfmt line per event on stderr:
 *   ts=2026-11-22T20:54:58.123Z level=info event=listen addr=127.0.0.1:8080
 * The caller formats the key=value tail; values that may hold spaces or quotes go through
 * log_quote(). Lines below the current level cost one comparison. Any thread (one write(2)
 * per line, so lines never interleave). */
#ifndef DROVER_BASE_LOG_H
#define DROVER_BASE_LOG_H
#include <stddef.h>

#include "base/err.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

extern enum log_level log_level_current;

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; GW_E_INVALID otherwise. */
int log_parse_level(const char *s, enum log_level *out) WUR;
void log_event(enum log_level level, const char *event, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Writes a logfmt-safe rendering of s (quoted and escaped if needed) into out (always
 * NUL-terminated, truncated to cap) and returns out. */
const char *log_quote(char *out, size_t cap, const char *s, size_t len);

#define LOG_AT(lvl, ev, ...)                                                                       \
    do {                                                                                           \
        if ((lvl) >= log_level_current) log_event((lvl), (ev), __VA_ARGS__);                       \
    } while (0)
#define LOGD(ev, ...) LOG_AT(LOG_DEBUG, ev, __VA_ARGS__)
#define LOGI(ev, ...) LOG_AT(LOG_INFO, ev, __VA_ARGS__)
#define LOGW(ev, ...) LOG_AT(LOG_WARN, ev, __VA_ARGS__)
#define LOGE(ev, ...) LOG_AT(LOG_ERROR, ev, __VA_ARGS__)

#endif
