/* sim_out — a capped output buffer that remembers its first failure, so a JSON body can be
 * written as a flat sequence of appends and checked once at the end. Owner thread only. */
#ifndef DROVER_SIM_SIM_OUT_H
#define DROVER_SIM_SIM_OUT_H
#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"

struct sim_out {
    struct buf b;
    int err; /* first failure (GW_E_LIMIT), or 0 */
};

void sim_out_init(struct sim_out *o, size_t max_bytes);
void sim_out_free(struct sim_out *o);
void sim_out_reset(struct sim_out *o);
void sim_out_raw(struct sim_out *o, const char *s);
void sim_out_mem(struct sim_out *o, const void *p, size_t len);
/* s[0..len) as a JSON string literal with quotes. */
void sim_out_str(struct sim_out *o, const char *s, size_t len);
void sim_out_cstr(struct sim_out *o, const char *s); /* JSON string literal of s */
void sim_out_fmt(struct sim_out *o, const char *fmt, ...) PRINTF_LIKE(2, 3);

#endif
