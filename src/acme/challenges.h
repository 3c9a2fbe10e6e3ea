/*
 * challenges.h: the answers to ACME challenges that moat's own listeners give: a table that
 * the ACME side fills (solvers) and the serving side reads (the plain HTTP listener for
 * HTTP-01, the TLS handshake for TLS-ALPN-01), possibly from other threads.
 *
 * Reads happen only for requests that ask for a challenge (a path under
 * /.well-known/acme-challenge/, a ClientHello offering only acme-tls/1), so the lock is never
 * on the ordinary request path.
 */
#ifndef MOAT_ACME_CHALLENGES_H
#define MOAT_ACME_CHALLENGES_H

#include "acme/order.h"
#include "core/err.h"

#include <stddef.h>

#include <openssl/ssl.h>

#define MOAT_ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"
#define MOAT_ACME_TLS_ALPN "acme-tls/1"

struct moat_acme_challenges;

MOAT_MUST_USE moat_rc moat_acme_challenges_new(struct moat_acme_challenges **out,
                                               struct moat_err *err);
/* NULL does nothing. Solvers made from it must be gone first. */
void moat_acme_challenges_free(struct moat_acme_challenges *t);

/*
 * The HTTP-01 answer for a request path (as sent: "/.well-known/acme-challenge/TOKEN") into
 * out: 1 when the token is one moat is answering, 0 otherwise (also for paths outside the
 * prefix). Thread-safe.
 */
int moat_acme_challenges_http01(struct moat_acme_challenges *t, const char *path, size_t len,
                                char *out, size_t outlen);

/*
 * For a handshake that offers acme-tls/1 for `name`: the challenge certificate and key
 * (references for the caller: X509_free, EVP_PKEY_free), 1 when there is one. Thread-safe.
 */
int moat_acme_challenges_alpn(struct moat_acme_challenges *t, const char *name, X509 **cert,
                              EVP_PKEY **key);

/* 1 when any TLS-ALPN-01 answer is published (a cheap check before parsing a ClientHello). */
int moat_acme_challenges_alpn_active(struct moat_acme_challenges *t);

/* Solvers that publish into t: "http-01" or "tls-alpn-01". Freed with moat_acme_solver_free. */
/*
 * The table by hand: an answer (alpn 0: HTTP-01 token -> key authorization; 1: TLS-ALPN-01 for
 * `ident`, whose certificate is made here), forgotten after ttl_s (0: kept until removed); and
 * its removal. A cluster node adds the answers another node's solvers give, so that the CA may
 * check any node. Thread-safe.
 */
MOAT_MUST_USE moat_rc moat_acme_challenges_put(struct moat_acme_challenges *t, int alpn,
                                               const char *ident, const char *token,
                                               const char *key_authz, unsigned ttl_s,
                                               struct moat_err *err);
void moat_acme_challenges_remove(struct moat_acme_challenges *t, int alpn, const char *ident,
                                 const char *token);

/* Told of each answer the table's solvers give (added 1) or take back (added 0; key_authz "").
 * After an answer is given, the solver waits settle_ms before the CA is told to check, so that
 * whoever the hook tells can answer too. Set before any solver runs. */
typedef void (*moat_acme_challenge_hook)(void *data, int added, int alpn, const char *ident,
                                         const char *token, const char *key_authz);
void moat_acme_challenges_on_change(struct moat_acme_challenges *t, moat_acme_challenge_hook fn,
                                    void *data, unsigned settle_ms);

MOAT_MUST_USE moat_rc moat_acme_table_solver_new(struct moat_acme_challenges *t, const char *type,
                                                 struct moat_acme_solver **out,
                                                 struct moat_err *err);

/* A solver that writes the HTTP-01 answer as a file under <webroot>/.well-known/acme-challenge/
 * (for a site another web server serves). */
MOAT_MUST_USE moat_rc moat_acme_webroot_solver_new(const char *webroot,
                                                   struct moat_acme_solver **out,
                                                   struct moat_err *err);

/* Free a solver made by any of these constructors; NULL does nothing. */
void moat_acme_solver_free(struct moat_acme_solver *s);

/*
 * The self-signed TLS-ALPN-01 certificate for `name` (RFC 8737 §3): the name as its only
 * subjectAltName and the critical acmeIdentifier extension holding SHA-256(key_authz), with a
 * fresh P-256 key.
 */
MOAT_MUST_USE moat_rc moat_acme_alpn_cert_new(const char *name, const char *key_authz, X509 **cert,
                                              EVP_PKEY **key, struct moat_err *err);

/*
 * The context TLS-ALPN-01 validations are answered on: moat's TLS policy, ALPN acme-tls/1
 * only, and a stand-in certificate that each validation replaces with its challenge
 * certificate (moat_tls_sni_set_acme). *out is the caller's (SSL_CTX_free).
 */
MOAT_MUST_USE moat_rc moat_acme_alpn_ctx_new(SSL_CTX **out, struct moat_err *err);

#endif
