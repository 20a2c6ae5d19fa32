/* clock — monotonic clock with an injectable source. */
#include "base/clock.h"

#include <stddef.h>
#include <time.h>

static clock_source_fn *source;
static void *source_ctx;

void clock_set_source(clock_source_fn *fn, void *ctx)
{
    source = fn;
    source_ctx = ctx;
}

uint64_t clock_now_us(void)
{
    if (source) return source(source_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_now_ms(void)
{
    return clock_now_us() / 1000u;
}

uint64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
