/*
 * internal.h: what the files of acme/ share and nothing else uses.
 */
#ifndef MOAT_ACME_INTERNAL_H
#define MOAT_ACME_INTERNAL_H

#include "client/dns.h" /* moat_client_dns_resolver, for DNS-01 and the pre-flight */
#include "core/err.h"

#include <ldns/ldns.h>

#endif
