/*
 * transport.h: the TLS implementation of core/transport.h: OpenSSL over the connection's socket,
 * through a BIO of ours that sends the records of one write with one system call (see
 * transport.c). This is the one place that turns
 * SSL_ERROR_WANT_READ/WANT_WRITE into "would block" (MOAT_E_AGAIN), so the HTTP code above
 * never sees OpenSSL, and the one SSL_new for server connections (clients get theirs from
 * tls/client.c's moat_tls_client_ssl_new, the one client TLS policy).
 */
#ifndef MOAT_TLS_TRANSPORT_H
#define MOAT_TLS_TRANSPORT_H

#include "core/err.h"
#include "core/transport.h"

#include <openssl/ssl.h>

/* Make t the server side of TLS over fd, with ctx as the context until SNI picks a site's.
 * On failure (MOAT_E_NOMEM) t is a plain transport that still owns fd: close it. */
MOAT_MUST_USE moat_rc moat_tls_transport_server(struct moat_transport *t, int fd, SSL_CTX *ctx,
                                                struct moat_err *err);
/* Make t the client side of TLS over fd to host (SNI for a name; the certificate must name
 * it), with the SSL from moat_tls_client_ssl_new. On failure t is a plain transport that still
 * owns fd. */
MOAT_MUST_USE moat_rc moat_tls_transport_client(struct moat_transport *t, int fd, SSL_CTX *ctx,
                                                const char *host, struct moat_err *err);
/* Server connections made from now on use kernel TLS (call it once, before the workers start,
 * and only when tls/ktls.h says the machine has it and `tls { ktls on }` asks for it): OpenSSL's
 * socket BIO with SSL_OP_ENABLE_KTLS, so the kernel makes the records, and files go with
 * SSL_sendfile (moat_transport_sendfile) when the kernel took the negotiated cipher. */
void moat_tls_transport_use_ktls(int on);

/* The SSL under a TLS transport, for the callers that need TLS facts (identity, SNI site, ALPN
 * refusal, verify result, sessions); NULL for any other transport. Borrowed from t. */
SSL *moat_tls_transport_ssl(const struct moat_transport *t);

#endif
