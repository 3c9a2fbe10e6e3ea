/*
 * ctx.h: build a server SSL_CTX with moat's TLS policy.
 *
 * One SSL_CTX per certificate set (a site, or several sites sharing certificates). The policy is
 * fixed and secure by default: TLS 1.2 and 1.3 only, ECDHE + AEAD ciphers only, X25519/P-256/
 * P-384, no compression, no renegotiation, no 0-RTT, strict ALPN. Certificates of different key
 * types (an ECDSA and an RSA one) live side by side in one context and OpenSSL serves the one the
 * client can verify. Contexts are built from certificate sets (tls/certset.h), parsed and
 * checked once by a certificate source (cert/source.h); nothing here reads a certificate or a
 * key file. A site's certificates are replaced at run time by building a new context from new
 * sets and publishing it through the SNI table (moat_tls_sni_swap_ctx).
 */
#ifndef MOAT_TLS_CTX_H
#define MOAT_TLS_CTX_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "core/err.h"

struct moat_tls_tickets;
struct moat_tls_client_auth;
struct moat_tls_certset;

struct moat_tls_opts {
    struct moat_tls_certset *const *sets; /* borrowed for the call (the context takes its own
                                          references on the certificates and keys); at least
                                          one, at most one per key type */
    size_t nsets;
    const char *const *alpn; /* server preference order, e.g. {"h2", "http/1.1"}; NULL/0 means
                                {"http/1.1", "http/1.0"}; each 1..255 bytes */
    size_t nalpn;
    int no_alpn; /* take no part in ALPN (a TCP stream's protocol is not moat's to choose) */
    struct moat_tls_tickets *tickets; /* shared ticket keys (the context takes a reference), or
                                         NULL: no tickets at all (TLS 1.2 and 1.3) */
    unsigned long session_cache_size; /* server-side session cache entries; 0 = no cache */
    long session_timeout_s;           /* session lifetime; 0 = OpenSSL's default, < 0 refused */
    const struct moat_tls_client_auth *client_auth; /* borrowed, must outlive the context; NULL
                                                       or mode off: no client certificates */
};

/*
 * Build a server context with the policy above, the certificate sets of `o->sets`, the ALPN
 * list and, when `o->tickets` is set, the shared session ticket keys.
 *
 * Refuses (MOAT_E_CONFIG) no certificate (nsets 0, or a NULL set), two certificates whose keys
 * are of the same type (the message names both, by the sets' labels: their files), a bad ALPN
 * list or a negative timeout; refuses (MOAT_E_CERT) a key that does not match its certificate
 * or a key type TLS cannot use with this policy. On success *out holds a new context with one
 * reference owned by the caller (SSL_CTX_free it); on failure *out is NULL.
 */
MOAT_MUST_USE moat_rc moat_tls_ctx_new(const struct moat_tls_opts *o, SSL_CTX **out,
                                       struct moat_err *err);

/*
 * After a handshake that failed because the client offered ALPN but none of our protocols:
 * 1, with the client's list in words ("h2, spdy/3.1") in `out`. 0 for any other handshake.
 */
int moat_tls_alpn_refused(SSL *ssl, char *out, size_t outlen);
/* Never pick "h2" on this connection, whatever its context offers (a listener with `http2
 * off`). 0 when it cannot be marked. */
int moat_tls_alpn_no_h2(SSL *ssl);

#endif
