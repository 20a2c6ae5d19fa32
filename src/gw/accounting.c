/* accounting — every effect of an attempt's outcome, decided here and nowhere else. The rules
 * are DESIGN §4's table; the registry functions called here keep derived state and log each
 * transition with its cause. */
#include "gw/accounting.h"

#include <stdio.h>

#include "base/log.h"
#include "gw/admission.h"
#include "gw/ctxfit.h"
#include "gw/gw.h"
#include "gw/health.h"

static void model_count(struct gw *g, struct node *n, struct strv model, int delta)
{
    struct node_model *m = node_model_find(n, model);
    if (!m) return;
    if (delta > 0) {
        m->inflight++;
        m->last_used_ms = gw_now_ms(g);
    } else if (m->inflight > 0) {
        m->inflight--;
    }
}

void acct_begin(struct gw *g, struct node *n, struct strv model)
{
    registry_node_sent(&g->reg, n, gw_now_ms(g));
    n->inflight++;
    model_count(g, n, model, +1);
}

void acct_progress(struct gw *g, struct node *n, bool stream, bool *stream_counted)
{
    n->last_progress_ms = gw_now_ms(g);
    if (stream && !*stream_counted) {
        *stream_counted = true;
        n->streams_active++;
    }
}

void acct_end(struct gw *g, struct node *n, struct strv model, bool *stream_counted)
{
    if (n->inflight > 0) n->inflight--;
    if (n->inflight == 0 && n->admin == ADMIN_DRAINING) LOGI("node_drained", "node=%s", n->name);
    model_count(g, n, model, -1);
    if (*stream_counted && n->streams_active > 0) n->streams_active--;
    *stream_counted = false;
    admission_kick(&g->admission);
}

unsigned acct_outcome(struct gw *g, struct acct_request *r, const struct acct_attempt *a,
                      const struct outcome *o)
{
    struct node *n = a->node;
    uint64_t now = gw_now_ms(g);
    g->metrics.outcomes[o->cls]++;
    unsigned marked = 0;
    switch (o->cls) {
    case OUTCOME_SUCCESS:
        registry_record_success(&g->reg, n, now);
        registry_marks_contradicted(&g->reg, n, node_model_find(n, a->model), a->caps);
        registry_node_ok(&g->reg, n, n->inflight, a->dur_ms);
        n->requests_total++;
        break;
    case OUTCOME_CLIENT_ERROR: /* the engine rejected the request: the node did its job */
        registry_note_alive(&g->reg, n, now);
        registry_node_ok(&g->reg, n, n->inflight, a->dur_ms);
        break;
    case OUTCOME_CONTEXT_EXCEEDED: {
        /* the request is longer than the node's context: the client's, not the node's. What
         * the node says its context is, is learned (it may have restarted with another one, or
         * never said it anywhere else); nothing is marked. */
        registry_note_alive(&g->reg, n, now);
        registry_node_ok(&g->reg, n, n->inflight, a->dur_ms);
        uint32_t n_ctx, n_prompt;
        ctxfit_refusal_numbers(a->body, a->body_len, &n_ctx, &n_prompt);
        struct node_model *m = node_model_find(n, a->model);
        if (m && n_ctx && m->ctx_tokens != n_ctx) registry_set_model_ctx(n, m, n_ctx, "rejection");
        break;
    }
    case OUTCOME_NODE_BUSY: {
        uint64_t s = a->retry_after_s ? a->retry_after_s : 1;
        registry_note_alive(&g->reg, n, now); /* busy is not dead */
        registry_node_busy(&g->reg, n, n->inflight, s, now);
        g->metrics.busy_total++;
        r->busy_count++;
        if (!r->busy_retry_s || s < r->busy_retry_s) r->busy_retry_s = s;
        break;
    }
    case OUTCOME_CAPABILITY_MISS: {
        /* the node talked: alive. Mark only what its answer names, for the routed model. */
        registry_note_alive(&g->reg, n, now);
        unsigned cap = outcome_named_capability(a->body, a->body_len, a->caps);
        struct node_model *m = node_model_find(n, a->model);
        if (cap && m) {
            char cause[96];
            snprintf(cause, sizeof cause, "status %d: %.*s", a->status,
                     (int)(a->body_len > 60 ? 60 : a->body_len), a->body ? a->body : "");
            for (char *c = cause; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\') *c = ' ';
            registry_mark_capability(&g->reg, n, m, cap, now, cause);
            marked = cap;
        }
        break;
    }
    case OUTCOME_INVENTORY_MISS: {
        registry_note_alive(&g->reg, n, now);
        struct node_model *m = node_model_find(n, a->model);
        if (m) {
            char cause[64];
            snprintf(cause, sizeof cause, "status %d: model not found", a->status);
            registry_mark_inventory_miss(&g->reg, n, m, now, cause);
        }
        health_probe_now(g, n); /* the probe brings the truth back (and clears the mark) */
        break;
    }
    case OUTCOME_NODE_MISCONFIGURED:
    case OUTCOME_NODE_FAULT:
    case OUTCOME_STALE_CONN:
    default:
        break;
    }
    if (o->fault == FAULT_COUNT) {
        char cause[64];
        snprintf(cause, sizeof cause, "%s status=%d err=%s", outcome_class_name(o->cls), a->status,
                 gw_strerror(a->transport_err));
        registry_record_fault(&g->reg, n, now, cause);
    }
    if (o->fault == FAULT_COUNT_UNLESS_POISON && r->n_pending_5xx < ACCT_MAX_ATTEMPTS)
        r->pending_5xx[r->n_pending_5xx++] = n;
    if (o->is_5xx_response) r->n_5xx++;
    return marked;
}

void acct_settle(struct gw *g, struct acct_request *r)
{
    uint64_t now = gw_now_ms(g);
    for (size_t i = 0; i < r->n_pending_5xx; i++)
        registry_record_fault(&g->reg, r->pending_5xx[i], now, "5xx answer");
    r->n_pending_5xx = 0;
}

bool acct_is_poison(const struct acct_request *r)
{
    return r->n_5xx >= 2;
}

void acct_forgive(struct acct_request *r)
{
    r->n_pending_5xx = 0;
}
