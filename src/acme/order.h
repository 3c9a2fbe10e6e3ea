/*
 * order.h: one certificate from an ACME CA (RFC 8555 §7.4): the order, its authorizations and
 * challenges, finalization with a CSR, and the chain (with the CA's alternates, RFC 8555
 * §7.4.2), each step polled as the CA says (Retry-After) and bounded in time.
 *
 * Challenges are answered by solvers: an interface with one implementation per way of proving
 * control (a standalone listener, a webroot, moat's own server, DNS), so the order itself
 * never knows how the proof is published.
 */
#ifndef MOAT_ACME_ORDER_H
#define MOAT_ACME_ORDER_H

#include "acme/client.h"
#include "acme/preflight.h"

#include <stdatomic.h>
#include <stddef.h>

#include <openssl/evp.h>

struct moat_acme_solver;

struct moat_acme_solver_ops {
    const char *type; /* the challenge type it answers: "http-01", "tls-alpn-01", "dns-01" */
    /* Publish the proof for `ident` (a DNS name, "*." for wildcards stripped, or an IP). */
    moat_rc (*present)(struct moat_acme_solver *s, const char *ident, const char *token,
                       const char *key_authz, struct moat_err *err);
    /* Take it away again; failures are only logged. */
    void (*cleanup)(struct moat_acme_solver *s, const char *ident, const char *token);
    void (*free)(struct moat_acme_solver *s);
    /* Before an order (may be NULL): check that answers for `ident` can be published at all
     * (DNS-01: the zone is found and the TSIG key is accepted). */
    moat_rc (*preflight)(struct moat_acme_solver *s, const char *ident, struct moat_err *err);
};

struct moat_acme_solver {
    const struct moat_acme_solver_ops *ops;
};

struct moat_acme_order_req {
    const char *const *names; /* DNS names ("*.example.com" too) or IP addresses */
    size_t nnames;
    EVP_PKEY *cert_key;                      /* the certificate's key (borrowed) */
    struct moat_acme_solver *const *solvers; /* in order of preference */
    size_t nsolvers;
    const char *preferred_chain; /* issuer name to pick among the chains; NULL: the CA's default */
    const char *profile;         /* the CA's profile name; NULL: none */
    const char *replaces;        /* ARI certificate id of the certificate this renews; NULL */
    const char *resume_url;      /* an order already in flight, from a crash; NULL: a new one */
    /* Called with the order's URL as soon as the CA made it (to store it for a resume). */
    void (*order_made)(void *arg, const char *url);
    void *order_made_arg;
    unsigned deadline_s;                         /* for the whole order; 0: 10 minutes */
    const struct moat_acme_preflight *preflight; /* checks before a new order; NULL: none */
    const atomic_int *cancel; /* set: stop at the next wait (shutdown); may be NULL */
};

/*
 * Run the order to a certificate: *chain_pem (free()) is the leaf then its chain, PEM, checked
 * (the leaf is for cert_key and covers every name). A failed challenge says which name, which
 * type and the CA's words (its problem document), with the fix when moat knows it.
 */
MOAT_MUST_USE moat_rc moat_acme_order(struct moat_acme *a, const struct moat_acme_order_req *q,
                                      char **chain_pem, struct moat_err *err);

/* Revoke a certificate (PEM or DER bytes) with the account key (RFC 8555 §7.6); reason is an
 * RFC 5280 CRLReason code (0: unspecified, 1: keyCompromise, 4: superseded, 5: cessation). */
MOAT_MUST_USE moat_rc moat_acme_revoke(struct moat_acme *a, const unsigned char *cert, size_t len,
                                       int reason, struct moat_err *err);

#endif
