/* sim_out — sticky-error wrapper over buf and json_append_str; see sim_out.h. After the first
 * failure every append is a no-op, so callers test o->err once. Owner thread only. */
#include "sim/sim_out.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"

void sim_out_init(struct sim_out *o, size_t max_bytes)
{
    buf_init(&o->b, max_bytes);
    o->err = 0;
}

void sim_out_free(struct sim_out *o)
{
    buf_free(&o->b);
}

void sim_out_reset(struct sim_out *o)
{
    buf_reset(&o->b);
    o->err = 0;
}

void sim_out_mem(struct sim_out *o, const void *p, size_t len)
{
    if (!o->err) o->err = buf_append(&o->b, p, len);
}

void sim_out_raw(struct sim_out *o, const char *s)
{
    sim_out_mem(o, s, strlen(s));
}

void sim_out_str(struct sim_out *o, const char *s, size_t len)
{
    if (!o->err) o->err = json_append_str(&o->b, s ? s : "", s ? len : 0);
}

void sim_out_cstr(struct sim_out *o, const char *s)
{
    sim_out_str(o, s, s ? strlen(s) : 0);
}

void sim_out_fmt(struct sim_out *o, const char *fmt, ...)
{
    if (o->err) return;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->err = GW_E_INVALID;
        return;
    }
    if ((size_t)n < sizeof small) {
        sim_out_mem(o, small, (size_t)n);
        return;
    }
    o->err = GW_E_LIMIT; /* no body line we write is this long */
}
