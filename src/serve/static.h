/*
 * static.h: answer a GET or HEAD for a file under a site's root directory.
 *
 * Pure request-to-response logic: the connection code hands over a parsed request and sends
 * what comes back (status, extra header lines, and either a file region or a small generated
 * body). No sockets, no TLS. Security is the point: the path is decoded and normalised first
 * (core/path.h), and the file is opened with openat2(RESOLVE_BENEATH) relative to the root's
 * descriptor, so neither ".." nor a symbolic link can reach anything outside the root.
 */
#ifndef MOAT_SERVE_STATIC_H
#define MOAT_SERVE_STATIC_H

#include "core/buf.h"
#include "core/err.h"
#include "core/slice.h"
#include "http/exchange.h"

#include <stdint.h>
#include <time.h>

/* One static site. Immutable after configuration load; shared by all workers. */
struct moat_static_site {
    int root_fd;        /* O_PATH|O_DIRECTORY descriptor of the root, owned by the caller */
    const char *index;  /* file served for a directory, "index.html"; NULL for none */
    int listing;        /* non-zero: list a directory that has no index file */
    uint64_t cache_key; /* unique to this site of this snapshot: its files' key in a filecache */
};

struct moat_fcache;
struct moat_encode_want;

/*
 * Answer `req` (GET, HEAD; others get 405) for `site`, as a handler of http/exchange.h: `status`
 * is one of 200, 204, 206, 301, 304, 400, 403, 404, 405, 416, 500, and the body a region of an
 * open file or a generated listing or error page. Reads the request's If-None-Match,
 * If-Modified-Since, Range and If-Range fields; a 301 keeps the query in its Location.
 * Appends extra header lines ("Name: value\r\n": Content-Type, ETag,
 * Last-Modified, Accept-Ranges, Content-Range, Location, Allow) to `hdrs` and any generated
 * body to `body`; the caller writes the status line, Date, Server, Content-Length, Connection
 * and site-wide headers (HSTS...). Error bodies never name a path.
 *
 * Returns MOAT_OK with res filled for every answer, error statuses included. Returns a failure
 * (MOAT_E_NOMEM or MOAT_E_LIMIT from the buffers, MOAT_E_INTERNAL for bad arguments) only when
 * the answer could not be written; res->fd is then -1, nothing is left open, and the caller
 * answers 500 on its own. hdrs and body may hold partial output in that case.
 */
MOAT_MUST_USE moat_rc moat_static_handle(const struct moat_static_site *site,
                                         const struct moat_req *req, struct moat_res *res,
                                         struct moat_buf *hdrs, struct moat_buf *body);

/* The same, keeping the files it opens in a worker's open-file cache (serve/filecache.h) and
 * serving from it; `now_ms` is the worker's clock. cache NULL: moat_static_handle. */
MOAT_MUST_USE moat_rc moat_static_handle_cached(const struct moat_static_site *site,
                                                struct moat_fcache *cache, uint64_t now_ms,
                                                const struct moat_encode_want *want,
                                                const struct moat_req *req, struct moat_res *res,
                                                struct moat_buf *hdrs, struct moat_buf *body);

/* For tests: non-zero makes every open take the fallback path used when the kernel lacks
 * openat2 (component by component, refusing every symbolic link). Not thread-safe. */
void moat_static__force_fallback(int on);

#endif
