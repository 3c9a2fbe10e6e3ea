/*
 * cache.h: the shared HTTP cache in front of a site's proxied answers (RFC 9111;
 * docs/cache.md). One store per process, shared by the workers: entries keyed by the request's
 * URI (and, for a Vary'ing answer, by the request fields it names), bodies in memory files
 * (memfd) so that a hit is sent like a file (sendfile, or read and encrypted in place), bounded
 * in bytes with least-recently-used eviction.
 *
 * Per request (serve/conn.c): moat_cache_serve answers from the store when it can (a hit: 200
 * or 304, HEAD from a stored GET), else lets the request go to the origin through a filter
 * exchange that stores the answer while it is relayed (never buffered whole first) and says
 * what it did in Cache-Status (RFC 9211).
 */
#ifndef MOAT_SERVE_CACHE_H
#define MOAT_SERVE_CACHE_H

#include "core/err.h"
#include "http/cachepolicy.h"
#include "http/exchange.h"
#include "serve/conf.h"

#include <stdint.h>

struct moat_cache;

struct moat_cache_stats {
    unsigned long long hits, misses, stored, evicted, purged, invalidated, collapsed;
    uint64_t bytes, entries;
    /* The disk tier: files and their bytes, written, read back on a miss in memory, evicted,
     * and answers not written because the writer was behind. */
    uint64_t disk_entries, disk_bytes;
    unsigned long long disk_written, disk_hits, disk_evicted, disk_skipped;
};

/* A store of at most `memory` bytes of bodies and headers, objects of at most `max_object`. */
MOAT_MUST_USE moat_rc moat_cache_new(uint64_t memory, uint64_t max_object, struct moat_cache **out,
                                     struct moat_err *err);
void moat_cache_free(struct moat_cache *c);
/* The disk tier in `dir` (made 0700 when missing), at most `max` bytes of files: the files a
 * run before left are indexed (damaged ones removed) and a thread starts that writes each new
 * answer there. Once, at start (`serve --check` never calls it: it makes nothing). */
MOAT_MUST_USE moat_rc moat_cache_disk_open(struct moat_cache *c, const char *dir, uint64_t max,
                                           struct moat_err *err);
/* A reload's new bounds (entries over them go first). */
void moat_cache_configure(struct moat_cache *c, const struct moat_conf *conf);

void moat_cache_stats(struct moat_cache *c, struct moat_cache_stats *out);

/* A relayed answer being stored: the filter between the session and the handler. */
struct moat_cache_tee;

/* A worker's background revalidations (stale-while-revalidate): they answer nobody, so the
 * worker ends what is left of them when it stops (moat_cache_bg_stop_all). */
struct moat_cache_bgs {
    struct moat_cache_tee *head;
};
void moat_cache_bg_stop_all(struct moat_cache_bgs *bgs);

struct moat_snapshot;
struct moat_loop;

/* How a request that waited on another for the same key (request collapsing) goes to the
 * origin itself when that one stored nothing: `go` sends req (its exchange the tee's) through
 * the site's filters and ends in moat_cache_tee_adopt(t, ...). conn, site and route are the
 * caller's, alive while the request is. */
struct moat_cache_origin {
    void (*go)(const struct moat_cache_origin *o, const struct moat_req *req,
               struct moat_cache_tee *t);
    void *conn;
    void *site;
    const void *route;
};

/* What a request's cache step needs to know of where it runs. */
struct moat_cache_ctx {
    struct moat_cache *cache;
    const struct moat_conf *conf;      /* heuristics, bounds */
    const struct moat_conf_site *site; /* cache_purge */
    const char *client;                /* the client's address (purge permission) */
    struct moat_cache_bgs *bgs;        /* the worker's; NULL: no background revalidation */
    struct moat_snapshot *snap;        /* what a background revalidation holds on to */
    struct moat_loop *loop;            /* the worker's; NULL: no request collapsing */
    struct moat_cache_origin origin;
};

/*
 * The cache's part of a proxied request on a site with `cache on`. Returns 1 when it answered
 * (res filled as a handler's answer: a hit, a 304, a range, a purge), 0 when the request goes
 * to the origin. Whenever *tee is set, the handler gets `copy` (the request with the tee as
 * its exchange, and the fields the origin is to see) and moat_cache_tee_adopt runs after it;
 * with 1 that is a background revalidation, whose handler answers into its own res, lines
 * and body (the client's hold the stale answer).
 */
int moat_cache_serve(const struct moat_cache_ctx *cx, const struct moat_req *req,
                     struct moat_res *res, struct moat_buf *lines, struct moat_buf *body,
                     moat_rc *rc, struct moat_req *copy, struct moat_cache_tee **tee);
/* After the handler: the tee takes its place when it streams; an immediate error may give way
 * to a stale answer (stale-if-error) in res, lines and body. */
void moat_cache_tee_adopt(struct moat_cache_tee *t, struct moat_res *res, struct moat_buf *lines,
                          struct moat_buf *body);

/* Whether the site caches the request's path (`cache on` or a prefix of `cache /A /B`). */
int moat_cache_covers(const struct moat_conf_site *site, const struct moat_req *req);

/* Drop the answers stored under `key` (a cache key as PURGE names it; one ending in "*" is a
 * prefix), in memory and on disk, counted as purged; how many. Any thread. */
unsigned long long moat_cache_purge(struct moat_cache *c, const char *key, size_t klen);

/* Call fn with the key of every PURGE this node takes (after its own answers are gone), from
 * the worker that took it: the cluster passes it on to the other nodes. Set before serving. */
void moat_cache_on_purge(struct moat_cache *c, void (*fn)(void *data, const char *key, size_t klen),
                         void *data);

#endif
