/* ops_policy — retry schedule, dead-letter threshold and the meaning of an agent's answer
 * (docs/ops.md). Pure functions. */
#include "gw/ops_policy.h"

uint64_t ops_backoff_ms(unsigned failures, double jitter)
{
    if (failures == 0) failures = 1;
    uint64_t d = OPS_BACKOFF_BASE_MS;
    for (unsigned k = 1; k < failures && d < OPS_BACKOFF_MAX_MS; k++) d *= 2;
    if (d > OPS_BACKOFF_MAX_MS) d = OPS_BACKOFF_MAX_MS;
    if (!(jitter >= 0.8)) jitter = 0.8; /* also catches NaN */
    if (jitter > 1.2) jitter = 1.2;
    return (uint64_t)((double)d * jitter);
}

enum ops_verdict ops_judge(enum op_kind kind, bool answered, enum op_class cls, bool listed)
{
    if (!answered) return OPS_FAILED; /* the node said nothing: marked unhealthy by the caller */
    if (cls == OP_CLASS_OK) return OPS_DONE;
    if (op_class_is_explicit_failure(cls)) return OPS_FAILED;
    /* generic error: done if the work verifiably happened anyway */
    bool goal_reached = op_kind_leaves_target(kind) ? listed : !listed;
    return goal_reached ? OPS_DONE : OPS_FAILED;
}

bool ops_is_dead(unsigned failures)
{
    return failures >= OPS_MAX_ATTEMPTS;
}
