/* engine_ctx — what the engines say about the context a request may fill (docs/routing.md
 * "Context length"), read by the gateway's probe of a static node and by the agent: one parser
 * per answer, used by both sides. The model lists carry it where the engine puts it there
 * (node_api_oai_models_parse: vLLM's max_model_len, llama-server's meta.n_ctx; Ollama's
 * /api/ps context_length); the answers here are the ones asked for the context alone:
 *   llama-server  GET /props          default_generation_settings.n_ctx (per slot)
 *   Ollama        POST /api/show      the Modelfile's num_ctx ("parameters"), else the
 *                                     model's own <arch>.context_length ("model_info")
 * Parsers are strict JSON, depth-capped, and say GW_E_NOTFOUND when the answer is well formed
 * but names no context. Any thread; no global state. */
#ifndef DROVER_PROTO_ENGINE_CTX_H
#define DROVER_PROTO_ENGINE_CTX_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define ENGINE_CTX_PATH_PROPS "/props"
#define ENGINE_CTX_PATH_OLLAMA_SHOW "/api/show"

/* llama-server's GET /props: default_generation_settings.n_ctx (a slot's context), or a
 * top-level "n_ctx" (older builds). 0 with *n_ctx > 0; GW_E_NOTFOUND; GW_E_PARSE/INVALID. */
int engine_ctx_llamacpp_props(const char *p, size_t len, int64_t *n_ctx, struct gw_error *err) WUR;

/* Ollama's POST /api/show answer: "num_ctx N" in "parameters" (what the Modelfile sets), else
 * the first "model_info" member named "*.context_length". */
int engine_ctx_ollama_show(const char *p, size_t len, int64_t *ctx, struct gw_error *err) WUR;
/* The /api/show request body {"model":"<model>"}. */
int engine_ctx_ollama_show_body(struct buf *out, const char *model) WUR;

#endif
