/*
 * slab.c: size classes of powers of two behind a 16-byte header that names the block's class
 * (or, for a big block, its size), so free and realloc need no lookup.
 */
#include "core/slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SHIFT 5 /* 32 bytes */
#define BIG UINT32_MAX

/* Keeps the caller's block aligned as malloc's (16 bytes on the platforms we build for). */
union hdr {
    struct {
        uint32_t cls; /* BIG: not pooled; `size` says how big */
        size_t size;
    } h;
    max_align_t align;
};

static unsigned class_of(size_t size)
{
    unsigned c = 0;
    size_t cap = (size_t)1 << MIN_SHIFT;
    while (cap < size && c < MOAT_SLAB_CLASSES) {
        cap <<= 1;
        c++;
    }
    return c; /* MOAT_SLAB_CLASSES: too big for a class */
}

static size_t class_size(unsigned c)
{
    return (size_t)1 << (MIN_SHIFT + c);
}

void moat_slab_init(struct moat_slab *s, unsigned keep)
{
    memset(s, 0, sizeof(*s));
    s->keep = keep;
}

void moat_slab_clear(struct moat_slab *s)
{
    for (unsigned c = 0; c < MOAT_SLAB_CLASSES; c++) {
        while (s->free[c] != NULL) {
            union hdr *h = s->free[c];
            memcpy(&s->free[c], h + 1, sizeof(void *));
            free(h);
        }
        s->nfree[c] = 0;
    }
}

void *moat_slab_alloc(struct moat_slab *s, size_t size)
{
    unsigned c = class_of(size);
    union hdr *h;
    if (c == MOAT_SLAB_CLASSES) {
        if (size > SIZE_MAX - sizeof(union hdr)) {
            return NULL;
        }
        h = malloc(sizeof(union hdr) + size);
        if (h == NULL) {
            return NULL;
        }
        h->h.cls = BIG;
        h->h.size = size;
        return h + 1;
    }
    if (s->free[c] != NULL) {
        h = s->free[c];
        memcpy(&s->free[c], h + 1, sizeof(void *)); /* the next link sits in the body */
        s->nfree[c]--;
        return h + 1;
    }
    h = malloc(sizeof(union hdr) + class_size(c));
    if (h == NULL) {
        return NULL;
    }
    h->h.cls = c;
    h->h.size = class_size(c);
    return h + 1;
}

void *moat_slab_calloc(struct moat_slab *s, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    void *p = moat_slab_alloc(s, n * size);
    if (p != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

void moat_slab_free(struct moat_slab *s, void *p)
{
    if (p == NULL) {
        return;
    }
    union hdr *h = (union hdr *)p - 1;
    uint32_t c = h->h.cls;
    if (c == BIG || s->nfree[c] >= s->keep) {
        free(h);
        return;
    }
    memcpy(h + 1, &s->free[c], sizeof(void *));
    s->free[c] = h;
    s->nfree[c]++;
}

void *moat_slab_realloc(struct moat_slab *s, void *p, size_t size)
{
    if (p == NULL) {
        return moat_slab_alloc(s, size);
    }
    union hdr *h = (union hdr *)p - 1;
    size_t have = h->h.size;
    if (size <= have && (h->h.cls != BIG || size == have)) {
        return p; /* a class block already big enough */
    }
    void *np = moat_slab_alloc(s, size);
    if (np == NULL) {
        return NULL; /* p stays valid, as realloc leaves it */
    }
    memcpy(np, p, have < size ? have : size);
    moat_slab_free(s, p);
    return np;
}
