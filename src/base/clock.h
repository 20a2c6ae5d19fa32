/* clock — monotonic time for the whole process, replaceable by tests. Production uses
 * CLOCK_MONOTONIC; a test installs its own source with clock_set_source() and moves time by
 * hand. Wall-clock time (for logs and stored timestamps) is clock_wall_ms(). Any thread; the
 * source must be set before threads start. */
#ifndef DROVER_BASE_CLOCK_H
#define DROVER_BASE_CLOCK_H
#include <stdint.h>

typedef uint64_t clock_source_fn(void *ctx); /* returns microseconds, monotonic */

uint64_t clock_now_us(void);
uint64_t clock_now_ms(void);
uint64_t clock_wall_ms(void); /* Unix epoch milliseconds */
/* fn NULL restores the real clock. */
void clock_set_source(clock_source_fn *fn, void *ctx);

#endif
