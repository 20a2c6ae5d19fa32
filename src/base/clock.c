/* clock — the process's one clock: monotonic time with an injectable source, and wall time
 * with an atomic testing offset (clock.h says which code reads which). Any thread. */
#include "base/clock.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

static clock_source_fn *source;
static void *source_ctx;
static const int64_t CLOCK_MAX_OFFSET_MS = INT64_MAX / 4; /* ~73 million years */

static _Atomic int64_t wall_offset_ms;

void clock_set_source(clock_source_fn *fn, void *ctx)
{
    source = fn;
    source_ctx = ctx;
}

uint64_t clock_mono_us(void)
{
    if (source) return source(source_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_mono_ms(void)
{
    return clock_mono_us() / 1000u;
}

uint64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t real = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* the offset only grows (clock_advance_wall_ms), so this never wraps */
    return real + (uint64_t)atomic_load_explicit(&wall_offset_ms, memory_order_relaxed);
}

int64_t clock_advance_wall_ms(int64_t delta_ms)
{
    int64_t cur = atomic_load_explicit(&wall_offset_ms, memory_order_relaxed);
    if (delta_ms <= 0) return cur;
    int64_t next;
    do { /* saturates far below the point where real + offset would wrap */
        next = delta_ms > CLOCK_MAX_OFFSET_MS - cur ? CLOCK_MAX_OFFSET_MS : cur + delta_ms;
    } while (!atomic_compare_exchange_weak_explicit(&wall_offset_ms, &cur, next,
                                                    memory_order_relaxed, memory_order_relaxed));
    return next;
}

int64_t clock_wall_offset_ms(void)
{
    return atomic_load_explicit(&wall_offset_ms, memory_order_relaxed);
}
