/* prefix_cache — per-node prompt-prefix table for cache-aware routing (docs/routing.md).
 * Invariant: every used entry is in exactly one bucket chain, in the global recency list and in
 * its node's, n <= cap, and nodes[id].count (<= node_cap) is the number of used entries of id.
 * Entries are allocated once, at the first use (cap × 32 bytes plus the buckets). The loop thread
 * only. */
#include "gw/prefix_cache.h"

#include <json-c/json.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "gw/registry_types.h"

enum { NIL = UINT32_MAX };

struct pc_entry {
    uint64_t key;
    uint32_t node;
    uint32_t prev, next;   /* recency list (prev is more recent); free list through next */
    uint32_t nprev, nnext; /* the node's own recency list */
    uint32_t hnext;        /* bucket chain */
};

struct pc_node {
    uint32_t count;    /* entries of the node */
    uint32_t mru, lru; /* its own recency list */
};

struct prefix_cache {
    size_t cap, n;
    uint32_t mru, lru, free_head, used; /* used: entries ever handed out (≤ cap) */
    struct pc_entry *e;
    uint32_t *heads;
    uint32_t mask;
    size_t block_bytes, max_blocks;
    uint64_t *scratch;     /* max_blocks keys */
    char *text;            /* prefix_cache_render's buffer, max_blocks × block_bytes */
    size_t node_cap;       /* entries per node at most (its engine's cache), 0: no cap */
    struct pc_node *nodes; /* per node id */
    size_t n_nodes;
    size_t sizes[4]; /* prefix_cache_ensure: what it was made with */
};

/* Node ids are unique for the process (a re-created cache never gives two nodes one id). */
static uint32_t next_node_id;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_block(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h = (h << 31) | (h >> 33);
    }
    for (; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return mix64(h);
}

struct prefix_cache *prefix_cache_new(size_t max_entries, size_t node_entries, size_t block_bytes,
                                      size_t prefix_bytes)
{
    struct prefix_cache *pc = xcalloc(1, sizeof *pc);
    pc->node_cap = node_entries;
    pc->cap = max_entries ? max_entries : 1;
    if (pc->cap > UINT32_MAX - 1) pc->cap = UINT32_MAX - 1;
    pc->block_bytes = block_bytes < PREFIX_MIN_BLOCK_BYTES ? PREFIX_MIN_BLOCK_BYTES : block_bytes;
    pc->max_blocks = prefix_bytes / pc->block_bytes;
    if (pc->max_blocks > PREFIX_MAX_BLOCKS) pc->max_blocks = PREFIX_MAX_BLOCKS;
    if (pc->max_blocks == 0) pc->max_blocks = 1;
    pc->mru = pc->lru = pc->free_head = NIL;
    return pc;
}

void prefix_cache_free(struct prefix_cache *pc)
{
    if (!pc) return;
    xfree(pc->e);
    xfree(pc->heads);
    xfree(pc->scratch);
    xfree(pc->text);
    xfree(pc->nodes);
    xfree(pc);
}

struct prefix_cache *prefix_cache_ensure(struct prefix_cache **slot, size_t max_entries,
                                         size_t node_entries, size_t block_bytes,
                                         size_t prefix_bytes)
{
    struct prefix_cache *pc = *slot;
    if (!max_entries) {
        prefix_cache_free(pc);
        *slot = NULL;
        return NULL;
    }
    if (pc && pc->sizes[0] == max_entries && pc->sizes[1] == block_bytes &&
        pc->sizes[2] == prefix_bytes && pc->sizes[3] == node_entries)
        return pc;
    prefix_cache_free(pc);
    pc = prefix_cache_new(max_entries, node_entries, block_bytes, prefix_bytes);
    if (pc) {
        pc->sizes[0] = max_entries;
        pc->sizes[1] = block_bytes;
        pc->sizes[2] = prefix_bytes;
        pc->sizes[3] = node_entries;
    }
    *slot = pc;
    return pc;
}

static void ensure(struct prefix_cache *pc)
{
    if (pc->e) return;
    uint32_t nb = 1;
    while (nb < pc->cap && nb < (1u << 30)) nb <<= 1;
    pc->mask = nb - 1;
    pc->e = xcalloc(pc->cap, sizeof *pc->e);
    pc->heads = xmalloc((size_t)nb * sizeof *pc->heads);
    for (uint32_t i = 0; i < nb; i++) pc->heads[i] = NIL;
}

static uint32_t bucket(const struct prefix_cache *pc, uint64_t key, uint32_t node)
{
    return (uint32_t)mix64(key ^ ((uint64_t)node * 0x9e3779b97f4a7c15ULL)) & pc->mask;
}

static uint32_t find(const struct prefix_cache *pc, uint64_t key, uint32_t node)
{
    if (!pc->e || !node) return NIL;
    for (uint32_t i = pc->heads[bucket(pc, key, node)]; i != NIL; i = pc->e[i].hnext)
        if (pc->e[i].key == key && pc->e[i].node == node) return i;
    return NIL;
}

static void unlink_recency(struct prefix_cache *pc, uint32_t i)
{
    struct pc_entry *x = &pc->e[i];
    if (x->prev != NIL)
        pc->e[x->prev].next = x->next;
    else
        pc->mru = x->next;
    if (x->next != NIL)
        pc->e[x->next].prev = x->prev;
    else
        pc->lru = x->prev;
}

static void push_mru(struct prefix_cache *pc, uint32_t i)
{
    struct pc_entry *x = &pc->e[i];
    x->prev = NIL;
    x->next = pc->mru;
    if (pc->mru != NIL) pc->e[pc->mru].prev = i;
    pc->mru = i;
    if (pc->lru == NIL) pc->lru = i;
}

static struct pc_node *node_of(struct prefix_cache *pc, uint32_t id)
{
    if (id >= pc->n_nodes) {
        size_t nn = pc->n_nodes ? pc->n_nodes : 64;
        while (nn <= id) nn *= 2;
        pc->nodes = xrealloc(pc->nodes, nn * sizeof *pc->nodes);
        for (size_t k = pc->n_nodes; k < nn; k++) pc->nodes[k] = (struct pc_node){0, NIL, NIL};
        pc->n_nodes = nn;
    }
    return &pc->nodes[id];
}

static void unlink_node(struct prefix_cache *pc, uint32_t i)
{
    struct pc_entry *x = &pc->e[i];
    struct pc_node *nd = node_of(pc, x->node);
    if (x->nprev != NIL)
        pc->e[x->nprev].nnext = x->nnext;
    else
        nd->mru = x->nnext;
    if (x->nnext != NIL)
        pc->e[x->nnext].nprev = x->nprev;
    else
        nd->lru = x->nprev;
}

static void push_node_mru(struct prefix_cache *pc, uint32_t i)
{
    struct pc_entry *x = &pc->e[i];
    struct pc_node *nd = node_of(pc, x->node);
    x->nprev = NIL;
    x->nnext = nd->mru;
    if (nd->mru != NIL) pc->e[nd->mru].nprev = i;
    nd->mru = i;
    if (nd->lru == NIL) nd->lru = i;
}

static void unlink_bucket(struct prefix_cache *pc, uint32_t i)
{
    uint32_t *pp = &pc->heads[bucket(pc, pc->e[i].key, pc->e[i].node)];
    while (*pp != i) pp = &pc->e[*pp].hnext;
    *pp = pc->e[i].hnext;
}

/* Removes entry i from every list; the caller reuses or frees the slot. */
static void drop(struct prefix_cache *pc, uint32_t i)
{
    unlink_recency(pc, i);
    unlink_node(pc, i);
    unlink_bucket(pc, i);
    node_of(pc, pc->e[i].node)->count--;
    pc->n--;
}

struct prefix_keys prefix_cache_keys(struct prefix_cache *pc, struct strv model, struct strv text)
{
    if (!pc->scratch) pc->scratch = xmalloc(pc->max_blocks * sizeof *pc->scratch);
    size_t n = text.len / pc->block_bytes;
    if (n > pc->max_blocks) n = pc->max_blocks;
    uint64_t k = hash_block(0x6472766572ULL, model.p ? model.p : "", model.len);
    for (size_t i = 0; i < n; i++) {
        k = hash_block(k, text.p + i * pc->block_bytes, pc->block_bytes);
        pc->scratch[i] = k;
    }
    return (struct prefix_keys){pc->scratch, n};
}

size_t prefix_cache_match(struct prefix_cache *pc, const struct node *n,
                          const struct prefix_keys *k)
{
    if (!n->route_id || !k->n) return 0;
    /* largest m with block m−1 present: the chain makes presence (nearly) monotone */
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (find(pc, k->k[mid - 1], n->route_id) != NIL)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void prefix_cache_insert(struct prefix_cache *pc, struct node *n, const struct prefix_keys *k)
{
    if (!k->n) return;
    ensure(pc);
    if (!n->route_id) n->route_id = ++next_node_id;
    uint32_t id = n->route_id;
    for (size_t b = 0; b < k->n; b++) {
        uint32_t i = find(pc, k->k[b], id);
        if (i != NIL) {
            unlink_recency(pc, i);
            push_mru(pc, i);
            unlink_node(pc, i);
            push_node_mru(pc, i);
            continue;
        }
        struct pc_node *nd = node_of(pc, id);
        if (pc->node_cap && nd->count >= pc->node_cap) {
            i = nd->lru; /* the node's engine holds no more: its oldest prefix goes */
            drop(pc, i);
        } else if (pc->free_head != NIL) {
            i = pc->free_head;
            pc->free_head = pc->e[i].next;
        } else if (pc->used < pc->cap) {
            i = pc->used++;
        } else {
            i = pc->lru; /* the least recently used entry of any node makes room */
            drop(pc, i);
        }
        struct pc_entry *x = &pc->e[i];
        x->key = k->k[b];
        x->node = id;
        uint32_t h = bucket(pc, x->key, id);
        x->hnext = pc->heads[h];
        pc->heads[h] = i;
        push_mru(pc, i);
        push_node_mru(pc, i);
        node_of(pc, id)->count++;
        pc->n++;
    }
}

size_t prefix_cache_node_entries(const struct prefix_cache *pc, const struct node *n)
{
    return n->route_id && n->route_id < pc->n_nodes ? pc->nodes[n->route_id].count : 0;
}

size_t prefix_cache_entries(const struct prefix_cache *pc)
{
    return pc->n;
}

size_t prefix_cache_capacity(const struct prefix_cache *pc)
{
    return pc->cap;
}

void prefix_cache_forget(struct prefix_cache *pc, const struct node *n)
{
    if (!pc->e || !n->route_id || prefix_cache_node_entries(pc, n) == 0) return;
    struct pc_node *nd = node_of(pc, n->route_id);
    while (nd->mru != NIL) {
        uint32_t i = nd->mru;
        drop(pc, i);
        pc->e[i].next = pc->free_head;
        pc->free_head = i;
    }
}

/* ---- the prompt as the engine sees it ------------------------------------------------- */

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) n = o->cap - o->len;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_content(struct out *o, struct json_object *c)
{
    if (json_object_is_type(c, json_type_string)) {
        put(o, json_object_get_string(c), (size_t)json_object_get_string_len(c));
        return;
    }
    if (!json_object_is_type(c, json_type_array)) return;
    for (size_t i = 0; i < json_object_array_length(c); i++) {
        struct strv t;
        struct json_object *part = json_object_array_get_idx(c, i);
        if (part && json_object_is_type(part, json_type_object) &&
            json_get_str(part, "text", &t) == 0)
            put(o, t.p, t.len);
    }
}

size_t prefix_render_prompt(struct strv body, char *out, size_t cap)
{
    if (!body.len || !cap) return 0;
    struct json_object *root = json_parse_strict(body.p, body.len, 64, NULL);
    if (!root) return 0;
    struct out o = {out, 0, cap};
    struct json_object *msgs = NULL, *v = NULL;
    if (json_get_arr(root, "messages", &msgs) == 0) {
        for (size_t i = 0; i < json_object_array_length(msgs) && o.len < cap; i++) {
            struct json_object *m = json_object_array_get_idx(msgs, i);
            struct strv role;
            if (!m || !json_object_is_type(m, json_type_object) || json_get_str(m, "role", &role))
                continue;
            put(&o, role.p, role.len);
            put(&o, ": ", 2);
            if (json_object_object_get_ex(m, "content", &v) && v) put_content(&o, v);
            put(&o, "\n", 1);
        }
    } else {
        struct strv s;
        if (json_get_str(root, "system", &s) == 0) put(&o, s.p, s.len); /* Ollama generate */
        if (json_object_object_get_ex(root, "prompt", &v) && v) {
            if (json_object_is_type(v, json_type_array) && json_object_array_length(v))
                v = json_object_array_get_idx(v, 0);
            if (v && json_object_is_type(v, json_type_string))
                put(&o, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        }
    }
    json_object_put(root);
    return o.len;
}

struct strv prefix_cache_render(struct prefix_cache *pc, struct strv body)
{
    size_t cap = pc->max_blocks * pc->block_bytes;
    if (!pc->text) pc->text = xmalloc(cap);
    size_t n = prefix_render_prompt(body, pc->text, cap);
    return (struct strv){pc->text, n};
}
