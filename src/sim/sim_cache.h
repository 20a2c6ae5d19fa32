/* sim_cache — the simulated engine's prompt prefix cache: an LRU set of token-block keys.
 * A prompt is cut into blocks of block_bytes; block i's key hashes the key of block i-1 with
 * the block's bytes, so a key stands for the whole prefix up to and including its block (the
 * shape of vLLM's and llama.cpp's prefix reuse). A request reuses the longest run of leading
 * blocks already cached; its blocks then become most recently used. Memory is allocated on
 * first use, so idle virtual nodes cost a few words. Owner thread only. */
#ifndef DROVER_SIM_SIM_CACHE_H
#define DROVER_SIM_SIM_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sim_cache_entry;

struct sim_cache {
    struct sim_cache_entry *e; /* owned, cap entries; NULL until first insert */
    uint32_t *heads;           /* owned, hash chains; mask + 1 entries */
    uint32_t mask;
    uint32_t cap; /* max blocks kept; 0 disables the cache */
    uint32_t n;   /* blocks kept */
    uint32_t mru; /* most recently used entry, or SIM_CACHE_NIL */
    uint32_t lru; /* least recently used entry, or SIM_CACHE_NIL */
    uint64_t evictions;
};

enum { SIM_CACHE_NIL = UINT32_MAX };

void sim_cache_init(struct sim_cache *c, uint32_t cap_blocks);
void sim_cache_free(struct sim_cache *c);
/* True if key is cached; a hit becomes the most recently used. */
bool sim_cache_touch(struct sim_cache *c, uint64_t key);
/* Adds key as most recently used (or touches it), evicting the LRU block when full. */
void sim_cache_insert(struct sim_cache *c, uint64_t key);
/* Counts the leading keys[0..n) that are cached (stopping at the first miss), then inserts
 * every key. Returns that count. */
size_t sim_cache_match(struct sim_cache *c, const uint64_t *keys, size_t n);

/* Writes the chained block keys of p[0..len) into out (at most max; a trailing partial block
 * gets no key, as engines cache whole blocks only). Returns the number written. */
size_t sim_cache_block_keys(uint64_t seed, const char *p, size_t len, size_t block_bytes,
                            uint64_t *out, size_t max);

#endif
