/*
 * dns.h: DNS-01 (RFC 8555 §8.4): the TXT record _acme-challenge.<name> published by an RFC 2136
 * dynamic update signed with TSIG (RFC 8945) to the zone's primary, or by a hook command the
 * operator provides, then checked at the zone's authoritative servers before the CA is told
 * (a record the CA cannot see yet fails the order and burns a rate limit).
 *
 * DNS messages are made, signed and sent by ldns (NLnet Labs' library, Debian's libldns): TSIG
 * and the update format are exactly what a small hand-made encoder would get subtly wrong.
 */
#ifndef MOAT_ACME_DNS_H
#define MOAT_ACME_DNS_H

#include "acme/order.h"
#include "core/err.h"

#include <stddef.h>

struct moat_acme_dns_opts {
    /* RFC 2136: the server that takes updates ("10.0.0.53", "127.0.0.1:5353", "[::1]:53") */
    const char *server;
    const char *zone;        /* the zone to update; NULL: found by asking the server for SOAs */
    const char *tsig_name;   /* TSIG key name; NULL: unsigned updates (a server that trusts
                                the address) */
    const char *tsig_alg;    /* "hmac-sha256" (default), "hmac-sha512", ... */
    const char *tsig_secret; /* base64, as BIND's and Knot's key files write it */
    /* or a hook: run as HOOK set|clear FQDN VALUE (no shell), exit 0 on success */
    const char *hook;
    /* where to look before telling the CA: "ADDR[:PORT]"...; none: the zone's NS, port 53 */
    const char *const *check;
    size_t ncheck;
    const char *resolver; /* recursive resolver to find the zone's NS with; NULL: the system's */
    unsigned propagation_timeout_s; /* 0: 120 */
    unsigned ttl;                   /* of the TXT record; 0: 60 */
};

/* The DNS-01 solver. Strings in o are copied. */
MOAT_MUST_USE moat_rc moat_acme_dns_solver_new(const struct moat_acme_dns_opts *o,
                                               struct moat_acme_solver **out, struct moat_err *err);

/* The TXT value for a key authorization: base64url(SHA-256(key_authz)), into out (>= 44). */
MOAT_MUST_USE moat_rc moat_acme_dns01_value(const char *key_authz, char *out, size_t outlen,
                                            struct moat_err *err);

#endif
