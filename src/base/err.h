/* err — one error contract for the whole project. Fallible functions return 0 or a negative
 * code: -errno, a libuv UV_E* code, or one of the project codes below (all below -4095 so
 * they never collide with errno or libuv). Human detail goes into an optional
 * struct gw_error filled by gw_error_set(); hot paths pass NULL. Any thread. */
#ifndef DROVER_BASE_ERR_H
#define DROVER_BASE_ERR_H
#include <stddef.h>

#define WUR __attribute__((warn_unused_result))
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))

enum gw_err_code {
    GW_E_LIMIT = -5001,              /* a cap was reached (buffer, arena, header, body) */
    GW_E_PARSE = -5002,              /* malformed input */
    GW_E_INVALID = -5003,            /* well-formed but invalid (wrong type, bad value) */
    GW_E_NOTFOUND = -5004,           /* key, route or object absent */
    GW_E_CONNECT_TIMEOUT = -5005,    /* upstream connect took too long */
    GW_E_FIRST_BYTE_TIMEOUT = -5006, /* upstream sent no response byte in time */
    GW_E_IDLE_TIMEOUT = -5007,       /* upstream went quiet between chunks */
    GW_E_TOTAL_TIMEOUT = -5008,      /* the whole exchange took too long */
    GW_E_TRUNCATED = -5009,          /* peer closed before the message was complete */
    GW_E_MALFORMED = -5010,          /* peer sent bytes that are not HTTP */
    GW_E_CANCELLED = -5011,          /* the caller cancelled */
    GW_E_CLOSED = -5012,             /* the connection is gone */
    GW_E_STATE = -5013,              /* call not allowed in the current state */
    GW_E_DEPTH = -5014,              /* JSON nesting deeper than allowed */
    GW_E_IO = -5015,                 /* the kernel, a file or the database failed */
};

enum { GW_ERROR_MSG_BYTES = 256 };

struct gw_error {
    int code;
    char msg[GW_ERROR_MSG_BYTES];
};

/* Fills err (if not NULL) with code and a printf-formatted message; returns code so callers
 * can write `return gw_error_set(err, GW_E_PARSE, "...")`. */
int gw_error_set(struct gw_error *err, int code, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Static, never NULL: a short name for any code (project, libuv or errno). */
const char *gw_strerror(int code);

#endif
