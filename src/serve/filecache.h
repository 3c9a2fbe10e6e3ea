/*
 * filecache.h: a worker's cache of open files for the static handler, so that a file asked for
 * again costs no openat2, fstat or close: the descriptor, its stat result and its ETag stay open
 * between requests (nginx's open_file_cache, h2o's filecache).
 *
 * Freshness: an entry is trusted for `valid_ms` after it was last checked; the next request after
 * that re-stats the path (fstatat, not following a final symbolic link) and keeps the entry only
 * if it is the same file, unchanged (device, inode, size, mtime and ctime). A file changed in
 * place or replaced (rename, a new file, a symbolic link) is therefore served as it was for at
 * most `valid_ms`; a path that stopped resolving is dropped and opened (and refused) anew
 * through the handler's secure open. Only regular files reached by a path's own name are kept.
 *
 * Bounded: at most `max` entries; the least recently used idle one makes room. An entry an
 * answer still sends from (refs > 0) is never closed under it: evicted or stale, it is retired
 * and closed when its last answer lets go. One cache per worker thread: no locks.
 */
#ifndef MOAT_SERVE_FILECACHE_H
#define MOAT_SERVE_FILECACHE_H

#include "core/err.h"
#include "core/httpdate.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Files up to this size are kept in memory too (no pread per answer), up to MOAT_FCACHE_BYTES
 * per worker in all. */
#define MOAT_FCACHE_SMALL 8192
#define MOAT_FCACHE_BYTES (8 * 1024 * 1024)

struct moat_fcache_entry {
    int fd;         /* owned by the cache */
    struct stat st; /* when it was opened (and found unchanged since) */
    unsigned refs;  /* answers sending from fd */
    int retired;    /* no longer findable; closed at refs == 0 */
    uint64_t checked_ms;
    uint64_t key;                                  /* the site's cache key */
    struct moat_fcache_entry *lru_prev, *lru_next; /* findable ones, most recent first */
    struct moat_fcache_entry *hnext;               /* hash chain; retired: the retired list */
    struct moat_fcache *cache;
    char *bytes; /* a small file's content, read when it was put; NULL: read from fd */
    /* What the static handler derives from `st` (ETag, Last-Modified, media type), worked
     * out at the first answer and kept with the entry, so a hit formats nothing. The entry
     * is replaced, not changed, when its file changes: these never go stale. */
    struct moat_fcache_meta {
        int ready;
        unsigned char etag_len;
        char etag[24]; /* make_etag: 18 */
        char last_modified[MOAT_HTTPDATE_SIZE];
        const char *type; /* static (mime.c) */
    } meta;
    size_t plen;
    char path[]; /* relative to the site's root, NUL-terminated */
};

struct moat_fcache {
    struct moat_fcache_entry **buckets;
    size_t nbuckets; /* a power of two */
    struct moat_fcache_entry *lru_head, *lru_tail;
    struct moat_fcache_entry *retired;
    size_t n, max;
    size_t bytes_held; /* small files' content, at most MOAT_FCACHE_BYTES */
    uint64_t valid_ms;
    unsigned long long hits, misses, stale;
};

/* A cache of at most `max` files (0: none is kept), each trusted for `valid_ms`. */
MOAT_MUST_USE moat_rc moat_fcache_init(struct moat_fcache *c, size_t max, uint64_t valid_ms);
/* Close every file; entries still referenced are left to their release (the worker calls this
 * after its connections are gone). */
void moat_fcache_clear(struct moat_fcache *c);
/* Change the bounds (a reload): entries over the new size go as they become idle. */
void moat_fcache_configure(struct moat_fcache *c, size_t max, uint64_t valid_ms);

/*
 * The entry for `rel` (relative to the root of the site `key` whose root descriptor is
 * `root_fd`), checked as described above, with one reference taken; NULL when there is none
 * (or it went stale: then the caller opens the file as usual and may put it).
 */
struct moat_fcache_entry *moat_fcache_get(struct moat_fcache *c, uint64_t key, int root_fd,
                                          const char *rel, size_t len, uint64_t now_ms);
/* Keep the freshly opened regular file `fd` (ownership passes to the cache) under `rel`; the
 * entry is returned with one reference taken. NULL when the cache keeps nothing (max 0, full of
 * busy entries, out of memory): fd then stays the caller's. */
struct moat_fcache_entry *moat_fcache_put(struct moat_fcache *c, uint64_t key, const char *rel,
                                          size_t len, int fd, const struct stat *st,
                                          uint64_t now_ms);
/* Forget every file (a new configuration: its sites have other keys); busy ones close when
 * their answers let go. */
void moat_fcache_flush(struct moat_fcache *c);
/* An answer is done with the entry (the moat_res fd_release of a cached file). */
void moat_fcache_release(void *entry);

#endif
