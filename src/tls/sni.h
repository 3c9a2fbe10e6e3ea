/*
 * sni.h: choose a site's SSL_CTX from the name the client asked for (RFC 6066 §3).
 *
 * A table maps host names ("example.com"), one-label wildcards ("*.example.com") and a catch-all
 * ("*") to an SSL_CTX and an opaque site pointer. It is built once per configuration snapshot,
 * then frozen by moat_tls_sni_finish; lookups are read-only, lock-free and never allocate, so all
 * worker threads share one table.
 *
 * During the handshake a ClientHello callback (installed on every context of the table) reads the
 * server_name extension before OpenSSL picks the version, cipher and certificate, and moves the
 * connection to the matching site's context. The connection then reads its site with
 * moat_tls_sni_site_of and whether the name matched with moat_tls_sni_matched.
 */
#ifndef MOAT_TLS_SNI_H
#define MOAT_TLS_SNI_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stddef.h>

#include "core/err.h"

struct moat_tls_sni;

/* One site of the table. Lives as long as the table; read-only after moat_tls_sni_finish except
 * ctx, which moat_tls_sni_swap_ctx replaces atomically (read it with moat_tls_sni_entry_ctx). */
struct moat_tls_sni_entry {
    const char *name;       /* as configured, lowercase, no trailing dot: "a.example",
                               "*.example" or "*"; owned by the table */
    _Atomic(SSL_CTX *) ctx; /* one reference held by the table */
    void *site;             /* borrowed from the caller; never touched by tls/ */
    /* 1 for every configured entry; 0 only on the table's fallback entry (the first site,
     * returned for names that matched nothing when there is no "*" site) */
    int matched;
};

/* An empty table, or NULL when out of memory. */
struct moat_tls_sni *moat_tls_sni_new(void);

/*
 * Add a site under `name`: a host name ("example.com", ASCII letters, digits, '-' and '_' in
 * dot-separated labels of 1..63 bytes, at most 253 bytes, one trailing dot ignored, case
 * ignored), a wildcard one label deep ("*.example.com") or "*" (the default for unknown names).
 * Takes a reference on `ctx` (SSL_CTX_up_ref); `site` is borrowed and must outlive the table.
 * A context should belong to one table only (moat_tls_sni_finish refuses one already owned by
 * another table). Refuses (MOAT_E_CONFIG) a malformed name, (MOAT_E_USAGE) adding after finish.
 */
MOAT_MUST_USE moat_rc moat_tls_sni_add(struct moat_tls_sni *s, const char *name, SSL_CTX *ctx,
                                       void *site, struct moat_err *err);

/*
 * Freeze the table: sort it for lookups, pick the default (the "*" site if any, else the first
 * site added) and install the ClientHello callback on every context. Refuses (MOAT_E_CONFIG) an
 * empty table or a name given twice (the message names it), (MOAT_E_CONFIG) a context already
 * serving another table, (MOAT_E_USAGE) a second finish.
 */
MOAT_MUST_USE moat_rc moat_tls_sni_finish(struct moat_tls_sni *s, struct moat_err *err);

/*
 * TLS-ALPN-01 (RFC 8737): fn(arg, name, &cert, &key) gives the challenge certificate and key
 * (references for the caller) for a name being validated, 1 when there is one. A ClientHello
 * that offers exactly acme-tls/1 for such a name is answered on `ctx` (whose ALPN list is
 * acme-tls/1; a reference is taken) with that certificate, and the connection is marked
 * (moat_tls_sni_is_acme): it carries no HTTP. Every other handshake is untouched. Before
 * moat_tls_sni_finish; fn is called from the workers' threads.
 */
typedef int (*moat_tls_acme_fn)(void *arg, const char *name, X509 **cert, EVP_PKEY **key);
MOAT_MUST_USE moat_rc moat_tls_sni_set_acme(struct moat_tls_sni *s, SSL_CTX *ctx,
                                            moat_tls_acme_fn fn, void *arg, struct moat_err *err);
/* 1 on a connection answered as a TLS-ALPN-01 validation. */
int moat_tls_sni_is_acme(SSL *ssl);

/* Drop the table's context references and names. Call it only when no connection can still be
 * handshaking on its contexts (the configuration snapshot's last reference). NULL does nothing. */
void moat_tls_sni_free(struct moat_tls_sni *s);

/*
 * The entry for `name` (`len` bytes, not NUL-terminated; NULL/0 means "no SNI"): an exact match
 * first (case-insensitive, one trailing dot ignored), then a wildcard one label deep
 * ("*.example.com" matches "a.example.com", not "example.com" nor "a.b.example.com"), then the
 * "*" site, then the fallback entry (matched == 0). A malformed name (bad bytes, empty label,
 * too long) matches nothing. Never NULL after a successful finish; NULL before. No allocation.
 */
const struct moat_tls_sni_entry *moat_tls_sni_lookup(const struct moat_tls_sni *s, const char *name,
                                                     size_t len);

/* The context to create connections with (SSL_new): the default site's (after a swap of that
 * site, the new one). NULL before finish. */
SSL_CTX *moat_tls_sni_default_ctx(const struct moat_tls_sni *s);

/* The context `e` hands out now (after a swap, the new one). NULL for NULL. */
SSL_CTX *moat_tls_sni_entry_ctx(const struct moat_tls_sni_entry *e);

/*
 * Replace the context of every entry of `site` (the pointer given to moat_tls_sni_add) with
 * `ctx`, atomically per entry: handshakes that read their ClientHello from now on get `ctx`
 * (its certificates, policy and session ID context); connections already switched or created
 * keep the context they hold a reference to. The table takes its own references on `ctx` and
 * keeps the old contexts' until moat_tls_sni_free, because a handshake on another thread may be
 * about to take one. Call from one thread at a time (the main thread), on a finished table.
 * Refuses (MOAT_E_USAGE) an unfinished table, (MOAT_E_NOTFOUND) a site with no entry,
 * (MOAT_E_CONFIG) a context serving another table; on failure nothing changed.
 */
MOAT_MUST_USE moat_rc moat_tls_sni_swap_ctx(struct moat_tls_sni *s, const void *site, SSL_CTX *ctx,
                                            struct moat_err *err);

/* The site chosen for `ssl` during its ClientHello: the SNI match, or the default site when the
 * client sent no usable name. NULL before the ClientHello was read. Valid while the table is. */
void *moat_tls_sni_site_of(SSL *ssl);

/* 1 if the client's SNI named a configured site (exact, wildcard or "*"), 0 if the connection
 * fell back to the first site (unknown, malformed or absent name, and no "*" site) or no
 * ClientHello was read yet. The HTTP layer decides what to do with unmatched connections. */
int moat_tls_sni_matched(SSL *ssl);

/*
 * 1 when the certificate this connection presented covers `host` (`len` bytes, no port; an IPv6
 * address with or without brackets) the way a client checks it (RFC 6125: DNS SANs with a
 * one-label wildcard, IP SANs); 0 otherwise or before the handshake chose one. A request for a
 * host the certificate covers may be served on this connection (RFC 9110 §4.3.4, §7.4).
 */
int moat_tls_sni_covers(SSL *ssl, const char *host, size_t len);

/*
 * Module-internal, exposed for tests and fuzzing: find the host_name in the body of a
 * server_name extension (RFC 6066 §3). Sets *name and *len to point into `ext` and returns 1 when
 * the list holds exactly one host_name entry and nothing else (as OpenSSL requires); 0 otherwise.
 */
int moat_tls__sni_parse_ext(const unsigned char *ext, size_t ext_len, const unsigned char **name,
                            size_t *len);

#endif
