/* accounting — the one module that turns what happened to an upstream attempt into its effects
 * (DESIGN §4, "One writer"): the node's and the model's in-flight counts, the fault record
 * with the poison rule for 5xx answers, data-path evidence of life, the adaptive concurrency
 * limit on busy answers, capability and inventory marks (for the routed model only), a probe
 * after an inventory miss, and the outcome metrics. The proxy observes and decides what the
 * client gets; it never writes a node. The loop thread only. */
#ifndef DROVER_GW_ACCOUNTING_H
#define DROVER_GW_ACCOUNTING_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strv.h"
#include "gw/outcome.h"

struct gw;
struct node;

enum { ACCT_MAX_ATTEMPTS = 16 };

/* One client request's decisions that wait for its end: 5xx answers are counted against a
 * node only when the same request then succeeds elsewhere or no other node was tried. */
struct acct_request {
    struct node *pending_5xx[ACCT_MAX_ATTEMPTS]; /* borrowed */
    size_t n_pending_5xx;
    unsigned n_5xx;
    unsigned busy_count;   /* busy answers this request got */
    uint64_t busy_retry_s; /* the smallest Retry-After among them */
};

/* What the proxy saw of one attempt. */
struct acct_attempt {
    struct node *node;      /* borrowed */
    struct strv model;      /* the routed model id (catalogue id, never the client's alias) */
    unsigned caps;          /* CAP_* the request used: primary | optional features */
    int status;             /* 0: no status line */
    int transport_err;      /* 0 or the client's error */
    uint64_t retry_after_s; /* the node's Retry-After, 0 when none */
    const char *body;       /* error body (borrowed), for the capability it names */
    size_t body_len;
    uint64_t dur_ms;
};

/* An attempt starts on n: in-flight counts up (node and model). */
void acct_begin(struct gw *g, struct node *n, struct strv model);
/* Response bytes arrived from n on the data path (liveness evidence); `stream` counts the
 * attempt as an active stream once (*stream_counted tracks it). */
void acct_progress(struct gw *g, struct node *n, bool stream, bool *stream_counted);
/* The attempt's accounting ends (exactly once per acct_begin): counts down, and capacity that
 * freed wakes waiting requests. */
void acct_end(struct gw *g, struct node *n, struct strv model, bool *stream_counted);
/* Applies the outcome o of attempt a. Returns the capability marked (a CAP_* bit) or 0. */
unsigned acct_outcome(struct gw *g, struct acct_request *r, const struct acct_attempt *a,
                      const struct outcome *o);
/* The request ends with a success or without another node to try: count the held 5xx. */
void acct_settle(struct gw *g, struct acct_request *r);
/* The request failed with 5xx on two nodes: a poison request, count nothing. */
bool acct_is_poison(const struct acct_request *r);
void acct_forgive(struct acct_request *r);

#endif
