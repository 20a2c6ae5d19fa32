/* freelist — a bounded free list of same-sized objects, for states freed and allocated once per
 * request (larger than malloc's per-thread cache takes). The first word of a spare links the
 * list; the rest is poisoned under ASan, so a use after free is still reported. The owner
 * thread only. */
#ifndef DROVER_BASE_FREELIST_H
#define DROVER_BASE_FREELIST_H
#include <stddef.h>

struct freelist {
    void *head;       /* spares, linked through their first word */
    size_t n, max;    /* spares kept, and at most */
    size_t obj_bytes; /* size of each object (at least a pointer) */
};

void freelist_init(struct freelist *f, size_t obj_bytes, size_t max);
/* A zeroed object: a spare when there is one, else a fresh allocation (aborts on OOM). */
void *freelist_get(struct freelist *f);
/* Takes p back (kept when below max, freed otherwise). */
void freelist_put(struct freelist *f, void *p);
/* Frees every spare. */
void freelist_drain(struct freelist *f);

#endif
