/*
 * session.h: what a protocol session (http1/server.h, http2/server.h) asks of the connection
 * that owns it, the same for every protocol. The connection routes each request to a site and a
 * handler (dispatch), adds the site's fields to each answer (decorate) and logs it (done); the
 * session never knows a site, a certificate or a file system.
 *
 * An HTTP/2 session answers several requests at once, so what the router decided for one
 * request (its site, its `header` rules) cannot live in the connection: it is a moat_route_ref
 * that the session keeps beside the request and hands back with each call about its answer.
 */
#ifndef MOAT_HTTP_SESSION_H
#define MOAT_HTTP_SESSION_H

#include "core/buf.h"
#include "core/err.h"
#include "http/exchange.h"

#include <stdint.h>

/* The router's decision for one request; opaque to the session. Zero until dispatch fills it
 * (an answer the session makes itself, a 400 say, is the handshake's site's). */
struct moat_route_ref {
    const void *site;
    const void *rules;
};

/* One answer, for the access log. */
struct moat_answer_log {
    int status;
    uint64_t bytes;               /* body bytes sent */
    uint64_t started_ms;          /* the loop's clock when the request began */
    const char *proto;            /* "HTTP/1.0", "HTTP/1.1", "HTTP/2" */
    enum moat_http_method method; /* for the metrics (kept whether parts are or not) */
    const char *parts[5];         /* method, target, host, referer, user agent ("" when not kept) */
};

/* Counters of a worker's sessions, both protocols. */
struct moat_session_stats {
    unsigned long long requests, bad_requests, timeouts;
    /* Connections that gave kept transport buffers back after a while idle: heap freed
     * that the worker's next trim may return (serve/worker.c counts them as churn). */
    unsigned long long buffers_released;
};

struct moat_session_host {
    /* Route `req` (filling *ref) and let a handler answer it (moat_handler_fn's contract). */
    moat_rc (*dispatch)(void *host, struct moat_route_ref *ref, const struct moat_req *req,
                        struct moat_res *res, struct moat_buf *fields, struct moat_buf *body);
    /* Append to `out` the answer's fields: the handler's `lines`, less those the site's rules
     * replace, and the site's own (HSTS, `header` rules). `flags`: MOAT_RES_* of the answer. */
    moat_rc (*decorate)(void *host, const struct moat_route_ref *ref, struct moat_buf *out,
                        const struct moat_buf *lines, unsigned flags);
    /* Whether answers carry a Server field. */
    int (*server_field)(void *host, const struct moat_route_ref *ref);
    /* An answer went out entirely (or was cut): for the access log. */
    void (*done)(void *host, const struct moat_route_ref *ref, const struct moat_answer_log *a);
    /* The session ended (the peer left, a timeout, the last answer went): close the
     * connection. Called once, at most; the session is not used again except to clear it. */
    void (*ended)(void *host);
    /* A request refused by a rate of the session's own (HTTP/2's requests per connection,
     * `why` in words): counted and logged by the host, which knows its limits' names. */
    void (*refused)(void *host, const char *why);
};

#endif
