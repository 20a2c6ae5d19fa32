/* freelist — see freelist.h. */
#include "base/freelist.h"

#include <sanitizer/asan_interface.h> /* no-op macros outside ASan builds */
#include <string.h>

#include "base/mem.h"

void freelist_init(struct freelist *f, size_t obj_bytes, size_t max)
{
    f->head = NULL;
    f->n = 0;
    f->max = max;
    f->obj_bytes = obj_bytes < sizeof(void *) ? sizeof(void *) : obj_bytes;
}

void *freelist_get(struct freelist *f)
{
    void *p = f->head;
    if (!p) return xcalloc(1, f->obj_bytes);
    ASAN_UNPOISON_MEMORY_REGION(p, f->obj_bytes);
    f->head = *(void **)p;
    f->n--;
    memset(p, 0, f->obj_bytes);
    return p;
}

void freelist_put(struct freelist *f, void *p)
{
    if (!p) return;
    if (f->n >= f->max) {
        xfree(p);
        return;
    }
    *(void **)p = f->head;
    ASAN_POISON_MEMORY_REGION((char *)p + sizeof(void *), f->obj_bytes - sizeof(void *));
    f->head = p;
    f->n++;
}

void freelist_drain(struct freelist *f)
{
    while (f->head) {
        void *p = f->head;
        ASAN_UNPOISON_MEMORY_REGION(p, f->obj_bytes);
        f->head = *(void **)p;
        xfree(p);
    }
    f->n = 0;
}
