/* err — error codes and the optional human message. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

int gw_error_set(struct gw_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *gw_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case GW_E_LIMIT:
        return "limit exceeded";
    case GW_E_PARSE:
        return "parse error";
    case GW_E_INVALID:
        return "invalid";
    case GW_E_NOTFOUND:
        return "not found";
    case GW_E_CONNECT_TIMEOUT:
        return "connect timeout";
    case GW_E_FIRST_BYTE_TIMEOUT:
        return "first byte timeout";
    case GW_E_IDLE_TIMEOUT:
        return "idle timeout";
    case GW_E_TOTAL_TIMEOUT:
        return "total timeout";
    case GW_E_TRUNCATED:
        return "truncated";
    case GW_E_MALFORMED:
        return "malformed response";
    case GW_E_CANCELLED:
        return "cancelled";
    case GW_E_CLOSED:
        return "closed";
    case GW_E_STATE:
        return "bad state";
    case GW_E_DEPTH:
        return "too deep";
    case GW_E_IO:
        return "i/o error";
    default:
        break;
    }
    if (code < 0 && code > -4096) return uv_err_name(code);
    return "unknown error";
}
