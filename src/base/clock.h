/* clock — the process's one clock, with two readings, both replaceable by tests.
 *
 *   clock_mono_us/ms  CLOCK_MONOTONIC: durations and deadlines outside a libuv loop (the sim's
 *                     timings, the store thread). A test installs its own source with
 *                     clock_set_source() and moves time by hand.
 *   clock_wall_ms     Unix epoch milliseconds plus a testing offset: timestamps that are stored
 *                     or must survive a restart (ops due times, node and catalogue rows). A
 *                     test moves it forward with clock_advance_wall_ms() (the gateway's
 *                     `testing.clock_control`, POST /admin/v1/testing/clock).
 *
 * Code on a libuv loop reads the loop's cached time instead (gw_now_ms() in gw/gw.h, uv_now):
 * timers fire on that clock, and every callback of one loop iteration sees the same instant.
 * Log lines stamp real time (log.c), never the testing offset.
 *
 * Any thread. clock_set_source() must be called before other threads start (it is not
 * synchronised); the wall offset is atomic and may be moved from any thread. */
#ifndef DROVER_BASE_CLOCK_H
#define DROVER_BASE_CLOCK_H
#include <stdint.h>

typedef uint64_t clock_source_fn(void *ctx); /* returns microseconds, monotonic */

uint64_t clock_mono_us(void);
uint64_t clock_mono_ms(void);
uint64_t clock_wall_ms(void); /* Unix epoch milliseconds + clock_wall_offset_ms() */

/* The old names of clock_mono_us/ms, kept while code in flight (gw/keys.c, gw/audit.c) moves
 * over; new code calls clock_mono_*. */
static inline uint64_t clock_now_us(void)
{
    return clock_mono_us();
}
static inline uint64_t clock_now_ms(void)
{
    return clock_mono_ms();
}

/* Tests: fn NULL restores the real monotonic clock. ctx is borrowed until the next call. */
void clock_set_source(clock_source_fn *fn, void *ctx);
/* Tests: moves clock_wall_ms() forward by delta_ms for the whole process; a negative delta is
 * refused (wall time as the process reports it never runs backwards). Returns the new offset. */
int64_t clock_advance_wall_ms(int64_t delta_ms);
int64_t clock_wall_offset_ms(void);

#endif
