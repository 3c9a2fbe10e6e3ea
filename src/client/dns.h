/*
 * dns.h: what moat's clients ask of DNS beyond addresses, on ldns: a resolver pointed at one
 * server, and the CAA records that govern a name (RFC 8659). Used by acme/ (DNS-01, pre-flight)
 * and check/.
 */
#ifndef MOAT_CLIENT_DNS_H
#define MOAT_CLIENT_DNS_H

#include "core/err.h"

#include <ldns/ldns.h>
#include <stddef.h>

/* A resolver that asks the DNS server at spec ("ADDR", "ADDR:PORT", "[v6]:PORT") directly,
 * without recursion, within 5 s (2 tries). MOAT_E_CONFIG for a spec that is not an address. */
MOAT_MUST_USE moat_rc moat_client_dns_resolver(const char *spec, ldns_resolver **out,
                                               struct moat_err *err);

/* One CAA record: "flags tag value". */
struct moat_caa {
    unsigned flags;
    char tag[32];
    char value[256];
};

/* The relevant CAA RRset of name (RFC 8659 §3: the name, then each parent below the TLD), at
 * most max records into out. 1 when a set was found (owner: the name that holds it), 0 when
 * none (any CA may issue), -1 when the lookup failed. */
int moat_client_caa_lookup(ldns_resolver *r, const char *name, struct moat_caa *out, size_t max,
                           size_t *n, char *owner, size_t ownerlen);

#endif
