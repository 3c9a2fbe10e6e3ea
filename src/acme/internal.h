/*
 * internal.h: what the files of acme/ share and nothing else uses.
 */
#ifndef MOAT_ACME_INTERNAL_H
#define MOAT_ACME_INTERNAL_H

#include "core/err.h"

#include <ldns/ldns.h>

/* A resolver that asks the DNS server at spec ("ADDR", "ADDR:PORT", "[v6]:PORT") directly,
 * without recursion, within 5 s (2 tries). MOAT_E_CONFIG for a spec that is not an address. */
MOAT_MUST_USE moat_rc moat_acme__resolver(const char *spec, ldns_resolver **out,
                                          struct moat_err *err);

#endif
