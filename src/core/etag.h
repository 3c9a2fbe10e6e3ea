/*
 * etag.h: matching an entity-tag against the list a conditional request carries, shared by every
 * handler that answers with validators (static files, published CRLs).
 */
#ifndef MOAT_CORE_ETAG_H
#define MOAT_CORE_ETAG_H

#include "core/slice.h"

#include <stddef.h>

/*
 * 1 when the field value `list` (If-None-Match or If-Match, RFC 9110 §13.1.1-2) names `etag`
 * (`elen` bytes, quotes included) or is "*". `weak`: weak comparison, where "W/" is ignored
 * (If-None-Match); else strong, where a weak tag never matches. A malformed list matches
 * nothing, which is always safe: the full answer goes out. Pure.
 */
int moat_etag_list_match(moat_slice list, const char *etag, size_t elen, int weak);

#endif
