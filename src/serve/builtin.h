/*
 * builtin.h: the small answers moat gives by itself, as handlers of http/exchange.h: the plain
 * listener's redirect to HTTPS, OPTIONS * for the server as a whole, and the answers to ACME
 * HTTP-01 challenges.
 */
#ifndef MOAT_SERVE_BUILTIN_H
#define MOAT_SERVE_BUILTIN_H

#include "http/exchange.h"

/* 308 Permanent Redirect (keeps the method and body, RFC 9110 §15.4.9) to https:// on the same
 * host, at the port `*(const int *)ctx` (omitted when 443), with the same path and query (also
 * for an absolute-form target). A request without a host gets 400: there is nowhere to send
 * it. */
MOAT_MUST_USE moat_rc moat_builtin_redirect(const void *ctx, const struct moat_req *req,
                                            struct moat_res *res, struct moat_buf *fields,
                                            struct moat_buf *body);

/* 204 with Allow: the methods moat serves (RFC 9110 §9.3.7, "OPTIONS *"). ctx is unused. */
MOAT_MUST_USE moat_rc moat_builtin_options(const void *ctx, const struct moat_req *req,
                                           struct moat_res *res, struct moat_buf *fields,
                                           struct moat_buf *body);

/* 200 with the key authorization `(const char *)ctx` as its body: the answer to an ACME
 * HTTP-01 challenge (RFC 8555 §8.3), never cached. */
MOAT_MUST_USE moat_rc moat_builtin_acme_http01(const void *ctx, const struct moat_req *req,
                                               struct moat_res *res, struct moat_buf *fields,
                                               struct moat_buf *body);

#endif
