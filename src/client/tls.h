/*
 * tls.h: the client's TLS: one SSL_CTX per run with moat's client policy, and a handshake driven
 * by poll under the run's deadline. The policy is tls/client.h's; here it meets get/trace's trust
 * (verify.h), client certificate, --tls-min/--tls-max and ALPN http/1.1.
 */
#ifndef MOAT_CLIENT_TLS_H
#define MOAT_CLIENT_TLS_H

#include "client/get.h"
#include "client/verify.h"
#include "core/err.h"
#include "tls/client.h"

#include <openssl/ssl.h>

/*
 * A client context for `o` (versions, client certificate) verifying with `t`. Refuses a client
 * certificate or key that cannot be loaded or do not match, naming the file (MOAT_E_CERT), and
 * bad version bounds (MOAT_E_USAGE). *out is owned by the caller (SSL_CTX_free).
 */
MOAT_MUST_USE moat_rc moat_client_tls_ctx_new(const struct moat_client_opts *o,
                                              struct moat_client_trust *t, SSL_CTX **out,
                                              struct moat_err *err);

/* A context for a probe that only asks whether a port answers TLS: the same policy, no ALPN,
 * no verification. *out is owned by the caller. */
MOAT_MUST_USE moat_rc moat_client_tls_probe_ctx_new(SSL_CTX **out, struct moat_err *err);

/*
 * Run the client handshake on a connected non-blocking socket until done, failed or past
 * `deadline_ms`. MOAT_OK when done; MOAT_E_LIMIT on timeout; MOAT_E_CLOSED when the server closed
 * the connection; MOAT_E_TLS otherwise. *ssl_err gets OpenSSL's first error code (0 if none)
 * and err its words.
 */
MOAT_MUST_USE moat_rc moat_client_tls_handshake(SSL *ssl, int fd, double deadline_ms,
                                                unsigned long *ssl_err, struct moat_err *err);

/* Fill the negotiated facts into the hop: version, cipher, group, signature scheme, ALPN,
 * resumption. Safe after a failed handshake (what is known so far). */
void moat_client_tls_facts(SSL *ssl, struct moat_client_hop *h);

#endif
