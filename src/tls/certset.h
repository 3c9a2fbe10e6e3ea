/*
 * certset.h: one certificate set in memory: a leaf, the chain served after it, its private key
 * and what the server needs to know about it without parsing again (key type, validity, names,
 * when its source wants it replaced).
 *
 * Certificates are parsed once, by a source (source.h), into a set; TLS contexts are built from
 * sets (tls/ctx.h), and a site's sets can be replaced at run time (moat_snapshot_swap_certs). A
 * set is immutable after moat_tls_certset_new and reference-counted (atomically: worker threads,
 * the main thread and OpenSSL's contexts may hold it at once); the last unref frees it and
 * with it the only copy moat keeps of the private key.
 */
#ifndef MOAT_TLS_CERTSET_H
#define MOAT_TLS_CERTSET_H

#include "core/err.h"

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Invariant: every field is set by moat_tls_certset_new and never changes; leaf, chain, key, label
 * and key_label are never NULL, names has nnames entries (possibly 0). */
/* (formatting kept by hand: clang-format would write "STACK_OF(X509) * chain") */
/* clang-format off */
struct moat_tls_certset {
    atomic_int _refs;
    X509 *leaf;            /* owned */
    STACK_OF(X509) *chain; /* owned: what follows the leaf on the wire, in order (may be empty) */
    EVP_PKEY *key;         /* owned: the leaf's private key; never logged */
    int key_type;          /* EVP_PKEY_get_base_id(key): EVP_PKEY_EC, EVP_PKEY_RSA, ... */
    time_t not_before;     /* the leaf's validity, seconds since the epoch */
    time_t not_after;
    char **names;          /* owned: the leaf's DNS and IP subjectAltNames as text, in order */
    size_t nnames;
    char *label;           /* owned: the certificate's file (or other origin) for messages */
    char *key_label;       /* owned: the key's file for messages */
    time_t renew_at;       /* when its source wants it replaced; 0 = never */
};
/* clang-format on */

/*
 * A new set of one reference. Takes over `leaf`, `chain` (may be NULL: no chain) and `key`
 * whatever happens, so the caller never frees them after this call. `label` and `key_label`
 * (key_label may be NULL: label is used) are copied. Refuses (MOAT_E_CERT, label in
 * err->where) a leaf whose dates or subjectAltNames cannot be read; MOAT_E_NOMEM. *out is NULL
 * on failure. Does not check that the key matches the leaf: sources run pki/'s checks first.
 */
MOAT_MUST_USE moat_rc moat_tls_certset_new(X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
                                           const char *label, const char *key_label,
                                           time_t renew_at, struct moat_tls_certset **out,
                                           struct moat_err *err);

/* Another reference to `s` (returns s; NULL stays NULL). */
struct moat_tls_certset *moat_tls_certset_ref(struct moat_tls_certset *s);

/* Drop one reference; the last frees the set. NULL does nothing. */
void moat_tls_certset_unref(struct moat_tls_certset *s);

/* 1 when one of the set's names is `name` exactly (ASCII case ignored): a lookup for tests and
 * messages, not a certificate check (that is moat_chain_covers_name). */
int moat_tls_certset_has_name(const struct moat_tls_certset *s, const char *name);

#endif
