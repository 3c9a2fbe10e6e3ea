/*
 * exchange.h: a request and its answer as handlers see them, the same for every protocol.
 *
 * A protocol session (http1/ today, http2/ next) parses a request into its own structures and
 * hands handlers (static files, published CRLs, redirects, error pages, the proxy) a moat_req:
 * method, target, authority and the fields, all slices valid for the duration of the handler
 * call. The handler fills a moat_res: status, header lines in the session's scratch buffer,
 * and a body that is generated into the other scratch buffer or is a region of an open file,
 * which the session sends as the protocol frames it (no copy: pread into the TLS record
 * buffer). A handler whose answer comes over time (the proxy) takes the exchange as a stream
 * instead: it reads the request body and sends its answer in pieces, with back-pressure both
 * ways. A handler never sees a connection, a socket or a wire format.
 */
#ifndef MOAT_HTTP_EXCHANGE_H
#define MOAT_HTTP_EXCHANGE_H

#include "core/buf.h"
#include "core/err.h"
#include "core/slice.h"
#include "http/field.h"
#include "http/method.h"

#include <stdint.h>
#include <time.h>

struct moat_exch;

/* The two ends of the client's connection, as the proxy forwards them (PROXY protocol v2 to an
 * upstream): the client and the address it connected to; a trusted L4 proxy's PROXY header
 * replaces both. Text as "192.0.2.1" / "2001:db8::1", no port. */
struct moat_endpoints {
    char peer[48];
    uint16_t peer_port;
    char local[48];
    uint16_t local_port;
};

struct moat_req {
    enum moat_http_method method_id;
    moat_slice method; /* the token as sent */
    moat_slice target; /* as sent (origin-form, absolute-form, "*") */
    moat_slice path;   /* before '?', not decoded */
    /* The path decoded and normalised once for every rule and handler (core/path.h); .p is
     * NULL when it does not normalise, with the reason in npath_rc (MOAT_E_LIMIT: longer than
     * MOAT_REQ_PATH_CAP; else malformed or climbing above "/"). */
    moat_slice npath;
    moat_rc npath_rc;
    moat_slice query;     /* after '?', without it; empty when none */
    moat_slice authority; /* host [":" port] the request is for; may be empty (HTTP/1.0) */
    const struct moat_field *fields; /* as sent, in order; [0, nfields) */
    size_t nfields;
    /* The protocol the client asks to switch to: an HTTP/1.1 `Upgrade` with `Connection:
     * upgrade`, or HTTP/2's extended CONNECT `:protocol` (RFC 8441); empty: none. A handler
     * that accepts answers 101 with MOAT_RES_TUNNEL (see below). */
    moat_slice upgrade;
    int has_body;        /* a body follows the head */
    int64_t body_length; /* its length; -1 when it is not known ahead (chunked) */
    time_t now;          /* the worker's clock, seconds */
    /* The connection, as far as a handler may know it. */
    unsigned long long conn_id;        /* for log lines */
    const char *peer;                  /* the client's address: "192.0.2.1", "2001:db8::1" */
    const struct moat_endpoints *ends; /* the connection's ends; NULL when unknown */
    int secure;                        /* it came over TLS */
    void *tls;                         /* the SSL * then: ask tls/ about the client's certificate */
    /* For a streaming answer (see moat_exch below); lives until finish, fail or abort. */
    struct moat_exch *exch;
};

/* Longest normalised path a request may have (an HTTP/1 request line is at most 8 KiB). */
#define MOAT_REQ_PATH_CAP 8192

/* Fill req->npath from req->path into buf (MOAT_REQ_PATH_CAP + 1 bytes, the session's). */
void moat_req_normalize(struct moat_req *req, char *buf);

/* The value of the first field called `lc_name` (lower case), MOAT_SLICE_NULL when absent. */
static inline moat_slice moat_req_field(const struct moat_req *r, const char *lc_name)
{
    const struct moat_field *f = moat_field_find(r->fields, r->nfields, lc_name);
    return f != NULL ? f->value : MOAT_SLICE_NULL;
}

/*
 * An answer. `length` is the Content-Length it has (0 for 204 and 304). The body is either
 * [offset, offset + length) of `fd` (fd != -1; the session owns it after the handler returns,
 * sends the region and closes it), or `length` bytes the handler appended to the body buffer
 * (has_generated_body), or `length` bytes at `bytes` that someone else owns (a small cached
 * file's: fd is -1, and the session calls fd_release(fd_h) once it has copied them out), or
 * nothing. For HEAD a handler gives the same status, fields and length as for GET but no fd
 * and no bytes; a generated body may still be written, and is not sent.
 */
struct moat_res {
    int status;
    int fd;
    uint64_t offset;
    uint64_t length;
    int has_generated_body;
    const char *bytes; /* see above; NULL: none */
    int close;         /* the connection ends after this answer */
    /* MOAT_RES_RELAYED (below) when the fields came from another server (a stored answer):
     * the site's rules for relayed answers apply. */
    unsigned flags;
    /* fd's (or bytes') owner when it is not the session (a cached file): the session calls
     * fd_release(fd_h) where it would close fd. NULL: the session closes it. */
    void (*fd_release)(void *h);
    void *fd_h;
    /* A streaming answer instead: the handler keeps req->exch and answers through moat_exch_*;
     * the session calls these when the handler can go on, or when it must stop. */
    const struct moat_stream_ops *stream;
    void *stream_h;
};

/*
 * Streaming: for handlers whose answer comes over time (the proxy; later tunnels, cache fills).
 * The session calls the handler's ops; the handler calls the session's through moat_exch_*.
 * Neither calls the other back from inside a call, so no side is re-entered. The handler may
 * use req->exch only after it returned with res->stream set (an error it finds at once is an
 * ordinary answer: moat_res_error_page).
 */
struct moat_stream_ops {
    /* Request body bytes arrived, or the answer has room again, after the handler waited
     * for them (moat_exch_read_body gave MOAT_E_AGAIN, or moat_exch_room gave 0). */
    void (*ready)(void *h);
    /* The session ends the exchange (client gone, its timeout, the worker stopping): free
     * everything; never call moat_exch_* again. */
    void (*abort)(void *h);
};

/* Flags of an answer's head (moat_exch_start, decorate). */
#define MOAT_RES_RELAYED 1u /* fields from another server: the site's rules for relayed answers */
/* With status 101 to a request with `upgrade`: the exchange becomes a tunnel. HTTP/1.1 sends
 * the 101 (the lines carry Connection: upgrade and Upgrade), HTTP/2 a 200 (RFC 8441 §5: the
 * fields that are HTTP/1.1's own are dropped). From then on moat_exch_read_body gives the
 * client's raw bytes (*n == 0: it closed its side), moat_exch_send sends raw bytes, neither
 * limits.body nor timeouts.body applies (the handler times the tunnel), and finish ends it. */
#define MOAT_RES_TUNNEL 2u
/* The handler sends a piece of the body at once if it has one: the head may wait to go out
 * with it, in one write (a moat_exch_send of 0 bytes sends what waits). */
#define MOAT_RES_MORE 4u

struct moat_exch_ops {
    moat_rc (*read_body)(struct moat_exch *ex, void *buf, size_t len, size_t *n);
    moat_rc (*start)(struct moat_exch *ex, int status, const struct moat_buf *lines, int64_t length,
                     unsigned flags);
    moat_rc (*send)(struct moat_exch *ex, const void *p, size_t n);
    size_t (*room)(struct moat_exch *ex);
    const struct moat_buf *(*trailers)(struct moat_exch *ex);
    void (*finish)(struct moat_exch *ex, const struct moat_buf *trailers);
    void (*fail)(struct moat_exch *ex, int status);
};

struct moat_exch {
    const struct moat_exch_ops *ops;
};

/* The request body, decoded: MOAT_OK with *n > 0; MOAT_OK with *n == 0 once it is complete (or
 * there is none); MOAT_E_AGAIN until more comes (then ready). 100 Continue goes out on the
 * first call. Any other result ends the exchange: the session answered (400, 413) or the
 * client left (MOAT_E_CLOSED). */
MOAT_MUST_USE static inline moat_rc moat_exch_read_body(struct moat_exch *ex, void *buf, size_t len,
                                                        size_t *n)
{
    return ex->ops->read_body(ex, buf, len, n);
}

/* Start the answer: status, header lines ("Name: value\r\n", without framing or connection
 * fields), and the body length (-1: not known: chunked to HTTP/1.1 clients, else until the
 * close). For HEAD no body is sent whatever comes. A failure ends the exchange. */
MOAT_MUST_USE static inline moat_rc moat_exch_start(struct moat_exch *ex, int status,
                                                    const struct moat_buf *lines, int64_t length,
                                                    unsigned flags)
{
    return ex->ops->start(ex, status, lines, length, flags);
}

/* A piece of the body (copied out at once). A failure (the client left) ends the exchange. */
MOAT_MUST_USE static inline moat_rc moat_exch_send(struct moat_exch *ex, const void *p, size_t n)
{
    return ex->ops->send(ex, p, n);
}

/* How many bytes may be sent now without the session buffering past one piece; 0: wait for
 * ready. */
static inline size_t moat_exch_room(struct moat_exch *ex)
{
    return ex->ops->room(ex);
}

/* The request's trailer fields ("Name: value\r\n" lines, checked, as sent), once
 * moat_exch_read_body said the body is complete; NULL when there were none (or the protocol
 * could not carry them). Valid until finish or fail. */
static inline const struct moat_buf *moat_exch_trailers(struct moat_exch *ex)
{
    return ex->ops->trailers(ex);
}

/* The body is complete; the exchange is the session's again. The handler's last call. */
static inline void moat_exch_finish(struct moat_exch *ex)
{
    ex->ops->finish(ex, NULL);
}

/* The same, with trailer fields after the body ("Name: value\r\n" lines; the handler has
 * dropped what may not be a trailer). They go where the protocol can carry them (HTTP/1.1:
 * a chunked answer) and are dropped elsewhere (a length was given, HTTP/1.0, HEAD), which
 * RFC 9110 §6.5.1 allows. */
static inline void moat_exch_finish_trailers(struct moat_exch *ex, const struct moat_buf *trailers)
{
    ex->ops->finish(ex, trailers);
}

/* The handler could not answer: before the head went out the client gets an error page with
 * `status`, after it the connection is cut (a promised length cannot be kept). Last call. */
static inline void moat_exch_fail(struct moat_exch *ex, int status)
{
    ex->ops->fail(ex, status);
}

/*
 * A handler: answer `req` into `res` (or take it over as a stream, see above), appending header
 * lines ("Name: value\r\n") to `fields` and a generated body to `body` (both the session's scratch,
 * kept between requests). The session writes the status line or frame, Date, Server, the framing,
 * the connection fields and the site's own (HSTS, `header` rules). Fails only when the answer could
 * not be written (full buffers, out of memory); res->fd is then -1 and the session answers 500
 * itself.
 */
typedef moat_rc (*moat_handler_fn)(const void *ctx, const struct moat_req *req,
                                   struct moat_res *res, struct moat_buf *fields,
                                   struct moat_buf *body);

/* Done with an answer's file: close it, or give it back to its owner (moat_res.fd_release). */
void moat_res_file_done(int fd, void (*release)(void *h), void *h);

/* The small page moat answers errors with ("404 Not Found" and nothing else: never a path or
 * anything else of the request), with its Content-Type line; sets status, length and
 * has_generated_body. */
MOAT_MUST_USE moat_rc moat_res_error_page(struct moat_res *res, int status, struct moat_buf *fields,
                                          struct moat_buf *body);

#endif
