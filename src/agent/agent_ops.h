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
/* The inventory's lists (proto's node_api_inventory). Models: the engine's list as proto's
 * parsers read it (name and digest). Backends: backend.list output, NAME [VERSION [DIGEST]] a
 * line (more words ignored, blank lines skipped). An entry that does not fit an ITEM (too
 * long, a control byte) or comes past NODE_API_MAX_INV_ITEMS is skipped; both return how many
 * were. */
size_t agent_ops_inventory_models(const struct node_api_models *engine,
                                  struct node_api_inv_items *out);
size_t agent_ops_backends_parse(const char *text, size_t len, struct node_api_inv_items *out);

#endif
