/*
 * filecache.c: the worker's open-file cache (see filecache.h).
 */
#include "serve/filecache.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t hash_of(uint64_t key, const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ key; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

moat_rc moat_fcache_init(struct moat_fcache *c, size_t max, uint64_t valid_ms)
{
    memset(c, 0, sizeof(*c));
    c->max = max;
    c->valid_ms = valid_ms;
    size_t nb = 64;
    while (nb < max * 2 && nb < ((size_t)1 << 24)) {
        nb *= 2;
    }
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    c->nbuckets = nb;
    return MOAT_RC_OK;
}

void moat_fcache_configure(struct moat_fcache *c, size_t max, uint64_t valid_ms)
{
    c->max = max; /* the buckets stay: chains only grow longer when max grows past them */
    c->valid_ms = valid_ms;
}

static void entry_free(struct moat_fcache_entry *e)
{
    if (e->bytes != NULL) {
        e->cache->bytes_held -= (size_t)e->st.st_size;
        free(e->bytes);
    }
    close(e->fd);
    free(e);
}

/* Take `e` out of the hash and the LRU list; closed now when idle, else when released. */
static void retire(struct moat_fcache *c, struct moat_fcache_entry *e)
{
    struct moat_fcache_entry **pp =
        &c->buckets[hash_of(e->key, e->path, e->plen) & (c->nbuckets - 1)];
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
    }
    if (e->lru_prev != NULL) {
        e->lru_prev->lru_next = e->lru_next;
    } else {
        c->lru_head = e->lru_next;
    }
    if (e->lru_next != NULL) {
        e->lru_next->lru_prev = e->lru_prev;
    } else {
        c->lru_tail = e->lru_prev;
    }
    e->lru_prev = e->lru_next = NULL;
    c->n--;
    e->retired = 1;
    if (e->refs == 0) {
        entry_free(e);
        return;
    }
    e->hnext = c->retired;
    c->retired = e;
}

static void touch(struct moat_fcache *c, struct moat_fcache_entry *e)
{
    if (c->lru_head == e) {
        return;
    }
    e->lru_prev->lru_next = e->lru_next;
    if (e->lru_next != NULL) {
        e->lru_next->lru_prev = e->lru_prev;
    } else {
        c->lru_tail = e->lru_prev;
    }
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    c->lru_head->lru_prev = e;
    c->lru_head = e;
}

/* The same file as when it was opened, unchanged: nothing about it that a client could see
 * differs (content via size and times, identity via device and inode). */
static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec &&
           S_ISREG(b->st_mode);
}

/* A small file's content, read now: what a later answer sends without a read. Short (the file
 * changed since its stat): not kept; the next check of the entry will find the change. */
static void keep_bytes(struct moat_fcache *c, struct moat_fcache_entry *e)
{
    size_t size = (size_t)e->st.st_size;
    if (size == 0 || size > MOAT_FCACHE_SMALL || c->bytes_held + size > MOAT_FCACHE_BYTES) {
        return;
    }
    char *b = malloc(size);
    if (b == NULL) {
        return;
    }
    /* Read, then make sure nothing wrote in between: bytes that disagree with the stat would
     * go out under the stat's ETag. */
    struct stat after;
    if (pread(e->fd, b, size, 0) != (ssize_t)size || fstat(e->fd, &after) != 0 ||
        !same_file(&e->st, &after)) {
        free(b);
        return;
    }
    e->bytes = b;
    c->bytes_held += size;
}

struct moat_fcache_entry *moat_fcache_get(struct moat_fcache *c, uint64_t key, int root_fd,
                                          const char *rel, size_t len, uint64_t now_ms)
{
    if (c->buckets == NULL || c->max == 0) {
        return NULL;
    }
    struct moat_fcache_entry *e = c->buckets[hash_of(key, rel, len) & (c->nbuckets - 1)];
    while (e != NULL && !(e->key == key && e->plen == len && memcmp(e->path, rel, len) == 0)) {
        e = e->hnext;
    }
    if (e == NULL) {
        c->misses++;
        return NULL;
    }
    if (now_ms - e->checked_ms >= c->valid_ms) {
        struct stat now_st;
        if (fstatat(root_fd, e->path, &now_st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !same_file(&e->st, &now_st)) {
            c->stale++;
            retire(c, e);
            return NULL;
        }
        e->checked_ms = now_ms;
    }
    c->hits++;
    touch(c, e);
    e->refs++;
    return e;
}

struct moat_fcache_entry *moat_fcache_put(struct moat_fcache *c, uint64_t key, const char *rel,
                                          size_t len, int fd, const struct stat *st,
                                          uint64_t now_ms)
{
    if (c->buckets == NULL || c->max == 0) {
        return NULL;
    }
    /* Room: the least recently used idle entries go (a few at most are busy). */
    struct moat_fcache_entry *v = c->lru_tail;
    for (int tries = 0; c->n >= c->max && v != NULL && tries < 8; tries++) {
        struct moat_fcache_entry *prev = v->lru_prev;
        if (v->refs == 0) {
            retire(c, v);
        }
        v = prev;
    }
    if (c->n >= c->max) {
        return NULL;
    }
    struct moat_fcache_entry *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) {
        return NULL;
    }
    e->fd = fd;
    e->st = *st;
    e->refs = 1;
    e->checked_ms = now_ms;
    e->key = key;
    e->cache = c;
    e->plen = len;
    memcpy(e->path, rel, len);
    e->path[len] = '\0';
    keep_bytes(c, e);
    struct moat_fcache_entry **b = &c->buckets[hash_of(key, rel, len) & (c->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    e->lru_next = c->lru_head;
    if (c->lru_head != NULL) {
        c->lru_head->lru_prev = e;
    } else {
        c->lru_tail = e;
    }
    c->lru_head = e;
    c->n++;
    return e;
}

void moat_fcache_release(void *entry)
{
    struct moat_fcache_entry *e = entry;
    if (e->refs > 0) {
        e->refs--;
    }
    if (e->refs > 0 || !e->retired) {
        return;
    }
    /* A retired entry's last answer: unlink it from the retired list, then close. */
    struct moat_fcache *c = e->cache;
    struct moat_fcache_entry **pp = &c->retired;
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
    }
    entry_free(e);
}

void moat_fcache_flush(struct moat_fcache *c)
{
    while (c->lru_head != NULL) {
        retire(c, c->lru_head);
    }
}

void moat_fcache_clear(struct moat_fcache *c)
{
    moat_fcache_flush(c);
    /* Retired ones still referenced belong to answers of connections already gone: none when
     * the worker clears after closing them all. */
    while (c->retired != NULL) {
        struct moat_fcache_entry *e = c->retired;
        c->retired = e->hnext;
        entry_free(e);
    }
    free(c->buckets);
    c->buckets = NULL;
    c->nbuckets = 0;
}
