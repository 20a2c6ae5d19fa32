/* prefix_cache — which prompt prefixes each node has probably cached (docs/routing.md), the
 * approximation SGLang's cache-aware router makes: the gateway remembers the prompts it sent
 * to each node and assumes the engine's prefix cache holds them. A prompt's text (the first
 * prefix_bytes of it, rendered as the engine sees it) is cut into blocks of block_bytes; block
 * i's key hashes block i−1's key, the model and the block's bytes, so one key stands for the
 * whole prefix up to it (a radix tree flattened into a hash table, as vLLM's and the sim's
 * block caches do). One table of (node, block key) entries with one LRU list and a global
 * cap bounds memory whatever the fleet or the traffic; a per-node LRU list and cap (the size
 * of the engine's cache) make a node's old prefixes age out as its engine's would. A match is the
 * longest run of leading blocks present for the node, found by binary search (approximate where an
 * entry inside a prefix was evicted before its tail). The loop thread only; no allocation after the
 * first use except when the caps change. */
#ifndef DROVER_GW_PREFIX_CACHE_H
#define DROVER_GW_PREFIX_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strv.h"

struct node;
struct prefix_cache;

enum {
    PREFIX_MIN_BLOCK_BYTES = 16,
    PREFIX_MAX_BLOCKS = 4096, /* prefix_bytes / block_bytes is capped at this */
};

/* A request's block keys, computed once per pick (borrowed scratch of the cache). */
struct prefix_keys {
    const uint64_t *k;
    size_t n;
};

/* A cache of at most max_entries (node, block) entries (≥ 1), and at most node_entries per node
 * (0: no per-node cap; set it to what one engine's prefix cache holds, in blocks, so that the
 * table forgets what the engine must have evicted). block_bytes is clamped to at least
 * PREFIX_MIN_BLOCK_BYTES, prefix_bytes/block_bytes to PREFIX_MAX_BLOCKS. */
struct prefix_cache *prefix_cache_new(size_t max_entries, size_t node_entries, size_t block_bytes,
                                      size_t prefix_bytes);
void prefix_cache_free(struct prefix_cache *pc);

/* The cache kept in *slot (a gateway's own, struct gw): created on first use and re-created
 * (empty) when a reload changes a size; NULL, and *slot freed, when max_entries is 0
 * (cache-aware routing then acts as least_loaded). prefix_cache_free(*slot) at exit. */
struct prefix_cache *prefix_cache_ensure(struct prefix_cache **slot, size_t max_entries,
                                         size_t node_entries, size_t block_bytes,
                                         size_t prefix_bytes);

/* The keys of text's full blocks (a trailing partial block has none) for model. The result
 * borrows the cache's scratch: valid until the next call. */
struct prefix_keys prefix_cache_keys(struct prefix_cache *pc, struct strv model, struct strv text);
/* How many leading blocks of k node n is believed to hold (0..k->n). */
size_t prefix_cache_match(struct prefix_cache *pc, const struct node *n,
                          const struct prefix_keys *k);
/* n was sent the prompt of k: its blocks become n's most recently used (evicting the least
 * recently used entries of any node past the cap). */
void prefix_cache_insert(struct prefix_cache *pc, struct node *n, const struct prefix_keys *k);
/* Entries held for n (its share of the table), and in total. */
size_t prefix_cache_node_entries(const struct prefix_cache *pc, const struct node *n);
size_t prefix_cache_entries(const struct prefix_cache *pc);
size_t prefix_cache_capacity(const struct prefix_cache *pc);
/* Drops everything known about n (its engine restarted: its cache is empty). */
void prefix_cache_forget(struct prefix_cache *pc, const struct node *n);

/* The prompt of an API body as the engine sees it, for prefix matching: for chat
 * ({"messages":[…]}, OpenAI or Ollama) "role: content\n" per message (content parts of type
 * text joined), for completions/generate the `prompt` string (and Ollama's `system` first);
 * at most cap bytes into out. Returns the bytes written (0 when the body has no prompt or is
 * not JSON). Allocation: one json-c parse of the body (only cache_aware requests pay it). */
size_t prefix_render_prompt(struct strv body, char *out, size_t cap);
/* The same into the cache's own buffer (prefix_bytes long): valid until the next call. */
struct strv prefix_cache_render(struct prefix_cache *pc, struct strv body);

#endif
