/* agent_ops — fleet operations and the inventory on the agent (docs/node_api.md). The loop
 * thread only. */
#ifndef DROVER_AGENT_AGENT_OPS_H
#define DROVER_AGENT_AGENT_OPS_H
#include <stdbool.h>
#include <stddef.h>

#include "agent/agent.h"
#include "proto/op_result.h"

/* Pure parts, unit-tested: a template with {name} and params placeholders, every value
 * single-quoted for sh (GW_E_INVALID with why for an unknown placeholder or a NUL byte);
 * the outcome class of an exit; whether NAME starts a line of a list. */
int agent_ops_expand(const char *tmpl, const char *name, const char *params_json, struct buf *out,
                     char *why, size_t why_cap) WUR;
enum op_class agent_ops_exit_class(bool timed_out, int term_signal, int64_t exit_status);
bool agent_ops_list_has(const char *text, size_t len, const char *name);

#endif
