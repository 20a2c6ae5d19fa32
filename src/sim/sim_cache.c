/* sim_cache — LRU set of 64-bit block keys: an index-linked recency list plus chained hash
 * buckets, all in two flat arrays sized once (cap entries, power-of-two buckets). Invariant:
 * every used entry is in exactly one bucket chain and in the recency list; n <= cap.
 * Owner thread only. */
#include "sim/sim_cache.h"

#include <stdbool.h>
#include <string.h>

#include "base/mem.h"

struct sim_cache_entry {
    uint64_t key;
    uint32_t prev, next; /* recency list: prev is more recent */
    uint32_t hnext;      /* bucket chain */
};

void sim_cache_init(struct sim_cache *c, uint32_t cap_blocks)
{
    memset(c, 0, sizeof *c);
    c->cap = cap_blocks;
    c->mru = c->lru = SIM_CACHE_NIL;
}

void sim_cache_free(struct sim_cache *c)
{
    xfree(c->e);
    xfree(c->heads);
    sim_cache_init(c, c->cap);
}

static uint32_t bucket(const struct sim_cache *c, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (uint32_t)key & c->mask;
}

static void ensure(struct sim_cache *c)
{
    if (c->e) return;
    uint32_t nb = 1;
    while (nb < c->cap && nb < (1u << 30)) nb <<= 1;
    c->mask = nb - 1;
    c->e = xcalloc(c->cap, sizeof *c->e);
    c->heads = xmalloc((size_t)nb * sizeof *c->heads);
    for (uint32_t i = 0; i < nb; i++) c->heads[i] = SIM_CACHE_NIL;
}

static uint32_t find(const struct sim_cache *c, uint64_t key)
{
    if (!c->e) return SIM_CACHE_NIL;
    for (uint32_t i = c->heads[bucket(c, key)]; i != SIM_CACHE_NIL; i = c->e[i].hnext)
        if (c->e[i].key == key) return i;
    return SIM_CACHE_NIL;
}

static void unlink_recency(struct sim_cache *c, uint32_t i)
{
    struct sim_cache_entry *e = &c->e[i];
    if (e->prev != SIM_CACHE_NIL)
        c->e[e->prev].next = e->next;
    else
        c->mru = e->next;
    if (e->next != SIM_CACHE_NIL)
        c->e[e->next].prev = e->prev;
    else
        c->lru = e->prev;
}

static void push_mru(struct sim_cache *c, uint32_t i)
{
    c->e[i].prev = SIM_CACHE_NIL;
    c->e[i].next = c->mru;
    if (c->mru != SIM_CACHE_NIL) c->e[c->mru].prev = i;
    c->mru = i;
    if (c->lru == SIM_CACHE_NIL) c->lru = i;
}

static void unlink_bucket(struct sim_cache *c, uint32_t i)
{
    uint32_t *link = &c->heads[bucket(c, c->e[i].key)];
    while (*link != i) link = &c->e[*link].hnext;
    *link = c->e[i].hnext;
}

bool sim_cache_touch(struct sim_cache *c, uint64_t key)
{
    uint32_t i = find(c, key);
    if (i == SIM_CACHE_NIL) return false;
    if (c->mru != i) {
        unlink_recency(c, i);
        push_mru(c, i);
    }
    return true;
}

void sim_cache_insert(struct sim_cache *c, uint64_t key)
{
    if (c->cap == 0 || sim_cache_touch(c, key)) return;
    ensure(c);
    uint32_t i;
    if (c->n < c->cap) {
        i = c->n++;
    } else {
        i = c->lru;
        unlink_recency(c, i);
        unlink_bucket(c, i);
        c->evictions++;
    }
    c->e[i].key = key;
    uint32_t b = bucket(c, key);
    c->e[i].hnext = c->heads[b];
    c->heads[b] = i;
    push_mru(c, i);
}

size_t sim_cache_match(struct sim_cache *c, const uint64_t *keys, size_t n)
{
    size_t hit = 0;
    while (hit < n && find(c, keys[hit]) != SIM_CACHE_NIL) hit++;
    /* Insert back to front so the shortest prefix ends most recent and is evicted last. */
    for (size_t i = n; i-- > 0;) sim_cache_insert(c, keys[i]);
    return hit;
}

static uint64_t mix(uint64_t h, const unsigned char *p, size_t len)
{
    /* FNV-1a over the bytes, seeded with the previous block's key. */
    h ^= 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return h;
}

size_t sim_cache_block_keys(uint64_t seed, const char *p, size_t len, size_t block_bytes,
                            uint64_t *out, size_t max)
{
    if (block_bytes == 0) return 0;
    size_t n = 0;
    uint64_t h = seed;
    for (size_t off = 0; off + block_bytes <= len && n < max; off += block_bytes) {
        h = mix(h, (const unsigned char *)p + off, block_bytes);
        out[n++] = h;
    }
    return n;
}
