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
 * connection per request (`Connection: close`): simple and correct; pooling comes with the
 * benchmarks that need it.
 */
#ifndef MOAT_SERVE_PROXY_H
#define MOAT_SERVE_PROXY_H

#include "core/err.h"
#include "http1/parse.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

struct moat_conn;
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

/* Start forwarding the request `r` (whose head is still in c->in) for c->site. On return the
 * request head has been consumed from c->in and the connection is in MOAT_CONN_PROXY (or
 * answering an error). */
void moat_proxy_start(struct moat_conn *c, const struct moat_h1_req *r);
/* The PROXY state's step: 1 to keep running the state machine, 0 to wait. */
int moat_proxy_step(struct moat_conn *c);
/* The connection's timer fired in the PROXY state. */
void moat_proxy_timeout(struct moat_conn *c);
/* Free the proxy state of a closing connection. */
void moat_proxy_free(struct moat_conn *c);

#endif
