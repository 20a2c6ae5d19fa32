/* mem — allocation wrappers. Every heap allocation in drover goes through these; they abort
 * on out-of-memory (a gateway that cannot allocate 64 bytes has nothing useful left to do).
 * What strangers can grow is capped elsewhere (buf, arena), never here. Any thread. */
#ifndef DROVER_BASE_MEM_H
#define DROVER_BASE_MEM_H
#include <stddef.h>

void *xmalloc(size_t n);                 /* returns owned; never NULL */
void *xcalloc(size_t n, size_t size);    /* returns owned, zeroed; never NULL */
void *xrealloc(void *p, size_t n);       /* takes p, returns owned */
char *xstrdup(const char *s);            /* returns owned copy */
char *xstrndup(const char *s, size_t n); /* returns owned NUL-terminated copy of n bytes */
void xfree(void *p);                     /* takes p; NULL is fine */

#endif
