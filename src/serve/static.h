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

#include <stdint.h>
#include <time.h>

/* One static site. Immutable after configuration load; shared by all workers. */
struct moat_static_site {
    int root_fd;       /* O_PATH|O_DIRECTORY descriptor of the root, owned by the caller */
    const char *index; /* file served for a directory, "index.html"; NULL for none */
    int listing;       /* non-zero: list a directory that has no index file */
};

/* A request, as slices into the connection's buffer (valid for the duration of the call). */
struct moat_static_req {
    int method_id;   /* enum moat_http_method (http/method.h) */
    moat_slice path; /* raw path of the request target, before '?', not decoded */
    moat_slice if_none_match, if_modified_since, range, if_range; /* empty when absent */
    moat_slice query; /* raw query after '?' (without it), kept in a 301's Location; may be empty */
    time_t now;       /* the worker's clock, seconds */
};

/*
 * What to send. `status` is one of 200, 204, 206, 301, 304, 400, 403, 404, 405, 416, 500.
 * `length` is always the Content-Length the answer has (0 for 204 and 304, which send none).
 * The body is either [offset, offset + length) of `fd` (fd != -1: the caller owns fd, sends
 * the region and closes it; it may have O_NONBLOCK set, which means nothing for a regular
 * file), or the `length` bytes this call appended to `body` (has_generated_body), or nothing.
 * HEAD gets the same status, headers and length as GET, but never an fd (the file is closed
 * here); a generated body is still written so its length is known, and the caller skips it.
 */
struct moat_static_res {
    int status;
    int fd;                 /* owned by the caller after return; -1 when none */
    uint64_t offset;        /* bytes into fd */
    uint64_t length;        /* Content-Length */
    int has_generated_body; /* body is in `body` (listing, error page) instead of fd */
};

/*
 * Answer `req` for `site`. Appends extra header lines ("Name: value\r\n": Content-Type, ETag,
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
                                         const struct moat_static_req *req,
                                         struct moat_static_res *res, struct moat_buf *hdrs,
                                         struct moat_buf *body);

/* For tests: non-zero makes every open take the fallback path used when the kernel lacks
 * openat2 (component by component, refusing every symbolic link). Not thread-safe. */
void moat_static__force_fallback(int on);

#endif
