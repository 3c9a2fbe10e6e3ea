/*
 * source.h: the ACME certificate source (cert/source.h): a site's certificate as the ACME
 * manager installed it in the store, one source per key kind. Loading never orders anything:
 * ordering is the manager's (manager.h), off the serving path; a source with nothing installed
 * yet answers MOAT_E_NOTFOUND and the server serves a local-CA certificate meanwhile.
 */
#ifndef MOAT_ACME_SOURCE_H
#define MOAT_ACME_SOURCE_H

#include "acme/lineage.h"
#include "cert/source.h"
#include "state/store.h"

/* st is borrowed; name (the lineage's first name) is copied. */
MOAT_MUST_USE moat_rc moat_acme_source_new(struct moat_store *st, const char *name,
                                           enum moat_acme_kind kind, struct moat_cert_source **out,
                                           struct moat_err *err);

#endif
