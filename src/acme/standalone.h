/*
 * standalone.h: the HTTP-01 listener of `moat acme issue --http` (certbot's --standalone), for
 * a machine where nothing else listens on port 80 while the certificate is ordered.
 *
 * It answers GET/HEAD /.well-known/acme-challenge/TOKEN from a challenge table and 404 to
 * anything else, on its own thread, one short connection at a time with every read and write
 * bounded in time: it lives for the minutes an order takes and serves only the CA.
 */
#ifndef MOAT_ACME_STANDALONE_H
#define MOAT_ACME_STANDALONE_H

#include "acme/challenges.h"
#include "core/err.h"

struct moat_acme_standalone;

/* Listen on `spec` ("80", ":80", "127.0.0.1:5002", "[::1]:80") and start answering from t
 * (borrowed; it must outlive the listener). */
MOAT_MUST_USE moat_rc moat_acme_standalone_start(const char *spec, struct moat_acme_challenges *t,
                                                 struct moat_acme_standalone **out,
                                                 struct moat_err *err);
/* Stop the thread, close the listeners. NULL does nothing. */
void moat_acme_standalone_stop(struct moat_acme_standalone *s);

#endif
