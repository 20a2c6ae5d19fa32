/* outcome — the failure taxonomy of DESIGN §4 as one pure, table-driven function. It maps
 * what a node did during one upstream attempt to an outcome class and the actions that
 * follow (retry elsewhere, retry on a fresh connection, fault accounting). The proxy acts on
 * the class; nothing else in the gateway looks at raw statuses. Pure: any thread. */
#ifndef DROVER_GW_OUTCOME_H
#define DROVER_GW_OUTCOME_H
#include <stdbool.h>
#include <stdint.h>

enum outcome_class {
    OUTCOME_SUCCESS = 0,
    OUTCOME_CLIENT_ERROR,       /* the engine rejected the request: the client's mistake */
    OUTCOME_INVENTORY_MISS,     /* the node does not have the model we thought it had */
    OUTCOME_CAPABILITY_MISS,    /* the node's model cannot do this (embedding asked to chat) */
    OUTCOME_NODE_BUSY,          /* 429, or 503 with Retry-After */
    OUTCOME_NODE_MISCONFIGURED, /* 401/403: our credentials for the node are wrong */
    OUTCOME_NODE_FAULT,         /* 5xx, refused, reset, timeout, malformed, cut short */
    OUTCOME_STALE_CONN,         /* a reused pooled connection failed before any byte */
    OUTCOME_CONTEXT_EXCEEDED,   /* the prompt (and completion) is longer than the node's context:
                                   the client's request, never the node's fault; a node with a
                                   larger context may take it (docs/routing.md) */
    OUTCOME__COUNT
};

/* What the proxy observed; fill what is known. */
struct attempt_obs {
    int transport_err;    /* 0, or the client's error (UV_E*, GW_E_*_TIMEOUT, ...) */
    int status;           /* HTTP status, 0 if no status line arrived */
    bool has_retry_after; /* the response carried Retry-After */
    bool complete;        /* the response completed (full length, last chunk, [DONE], done) */
    bool reused_conn;     /* the attempt ran on a pooled connection */
    bool got_bytes;       /* any response byte arrived from the node */
    bool body_says_model_missing; /* error body says the model is not found / does not exist */
    bool body_says_unsupported;   /* error body says the model does not support the operation */
    bool body_says_context;       /* error body says the request exceeds the context length */
};

enum fault_action {
    FAULT_NONE = 0,            /* leave the fault count alone */
    FAULT_RESET,               /* success: consecutive faults back to 0 */
    FAULT_COUNT,               /* +1 now (transport failures, misconfiguration) */
    FAULT_COUNT_UNLESS_POISON, /* 5xx response: +1 unless the same request also fails with 5xx
                                  elsewhere (poison request); decided by the proxy at the end */
};

struct outcome {
    enum outcome_class cls;
    bool retry_elsewhere; /* another node may serve it (if nothing reached the client yet) */
    bool retry_same_node; /* retry at once on a fresh connection to the same node */
    enum fault_action fault;
    bool is_5xx_response;   /* the node answered 5xx (counts toward the poison rule) */
    bool refresh_inventory; /* ask the node for its models again */
    bool mark_capability_absent;
    bool cool_node; /* honour Retry-After: route nothing to the node for a while */
};

/* Classifies one attempt. */
struct outcome outcome_classify(const struct attempt_obs *obs);

const char *outcome_class_name(enum outcome_class c); /* "success", "node_fault", ... */

/* The bits of registry.h's CAP_*: the primary capabilities are the low three. */
enum { CAP_PRIMARY_BITS = 7 };
/* Which one capability a capability-miss answer names, among the CAP_* bits `used` by the
 * request: an optional feature it names first, then the primary one; with nothing named, the
 * primary capability only when the request used no optional feature; else 0 (mark nothing). */
unsigned outcome_named_capability(const char *p, uint64_t len, unsigned used);

/* Reads an error body (OpenAI, Ollama or plain text) for the hints above. Bounded scan. */
void outcome_scan_error_body(const char *p, uint64_t len, struct attempt_obs *obs);

#endif
