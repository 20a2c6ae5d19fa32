/* usage — usage accounting per client key (DESIGN §10): requests, errors, prompt and
 * completion tokens per (minute, key, model, node), aggregated in memory on the loop thread and
 * added to the store's usage_minutes by a flush timer (usage.flush_interval) as one batch job
 * on the store thread, so the data path never waits for the database; at stop the last batch
 * is flushed before the store closes. The pending table is capped (rows past the cap are
 * counted as dropped, never grown without bound). Prometheus counters per (key, model) with a
 * capped number of series (the rest go to key="_other"). The loop thread only. */
#ifndef DROVER_GW_USAGE_H
#define DROVER_GW_USAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/strv.h"
#include "net/http_server.h"

struct gw;
struct usage;

enum {
    USAGE_MAX_PENDING = 50000, /* distinct (minute, key, model, node) rows between flushes */
    USAGE_MAX_SERIES = 2000,   /* Prometheus (key, model) series */
    USAGE_MAX_LABEL = 128,     /* bytes of a model or node name kept */
};

/* Pure core (tests use it without a gateway). */
struct usage *usage_new(void);
void usage_free(struct usage *u);
/* Counts one request: errors when status >= 400 or 0 (no answer). wall_ms picks the minute. */
void usage_add(struct usage *u, const char *key_id, const char *model, const char *node, int status,
               uint64_t prompt_tokens, uint64_t completion_tokens, uint64_t wall_ms);
size_t usage_pending_rows(const struct usage *u);
uint64_t usage_dropped(const struct usage *u);
/* Prometheus text of the counters (drover_key_*). */
int usage_render(const struct usage *u, struct buf *out) WUR;

/* The tokens an answer reports: OpenAI's top-level "usage": {"prompt_tokens",
 * "completion_tokens"} (a whole non-streamed body, or the data of one SSE event), or Ollama's
 * top-level "prompt_eval_count" and "eval_count" (a body or the last NDJSON line). Returns true
 * when any was found (the others stay 0). Allocation-free; never fails on odd input. */
bool usage_tokens_from_body(const char *p, size_t len, uint64_t *prompt, uint64_t *completion);

/* Streams (docs/security.md "Streamed usage"): an OpenAI stream reports its tokens only when
 * the request has stream_options.include_usage. When body (a validated JSON object) has no
 * top-level "stream_options", appends to out the same bytes with
 * "stream_options":{"include_usage":true} inserted as the first member (every other byte
 * kept) and returns 1; returns 0 (out untouched) when the client set stream_options itself;
 * GW_E_INVALID when body is not an object, GW_E_LIMIT when out's cap is hit. */
int usage_ask_stream_usage(struct strv body, struct buf *out) WUR;
/* True for the chunk include_usage adds at the end of a stream: a top-level "usage" object and
 * "choices" empty or absent. The gateway drops it from the relay when it asked for it. */
bool usage_chunk_is_usage_only(const char *p, size_t len);

/* Gateway wiring: starts the flush timer (g->usage must exist); stop flushes what is pending
 * (the store then writes it before closing). */
int usage_start(struct gw *g);
void usage_stop(struct gw *g);
/* Hands the pending rows to the store now (a store job; FIFO, so a query submitted after sees
 * them). */
void usage_flush(struct gw *g);
/* Records one answered request (keys_release calls it). */
void usage_record(struct gw *g, const char *key_id, const char *model, const char *node, int status,
                  uint64_t prompt_tokens, uint64_t completion_tokens);
/* For /metrics: appends the counters (admin.c calls it after metrics_render). */
int usage_render_metrics(struct gw *g, struct buf *out) WUR;

/* GET /admin/v1/usage?key=&model=&from=&to=&group_by=key|model|node|minute (from/to: unix
 * seconds; default the last 24 hours). */
void usage_admin(struct gw *g, struct http_request *req);

#endif
