/* arena — per-request bump allocator. Everything a request needs for its lifetime comes from
 * here and is freed at once by arena_reset/arena_free. A total cap bounds what one request
 * may take; allocation past it returns NULL (callers answer 413/500, never abort). The owner
 * thread only. */
#ifndef DROVER_BASE_ARENA_H
#define DROVER_BASE_ARENA_H
#include <stddef.h>

#include "base/strv.h"

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* owned list, newest first */
    size_t chunk_bytes;       /* default chunk size */
    size_t used_bytes;        /* bytes handed out since the last reset */
    size_t max_bytes;         /* cap on used_bytes */
};

void arena_init(struct arena *a, size_t chunk_bytes, size_t max_bytes);
/* Returns memory aligned to 16 bytes, owned by the arena; NULL past the cap. */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n); /* NUL-terminated; NULL past cap */
struct strv arena_strv(struct arena *a, struct strv v);        /* copy; empty view past cap */
/* Frees every chunk but the first, which is kept for reuse. */
void arena_reset(struct arena *a);
void arena_free(struct arena *a);

#endif
