/*
 * pool.h: a worker's pool of 4 KiB blocks for connection buffers. A busy connection takes a
 * block for its read buffer (and its answer) and gives it back when it goes idle, so 10,000
 * idle keep-alive connections hold no buffer at all, and a steady stream of requests reuses
 * the same blocks instead of calling malloc. A buffer that grew past one block is freed, not
 * pooled. One pool per worker thread: no locks.
 */
#ifndef MOAT_CORE_POOL_H
#define MOAT_CORE_POOL_H

#include "core/buf.h"

#include <stddef.h>

#define MOAT_POOL_BLOCK 4096

struct moat_pool {
    char **blocks; /* owned: free blocks */
    size_t n, max;
    size_t low; /* fewest blocks in the pool since the last sweep: the unused ones */
};

/* A pool that keeps at most `max` free blocks. */
MOAT_MUST_USE moat_rc moat_pool_init(struct moat_pool *p, size_t max);
void moat_pool_clear(struct moat_pool *p);

/* A block (from the pool, else malloc), or NULL when out of memory. */
char *moat_pool_get(struct moat_pool *p);
void moat_pool_put(struct moat_pool *p, char *block);
/* Free the blocks that stayed in the pool since the last sweep, less `keep`: the traffic of
 * that time did not need them. Returns how many were freed. */
size_t moat_pool_sweep(struct moat_pool *p, size_t keep);

/* Give `b` a pooled block as its storage unless it has storage already (its limit stays). */
MOAT_MUST_USE moat_rc moat_pool_buf_acquire(struct moat_pool *p, struct moat_buf *b);
/* Give `b`'s storage back (to the pool when it is one block, else to free) and empty it. */
void moat_pool_buf_release(struct moat_pool *p, struct moat_buf *b);

#endif
