/*
 * client.h: moat's one TLS client policy, for every connection moat opens to a TLS server: the
 * proxy's origins, `moat get` and `moat trace`, and later ACME and health checks.
 *
 * Policy: TLS 1.2 and 1.3 only (RFC 8996 retires older versions); for TLS 1.2 only ECDHE with an
 * AEAD cipher (the kinds moat serve offers); groups X25519, P-256, P-384, P-521; no compression,
 * no renegotiation. The server's certificate must chain to the trust given and name the host
 * asked for in its subjectAltName: a DNS name, or an IP address for an address literal, never
 * the CN (RFC 6125 §6.4.4) and no partial wildcards ("w*.example"). SNI carries host names only,
 * never address literals (RFC 6066 §3). Callers choose what differs by purpose: the trust, a
 * client certificate, the ALPN list, how a failed verification is reported, and, for `get` and
 * `trace` when a person asks for them, other versions, ciphers or groups.
 */
#ifndef MOAT_TLS_CLIENT_H
#define MOAT_TLS_CLIENT_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/ssl.h>

/* The TLS 1.2 cipher suites and the groups the policy offers, for messages ("moat offered ..."). */
extern const char moat_tls_client_ciphers12[];
extern const char moat_tls_client_groups[];

/* What a client context is built from. All pointers are borrowed for the call only, except
 * where a field says otherwise. Zero/NULL fields take the policy's choice. */
/* clang-format off */
struct moat_tls_client_opts {
    /* Trust: `store` when set (the context takes a reference); else the system store when
     * system_trust, plus ca_file (must load), plus ca_file_if_readable (skipped when absent). */
    X509_STORE *store;
    int system_trust;
    const char *ca_file;             /* PEM; refused with MOAT_E_CONFIG when it cannot be loaded */
    const char *ca_file_if_readable; /* PEM; e.g. moat's local CA root, which may not exist */
    /* How a failed check is handled: NULL ends the handshake at the first failure; a callback
     * may record the failure (and let the handshake go on, for a diagnosis). */
    SSL_verify_cb verify_cb;
    int no_verify; /* 1: check nothing (a probe that only asks whether TLS answers) */
    /* A client certificate: the leaf and its chain (PEM), and an unencrypted PEM key (NULL: in
     * cert_path). NULL cert_path: none. */
    const char *cert_path;
    const char *key_path;
    /* ALPN, in preference order, each 1..255 bytes; NULL/0: no ALPN extension. */
    const char *const *alpn;
    size_t nalpn;
    /* Diagnostic overrides for get/trace, only when a person asks for them; 0/NULL: policy. */
    int min_version;       /* TLS1_2_VERSION ... ; the policy's is TLS 1.2 */
    int max_version;       /* the policy's is TLS 1.3 */
    const char *ciphers12; /* OpenSSL cipher list for TLS 1.2 */
    const char *groups;    /* OpenSSL groups list */
    /* 1: a peer that closes without close_notify reads as end of data (SSL_OP_IGNORE_UNEXPECTED_EOF).
     * Only for readers that frame the data themselves: a close-delimited body could be cut. */
    int allow_unexpected_eof;
};
/* clang-format on */

/*
 * Build a client context with the policy and `o`. Refuses bad version bounds or a bad ALPN list
 * (MOAT_E_USAGE), a CA file that cannot be loaded (MOAT_E_CONFIG, naming it), and a client
 * certificate or key that cannot be loaded, is encrypted or does not match (MOAT_E_CERT, naming
 * the file). On success *out holds a context owned by the caller (SSL_CTX_free); on failure
 * *out is NULL.
 */
MOAT_MUST_USE moat_rc moat_tls_client_ctx_new(const struct moat_tls_client_opts *o, SSL_CTX **out,
                                              struct moat_err *err);

/*
 * A client connection of `ctx` to `host` (a DNS name, or an IPv4/IPv6 literal without
 * brackets): in connect state, with SNI for a name and none for an address, and the
 * certificate checked against the name or the address. The transport (SSL_set_fd or BIOs) is
 * the caller's. Refuses an empty host or one OpenSSL cannot check (MOAT_E_USAGE). *out is owned
 * by the caller (SSL_free); NULL on failure.
 */
MOAT_MUST_USE moat_rc moat_tls_client_ssl_new(SSL_CTX *ctx, const char *host, SSL **out,
                                              struct moat_err *err);

/* 4 or 6 when `host` is an IPv4 or IPv6 address literal (no brackets), else 0. */
int moat_tls_client_host_ip(const char *host);

#endif
