/* op_result — the outcome classes an agent reports for a fleet operation (docs/ops.md), shared
 * by the agent and the gateway. Any thread. */
#ifndef DROVER_PROTO_OP_RESULT_H
#define DROVER_PROTO_OP_RESULT_H
#include <stdbool.h>

#include "base/err.h"
#include "base/strv.h"

enum op_class {
    OP_CLASS_OK,
    OP_CLASS_EXCEPTION,    /* the tool crashed or threw */
    OP_CLASS_CONFIG_ERROR, /* the agent's template or the request is wrong */
    OP_CLASS_UNSAFE,       /* refused: would break something (e.g. delete a loaded model) */
    OP_CLASS_ABORTED,      /* timed out or cancelled */
    OP_CLASS_ERROR,        /* generic execution error: authoritative only if not verified */
    OP_CLASS_COUNT,
};

const char *op_class_name(enum op_class c);                /* "ok", "exception", ..., "error" */
int op_class_parse(struct strv s, enum op_class *out) WUR; /* GW_E_INVALID when unknown */
/* The explicit failure classes: the agent's word is final for the attempt. */
bool op_class_is_explicit_failure(enum op_class c);

enum op_kind { OP_INSTALL, OP_UPGRADE, OP_DELETE, OP_LOAD, OP_UNLOAD, OP_KIND_COUNT };
const char *op_kind_name(enum op_kind k);
int op_kind_parse(struct strv s, enum op_kind *out) WUR;
/* True when success leaves the target listed by the node (install, upgrade, load). */
bool op_kind_leaves_target(enum op_kind k);

#endif
