/* signals — the engines' own load reports (docs/routing.md "Engine signals"): which endpoint
 * to scrape for a node kind, parsers for what comes back, and the one writer of a node's
 * `sig` fields. llama-server: /metrics (`llamacpp:requests_processing`,
 * `llamacpp:requests_deferred`, `llamacpp:kv_cache_usage_ratio` where the build has it) or,
 * when metrics are off, /slots (slots with `is_processing`, or `state` != 0 on old builds);
 * vLLM: /metrics (`vllm:num_requests_running`, `vllm:num_requests_waiting`,
 * `vllm:gpu_cache_usage_perc` or v1's `vllm:kv_cache_usage_perc`, summed/maxed over engines);
 * Ollama: /api/ps (models in memory; Ollama reports no queue). Parsers are pure (any thread);
 * signals_apply is the loop thread's. */
#ifndef DROVER_GW_SIGNALS_H
#define DROVER_GW_SIGNALS_H
#include <stddef.h>
#include <stdint.h>

#include "base/strv.h"
#include "gw/registry_types.h"

enum signals_source {
    SIG_NONE = 0,
    SIG_PROM_LLAMACPP, /* llama-server /metrics */
    SIG_SLOTS,         /* llama-server /slots */
    SIG_PROM_VLLM,     /* vLLM /metrics */
    SIG_OLLAMA_PS,     /* Ollama /api/ps */
};

/* A parse result; -1 for what the answer did not say. */
struct signals_report {
    int running, waiting, slots, kv_pm, models_loaded;
};

/* The first source to scrape for a node of this kind (SIG_NONE: plain OpenAI servers and
 * agents say nothing we can read). */
enum signals_source signals_source_for(enum node_kind kind);
/* What to try after src answered 404/501 (metrics switched off): SIG_SLOTS after llama-server's
 * /metrics, SIG_NONE otherwise. */
enum signals_source signals_fallback(enum signals_source src);
const char *signals_path(enum signals_source src);
const char *signals_source_name(enum signals_source src);

/* Parses an answer of src. Returns 0 with r filled (fields the answer lacks stay -1), or
 * GW_E_INVALID when the text is not that endpoint's format or says nothing usable. */
int signals_parse(enum signals_source src, const char *text, size_t len, struct signals_report *r);
/* One Prometheus text sample value: the sum over every series of `name` (labels ignored),
 * and their maximum in *max_out (may be NULL). GW_E_NOTFOUND when there is none. */
int signals_prom_value(const char *text, size_t len, const char *name, double *sum_out,
                       double *max_out);

/* Records a scrape of n at now_ms (the one writer of n->sig). */
void signals_apply(struct node *n, enum signals_source src, const struct signals_report *r,
                   uint64_t now_ms);
/* A scrape failed: the report is dropped (stale signals must not steer the router). */
void signals_failed(struct node *n);

#endif
