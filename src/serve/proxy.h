/*
 * proxy.h: the reverse proxy handler: a site's `proxy` rule forwards the requests it covers to
 * an upstream (upstream/group.h: servers, balancing, health) over the worker's pooled
 * connections (upstream/pool.h), and streams the answer back (DESIGN.md: the same parser in
 * response mode, the same buffers).
 *
 * To the server: the request line (the path rewritten when the rule strips or replaces its
 * prefix) and fields minus hop-by-hop fields, Host as the site says (the client's by default),
 * the body re-framed (Content-Length as is, chunked re-chunked), X-Forwarded-For/-Proto/-Host
 * and Forwarded (RFC 7239): what the client sent of them is kept, and appended to, only when
 * the client is one of trusted_proxies, and replaced otherwise; for mutual-TLS sites the
 * client's verified identity in <prefix>Subject/-Issuer/-Serial/-Fingerprint/-SAN/-Verify,
 * after dropping any field with that prefix the client sent, so an identity cannot be forged.
 *
 * A request that failed before any byte of an answer came (connect refused, the server closed
 * or timed out without answering) is tried again on another server when that is safe: its
 * method is idempotent (RFC 9110 §9.2.2) or nothing of it was sent, and none of its body was
 * streamed yet; at most `retries` times and within retry_timeout.
 */
#ifndef MOAT_SERVE_PROXY_H
#define MOAT_SERVE_PROXY_H

#include "core/cidr.h"
#include "core/err.h"
#include "core/loop.h"
#include "http/exchange.h"
#include "serve/headers.h"
#include "upstream/group.h"
#include "upstream/pool.h"

/* One proxy rule of a site, built with the snapshot. */
struct moat_proxy_route {
    struct moat_up_group *group; /* one reference */
    char prefix[256];            /* normalised, without trailing '/'; "" for the whole site */
    size_t plen;
    int strip;         /* remove the prefix from the path */
    char rewrite[256]; /* put this in its place; "" none */
    int rewriting;     /* strip or rewrite: the path is moat's normalised one */
    int host_mode;     /* 0 the client's Host, 1 the server's, 2 host_value */
    char host_value[300];
    char id_prefix[64]; /* identity fields' prefix, e.g. "X-Client-" */
    int identity;       /* send the client certificate's identity (mutual-TLS sites) */
};

void moat_proxy_route_clear(struct moat_proxy_route *r);

/* What the connection hands the handler for one request. */
/* A worker's spent proxied exchanges, kept with their buffers for the next request, so the
 * steady state allocates nothing per request. Owned by the worker; cleared after its loop. */
struct moat_proxy_spares {
    struct px *head;
    unsigned n;
};
void moat_proxy_spares_clear(struct moat_proxy_spares *s);

struct moat_proxy_call {
    const struct moat_proxy_route *route;
    struct moat_proxy_spares *spares; /* the worker's */
    struct moat_loop *loop;           /* the worker's: the upstream sockets and timers */
    struct moat_up_pool *pool;        /* the worker's connections to upstream servers */
    struct moat_metrics *mx;          /* the worker's counters (serve/metrics.h) */
    const struct moat_cidr *trusted;  /* trusted_proxies */
    size_t ntrusted;
    const struct moat_hdr_set *req_rules; /* the site's request_header rules for the path */
};

/* The handler (http/exchange.h; ctx: a struct moat_proxy_call): picks a server, takes or opens
 * a connection, then takes the exchange as a stream (the body both ways, with back-pressure).
 * What fails at once (no server is up, the head is too large) is an ordinary answer. */
MOAT_MUST_USE moat_rc moat_proxy_handler(const void *ctx, const struct moat_req *req,
                                         struct moat_res *res, struct moat_buf *lines,
                                         struct moat_buf *body);

#endif
