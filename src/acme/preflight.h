/*
 * preflight.h: checks before an ACME order, so that an order that cannot succeed does not
 * burn the CA's rate limits (Let's Encrypt counts failed validations per account and name):
 * each name resolves (when the challenge needs it to reach this server), its CAA records
 * (RFC 8659) allow this CA, and the DNS-01 credentials work (the solvers' own preflight).
 *
 * Lookups go to a recursive resolver (the system's, or one the configuration names). A lookup
 * that fails is not a refusal, only a note: moat is not the CA, and the CA will tell.
 */
#ifndef MOAT_ACME_PREFLIGHT_H
#define MOAT_ACME_PREFLIGHT_H

#include "acme/client.h"
#include "client/dns.h"
#include "core/err.h"

#include <stddef.h>

struct moat_acme_preflight {
    const char *resolver; /* "ADDR[:PORT]"; NULL: the system's (/etc/resolv.conf) */
    int need_address;     /* the names must resolve (HTTP-01, TLS-ALPN-01 connect to them) */
};

/*
 * Check each name (wildcards by their base name) for a, whose directory gives the CA's CAA
 * identities and whose kid is the account URI. MOAT_E_CONFIG naming the name, what DNS says
 * and the fix, for the first name that cannot be issued.
 */
MOAT_MUST_USE moat_rc moat_acme_preflight_names(struct moat_acme *a,
                                                const struct moat_acme_preflight *p,
                                                const char *const *names, size_t n,
                                                struct moat_err *err);

/*
 * The CA's view of HTTP-01, from here: GET http://NAME:PORT/PATH (NAME resolved as in
 * moat_acme_preflight_names) must answer `expect` (a probe answer the caller published in its
 * challenge table). MOAT_E_CONFIG with what came instead (nothing listens, another server
 * answers, a redirect elsewhere) and the fix.
 */
MOAT_MUST_USE moat_rc moat_acme_preflight_http01(const struct moat_acme_preflight *p,
                                                 const char *name, unsigned port, const char *path,
                                                 const char *expect, struct moat_err *err);

/*
 * RFC 8659 §4 on one relevant CAA RRset (given as "flags tag value" triples): 1 when a CA with
 * one of `ids` (none: unknown) may issue for a name (wildcard: issuewild rules), with the
 * account and method checks of RFC 8657 when the records have them; 0 with why filled.
 * Exposed for tests.
 */
int moat_acme_caa_allows(const struct moat_caa *rrs, size_t n, int wildcard, const char *const *ids,
                         size_t nids, const char *account_uri, char *why, size_t whylen);

#endif
