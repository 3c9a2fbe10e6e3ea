/*
 * slab.h: a thread's recycling allocator for the small, short-lived blocks a library makes per
 * request (nghttp2 allocates a stream, its frames, header copies and queue items for every
 * HTTP/2 request and frees them a moment later). Freed blocks go on a free list for their size
 * class and come back on the next allocation of that class, so the steady state calls neither
 * malloc nor free. Bounded: each class keeps at most `keep` free blocks; the rest go back to
 * malloc. Blocks above the largest class are plain malloc with a header. One slab per worker
 * thread, used by that thread only: no locks.
 */
#ifndef MOAT_CORE_SLAB_H
#define MOAT_CORE_SLAB_H

#include <stddef.h>

#define MOAT_SLAB_CLASSES 8 /* 32, 64, ... 4096 bytes */

struct moat_slab {
    void *free[MOAT_SLAB_CLASSES]; /* owned: singly linked through the blocks */
    unsigned nfree[MOAT_SLAB_CLASSES];
    unsigned keep;
};

void moat_slab_init(struct moat_slab *s, unsigned keep);
/* Free every kept block (the slab's users must have freed theirs). */
void moat_slab_clear(struct moat_slab *s);

/* The malloc family over the slab: same contracts (NULL on failure, free(NULL) does nothing,
 * realloc keeps the bytes). A block must go back to the slab it came from. */
void *moat_slab_alloc(struct moat_slab *s, size_t size);
void *moat_slab_calloc(struct moat_slab *s, size_t n, size_t size);
void *moat_slab_realloc(struct moat_slab *s, void *p, size_t size);
void moat_slab_free(struct moat_slab *s, void *p);

#endif
