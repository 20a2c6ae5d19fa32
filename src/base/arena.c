/* arena — chunked bump allocator. Invariant: used_bytes <= max_bytes; big requests get a
 * chunk of their own so a 1 MB body does not waste a default chunk. */
#include "base/arena.h"

#include <stdint.h>
#include <string.h>

#include "base/mem.h"

struct arena_chunk {
    struct arena_chunk *next;
    size_t size, off;
    _Alignas(16) unsigned char data[];
};

void arena_init(struct arena *a, size_t chunk_bytes, size_t max_bytes)
{
    a->head = NULL;
    a->chunk_bytes = chunk_bytes ? chunk_bytes : 4096;
    a->used_bytes = 0;
    a->max_bytes = max_bytes;
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n || need > a->max_bytes - a->used_bytes) return NULL;
    struct arena_chunk *c = a->head;
    if (!c || c->size - c->off < need) {
        size_t size = need > a->chunk_bytes ? need : a->chunk_bytes;
        c = xmalloc(sizeof *c + size);
        c->size = size;
        c->off = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->off;
    c->off += need;
    a->used_bytes += need;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL; /* n + 1 would wrap to 0 */
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

struct strv arena_strv(struct arena *a, struct strv v)
{
    char *p = arena_strndup(a, v.p, v.len);
    return p ? strv_make(p, v.len) : STRV_NULL;
}

void arena_reset(struct arena *a)
{
    struct arena_chunk *keep = NULL, *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        if (!next && c->size == a->chunk_bytes) {
            keep = c; /* the oldest default-sized chunk is reused */
        } else {
            xfree(c);
        }
        c = next;
    }
    if (keep) keep->off = 0;
    a->head = keep;
    a->used_bytes = 0;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        xfree(c);
        c = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}
