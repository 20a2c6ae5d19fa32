/* ctxfit — context length as a routing constraint (docs/routing.md "Context length"). A
 * request's size in tokens is estimated cheaply from its body, without a tokenizer: the bytes
 * of the text the engine renders into the prompt (messages, system, tools, prompt, input;
 * media parts not counted), turned into two numbers:
 *   estimate  bytes / estimate_bytes_per_token (3) + 8 per message + 8: above the real count
 *             for English text and code (3.5–5 bytes per token) — a node whose context is at
 *             least this holds the request;
 *   floor     bytes / refuse_bytes_per_token (8): below the real count for any text a
 *             tokenizer does not compress to more than 8 bytes a token — a node whose context
 *             is below this cannot hold it, and when no node can, the gateway answers 400
 *             context_length_exceeded itself.
 * Between the two the engine's own tokenizer decides: the node is tried (after the nodes that
 * surely fit) and its refusal, llama-server's "exceeds the available context size" or vLLM's
 * "maximum context length", sends the request on to a node with a larger context. The
 * completion the request asks for (max_tokens, max_completion_tokens, options.num_predict) is
 * added to both, as vLLM checks. Pure: any thread. */
#ifndef DROVER_GW_CTXFIT_H
#define DROVER_GW_CTXFIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strv.h"
#include "gw/validate.h"

/* The estimate's ratios (config `routing.context.*`, docs/config.md). */
struct ctxfit_params {
    bool enabled;                    /* routing.context.enabled (true) */
    unsigned estimate_bytes_per_tok; /* routing.context.estimate_bytes_per_token (3) */
    unsigned refuse_bytes_per_tok;   /* routing.context.refuse_bytes_per_token (8) */
    bool count_completion;           /* routing.context.count_completion (true): add max_tokens */
};
void ctxfit_params_defaults(struct ctxfit_params *cp);

/* What one request needs from a node's context. */
struct ctx_need {
    bool known;          /* estimated (false: nothing is judged) */
    bool exact;          /* prompt_* is a node's own count (its refusal said n_prompt_tokens) */
    uint32_t prompt_est; /* the prompt's tokens, estimated high */
    uint32_t prompt_low; /* tokens the prompt surely has */
    uint32_t completion; /* the completion the request asks for, 0 when it sets no limit */
    const char *param;   /* static: the member the 400 names ("messages", "prompt", "input") */
};

/* Estimates what the request of kind needs. body must be valid JSON (validated first).
 * Returns 0, or -1 when there is nothing to judge (need->known false: a count_tokens call,
 * bad JSON, the check switched off). */
int ctxfit_estimate(enum api_kind kind, struct strv body, const struct ctxfit_params *cp,
                    struct ctx_need *need);
/* What the request needs in all, high and low (prompt + completion), saturating. */
uint32_t ctxfit_need_est(const struct ctx_need *need);
uint32_t ctxfit_need_low(const struct ctx_need *need);

enum ctx_fit {
    CTX_FITS = 0,  /* the node's context holds the estimate, or is unknown */
    CTX_TIGHT,     /* between floor and estimate: the engine decides */
    CTX_TOO_SMALL, /* below the floor, or no larger than a context that refused this request */
};
/* Judges a node's context ctx (0: unknown — it fits) for need (NULL: fits). floor: a context
 * that already refused this request (0: none); a context at most that large is too small. */
enum ctx_fit ctxfit_judge(uint32_t ctx, const struct ctx_need *need, uint32_t floor);
const char *ctxfit_name(enum ctx_fit f); /* "fits", "tight", "too_small" */

/* OpenAI's wording of a context refusal for a largest context of n_ctx tokens: "This model's
 * maximum context length is N tokens. However, your messages resulted in M tokens. Please
 * reduce the length of the messages." (with a completion: "you requested T tokens (P in the
 * messages, C in the completion) ... or completion"). Returns the length written. */
size_t ctxfit_message(char *out, size_t cap, uint32_t n_ctx, const struct ctx_need *need);

/* What a node's refusal says (llama-server's n_prompt_tokens and n_ctx; vLLM's "maximum
 * context length is N tokens" and "(P in the messages" / "has P input tokens"): 0 for what it
 * does not say. Bounded scan of the first 4 KiB. */
void ctxfit_refusal_numbers(const char *p, size_t len, uint32_t *n_ctx, uint32_t *n_prompt);

#endif
