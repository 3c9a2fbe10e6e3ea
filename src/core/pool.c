/*
 * pool.c: the block pool (see pool.h).
 */
#include "core/pool.h"

#include <stdlib.h>

moat_rc moat_pool_init(struct moat_pool *p, size_t max)
{
    p->blocks = calloc(max, sizeof(char *));
    p->n = p->low = 0;
    p->max = max;
    return p->blocks != NULL ? MOAT_RC_OK : moat_rc_of(MOAT_E_NOMEM);
}

void moat_pool_clear(struct moat_pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->blocks[i]);
    }
    free(p->blocks);
    p->blocks = NULL;
    p->n = p->low = p->max = 0;
}

char *moat_pool_get(struct moat_pool *p)
{
    if (p->n > 0) {
        char *b = p->blocks[--p->n];
        if (p->n < p->low) {
            p->low = p->n;
        }
        return b;
    }
    p->low = 0;
    return malloc(MOAT_POOL_BLOCK);
}

void moat_pool_put(struct moat_pool *p, char *block)
{
    if (p->n < p->max) {
        p->blocks[p->n++] = block;
    } else {
        free(block);
    }
}

size_t moat_pool_sweep(struct moat_pool *p, size_t keep)
{
    size_t spare = p->low > keep ? p->low - keep : 0;
    for (size_t i = 0; i < spare; i++) {
        free(p->blocks[--p->n]);
        p->blocks[p->n] = NULL;
    }
    p->low = p->n;
    return spare;
}

moat_rc moat_pool_buf_acquire(struct moat_pool *p, struct moat_buf *b)
{
    if (b->base != NULL) {
        return MOAT_RC_OK;
    }
    char *block = moat_pool_get(p);
    if (block == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    b->base = block;
    b->cap = MOAT_POOL_BLOCK;
    b->rd = b->wr = 0;
    return MOAT_RC_OK;
}

void moat_pool_buf_release(struct moat_pool *p, struct moat_buf *b)
{
    if (b->base == NULL) {
        return;
    }
    if (b->cap == MOAT_POOL_BLOCK) {
        moat_pool_put(p, b->base);
    } else {
        free(b->base);
    }
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
}
