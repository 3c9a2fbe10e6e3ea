/*
 * exchange.h: a request and its answer as handlers see them, the same for every protocol.
 *
 * A protocol session (http1/ today, http2/ next) parses a request into its own structures and
 * hands handlers (static files, published CRLs, redirects, error pages) a moat_req: method,
 * target, authority and a field lookup, all slices valid for the duration of the handler call.
 * The handler fills a moat_res: status, header lines in the session's scratch buffer, and a
 * body that is generated into the other scratch buffer or is a region of an open file, which
 * the session sends as the protocol frames it (no copy: pread into the TLS record buffer). A
 * handler never sees a connection, a socket or a wire format.
 */
#ifndef MOAT_HTTP_EXCHANGE_H
#define MOAT_HTTP_EXCHANGE_H

#include "core/buf.h"
#include "core/err.h"
#include "core/slice.h"
#include "http/method.h"

#include <stdint.h>
#include <time.h>

struct moat_req {
    enum moat_http_method method_id;
    moat_slice method;    /* the token as sent */
    moat_slice target;    /* as sent */
    moat_slice path;      /* before '?', not decoded */
    moat_slice query;     /* after '?', without it; empty when none */
    moat_slice authority; /* host [":" port] the request is for; may be empty (HTTP/1.0) */
    time_t now;           /* the worker's clock, seconds */
    /* The protocol's field lookup: the value of the first field called `lc_name` (lower
     * case), MOAT_SLICE_NULL when absent. Use moat_req_field. */
    moat_slice (*_field)(const void *proto, const char *lc_name);
    const void *_proto;
};

static inline moat_slice moat_req_field(const struct moat_req *r, const char *lc_name)
{
    return r->_field != NULL ? r->_field(r->_proto, lc_name) : MOAT_SLICE_NULL;
}

/*
 * An answer. `length` is the Content-Length it has (0 for 204 and 304). The body is either
 * [offset, offset + length) of `fd` (fd != -1; the session owns it after the handler returns,
 * sends the region and closes it), or `length` bytes the handler appended to the body buffer
 * (has_generated_body), or nothing. For HEAD a handler gives the same status, fields and
 * length as for GET but no fd; a generated body may still be written, and is not sent.
 */
struct moat_res {
    int status;
    int fd;
    uint64_t offset;
    uint64_t length;
    int has_generated_body;
};

/*
 * A handler: answer `req` into `res`, appending header lines ("Name: value\r\n") to `fields`
 * and a generated body to `body` (both the session's scratch, kept between requests). The
 * session writes the status line or frame, Date, Server, the framing, the connection fields
 * and the site's own (HSTS, `header` rules). Fails only when the answer could not be written
 * (full buffers, out of memory); res->fd is then -1 and the session answers 500 itself.
 */
typedef moat_rc (*moat_handler_fn)(const void *ctx, const struct moat_req *req,
                                   struct moat_res *res, struct moat_buf *fields,
                                   struct moat_buf *body);

/* The small page moat answers errors with ("404 Not Found" and nothing else: never a path or
 * anything else of the request), with its Content-Type line; sets status, length and
 * has_generated_body. */
MOAT_MUST_USE moat_rc moat_res_error_page(struct moat_res *res, int status, struct moat_buf *fields,
                                          struct moat_buf *body);

#endif
