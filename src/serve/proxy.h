/*
 * proxy.h: the reverse proxy handler: a site with `proxy http[s]://HOST:PORT` forwards each
 * request to its origin over a second connection on the same worker and loop, and streams the
 * answer back (DESIGN.md: the same parser in response mode, the same buffers).
 *
 * To the origin: the request line and fields minus hop-by-hop fields, the body re-framed
 * (Content-Length as is, chunked re-chunked), X-Forwarded-For/-Proto/-Host set by moat (never
 * taken from the client), and for mutual-TLS sites the client's verified identity in
 * <prefix>Subject/-Issuer/-Serial/-Fingerprint/-SAN/-Verify; any field starting with the prefix
 * that the client sent is dropped first, so an identity can never be forged. One origin
 * connection per request (`Connection: close`) for now; the HTTP/1 client session it runs on
 * outlives a request, so the pools of the full proxy drop in without touching this.
 */
#ifndef MOAT_SERVE_PROXY_H
#define MOAT_SERVE_PROXY_H

#include "core/err.h"
#include "core/loop.h"
#include "http/exchange.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

struct moat_conf_site;

/* A site's origin, resolved and prepared at configuration load. */
struct moat_proxy_target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256];      /* for SNI and certificate name checks */
    char authority[300]; /* host[:port] */
    SSL_CTX *ctx;        /* owned; client context for https origins, else NULL */
    uint64_t timeout_ms;
    char prefix[64]; /* identity header prefix, e.g. "X-Client-" */
};

/* Resolve the origin (numeric, localhost or a DNS name, looked up once here) and build the
 * TLS client context for https (verification on: proxy_ca or the system store plus
 * `extra_ca`, the local CA's root; name checked; proxy_cert presented when given). */
MOAT_MUST_USE moat_rc moat_proxy_target_new(const struct moat_conf_site *cs, const char *extra_ca,
                                            struct moat_proxy_target **out, struct moat_err *err);
void moat_proxy_target_free(struct moat_proxy_target *t);

/* What the connection hands the handler for one request. */
struct moat_proxy_call {
    const struct moat_proxy_target *target; /* the site's origin */
    struct moat_loop *loop;                 /* the worker's: the origin's socket and timer */
    int identity;                           /* send the client certificate's identity */
};

/* The handler (http/exchange.h; ctx: a struct moat_proxy_call): connects to the origin, sends
 * the request head, then takes the exchange as a stream (the body both ways, with
 * back-pressure). What fails before that (no socket, head too large) is an error page. */
MOAT_MUST_USE moat_rc moat_proxy_handler(const void *ctx, const struct moat_req *req,
                                         struct moat_res *res, struct moat_buf *lines,
                                         struct moat_buf *body);

#endif
