/*
 * standalone.h: the challenge listeners of `moat acme issue --http` and `--tls-alpn`
 * (certbot's --standalone), for a machine where nothing else listens on port 80 or 443 while
 * the certificate is ordered.
 *
 * HTTP: GET/HEAD /.well-known/acme-challenge/TOKEN answered from a challenge table, 404 to
 * anything else. TLS: a handshake offering only acme-tls/1 answered with the name's
 * TLS-ALPN-01 certificate from the table (RFC 8737), every other handshake refused. One
 * thread, one short connection at a time, every step bounded in time: it lives for the
 * minutes an order takes and serves only the CA.
 */
#ifndef MOAT_ACME_STANDALONE_H
#define MOAT_ACME_STANDALONE_H

#include "acme/challenges.h"
#include "core/err.h"

struct moat_acme_standalone;

/* Listen for HTTP on http_spec and/or TLS on tls_spec ("80", ":443", "127.0.0.1:5002",
 * "[::1]:80"; NULL: none) and start answering from t (borrowed; it must outlive the
 * listener). */
MOAT_MUST_USE moat_rc moat_acme_standalone_start(const char *http_spec, const char *tls_spec,
                                                 struct moat_acme_challenges *t,
                                                 struct moat_acme_standalone **out,
                                                 struct moat_err *err);
/* Stop the thread, close the listeners. NULL does nothing. */
void moat_acme_standalone_stop(struct moat_acme_standalone *s);

#endif
