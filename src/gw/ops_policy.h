/* ops_policy — the pure rules of durable operations (docs/ops.md): when a failed row is due
 * again, when it goes to the dead letters, and what an agent's answer means for the row.
 * No I/O, no clock: callers pass the random factor and the verification. Any thread. */
#ifndef DROVER_GW_OPS_POLICY_H
#define DROVER_GW_OPS_POLICY_H
#include <stdbool.h>
#include <stdint.h>

#include "proto/op_result.h"

enum {
    OPS_BACKOFF_BASE_MS = 30 * 1000,
    OPS_BACKOFF_MAX_MS = 15 * 60 * 1000,
    OPS_MAX_ATTEMPTS = 10, /* the 10th failure moves the row to the dead letters */
};

/* Delay before the next try after `failures` failed attempts (>= 1): min(30 s × 2^(k−1),
 * 15 min) scaled by jitter, a factor the caller draws from [0.8, 1.2] (clamped to it). */
uint64_t ops_backoff_ms(unsigned failures, double jitter);

enum ops_verdict {
    OPS_DONE,   /* the op reached its goal */
    OPS_FAILED, /* the attempt failed: schedule again or dead-letter */
};

/* What one attempt means. cls is the agent's class (ignored when !answered); listed tells
 * whether the node lists the target after the attempt (only consulted for a generic error). */
enum ops_verdict ops_judge(enum op_kind kind, bool answered, enum op_class cls, bool listed);

/* True when the row must move to the dead letters after this many failed attempts. */
bool ops_is_dead(unsigned failures);

#endif
