/*
 * chain.h: a server's certificate file, loaded and checked before the server starts.
 *
 * moat refuses to start with a certificate that clients will certainly reject, and says why in
 * words with the fix: the key does not match, the certificate expired, the file is in the wrong
 * order, the certificate is not for TLS servers or is a CA, it does not lead to the CA it was
 * said to come from. What depends on the clients (an issuer moat cannot find, which may be a
 * missing intermediate or a private root they trust) is a warning with the fix for each case.
 * Failure kinds come from verify.h, the list shared with `moat verify`, `moat trace` and mTLS
 * refusals.
 */
#ifndef MOAT_PKI_CHAIN_H
#define MOAT_PKI_CHAIN_H

#include "core/err.h"
#include "pki/verify.h"

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* A certificate file as written: the first certificate and the rest in file order.
 * Invariant: leaf != NULL and extra != NULL (possibly empty). All fields owned. */
/* (formatting kept by hand: clang-format would write "STACK_OF(X509) * extra") */
/* clang-format off */
struct moat_chain {
    X509 *leaf;
    STACK_OF(X509) *extra; /* the rest of the file, in order */
    char *path;            /* the file name used in messages */
};
/* clang-format on */

/*
 * Load every certificate of a PEM file (private keys and other blocks in it are skipped) or a
 * single DER certificate. Refuses, with the file in err->where: missing (MOAT_E_NOTFOUND),
 * unreadable (MOAT_E_IO), and as MOAT_E_CERT: empty, no certificate (a key or CSR given
 * instead), a damaged certificate (saying which one). *out is freed with moat_chain_free.
 */
MOAT_MUST_USE moat_rc moat_chain_load(const char *path, struct moat_chain **out,
                                      struct moat_err *err);
/* Same on `len` bytes in memory; `name` stands for the file in messages (and becomes ->path). */
MOAT_MUST_USE moat_rc moat_chain_load_mem(const void *data, size_t len, const char *name,
                                          struct moat_chain **out, struct moat_err *err);
/* NULL does nothing. */
void moat_chain_free(struct moat_chain *c);

/*
 * A warning of the start-up checks: something clients may accept or refuse depending on what
 * they trust, which moat cannot know (an issuer that is in neither the file nor any store).
 * `msg` (plain words with the fixes, naming the file) lives only during the call. Called at
 * most once per check, and never when the check fails.
 */
typedef void (*moat_chain_warn_cb)(void *arg, enum moat_verify_kind kind, const char *msg);

/* What moat_chain_check_with checks a chain against. Zeroed: no key, no stores, no warnings.
 * Everything is borrowed for the call. */
struct moat_chain_check_opts {
    EVP_PKEY *key;      /* the private key; NULL: not checked */
    X509_STORE *trust;  /* what this machine knows (system, `trust`, the local CA); may be NULL */
    X509_STORE *anchor; /* the CA(s) the chain must lead to (`cert_ca`, `serve --ca`); may be
                           NULL. Only its certificates are read (X509_STORE_get1_all_certs). */
    const char *anchor_name; /* the anchor's file(s) in messages, e.g. "root.pem" */
    time_t now;
    moat_chain_warn_cb warn; /* may be NULL: warnings are dropped */
    void *warn_arg;
};

/*
 * The start-up checks, in this order, each failing (MOAT_E_CERT) with the file named and the fix:
 *   - the key (may be NULL: not checked) does not match the leaf             -> KEY_MISMATCH
 *   - the leaf is expired or not yet valid at `now` (dates and days given)   -> EXPIRED/NOT_YET
 *   - the leaf is a CA (basicConstraints CA:TRUE)                            -> NOT_CA
 *   - the leaf has extendedKeyUsage without serverAuth, or keyUsage without
 *     digitalSignature/keyEncipherment                                       -> BAD_KEY_USAGE
 *   - a certificate is not issued by the next one in the file (wrong order,
 *     unrelated certificate, skipped intermediate, non-CA issuer)            -> BAD_SIGNATURE,
 *                                                          MISSING_INTERMEDIATE or NOT_CA
 *   - an intermediate of the file has expired (unless a store holds a root with the same name,
 *     as happens with cross-signed roots)                                     -> EXPIRED
 *   - with an `anchor`: the last certificate of the file does not lead to it: its issuer is
 *     not there (UNKNOWN_ISSUER: another CA, or an intermediate missing from the file), a
 *     certificate of that name is there but did not sign it (BAD_SIGNATURE), is not a CA
 *     (NOT_CA) or has expired (EXPIRED); a file that ends with a root not in the anchor is
 *     UNKNOWN_ISSUER. An intermediate found in the anchor but missing from the file is a
 *     warning (MISSING_INTERMEDIATE): clients that trust only the root need it.
 * Without an anchor, when the last certificate of the file is not self-signed and its issuer is
 * not in `trust`, the chain is served anyway with a warning, because moat cannot tell an
 * intermediate the file should carry from a private root the clients trust: MISSING_INTERMEDIATE
 * when the file holds only the leaf, UNKNOWN_ISSUER when it ends with a CA; both say what to do
 * in each case. A same-named certificate in `trust` that did not sign it is a BAD_SIGNATURE
 * warning. Without `trust` nor `anchor` that last check is skipped. Whether the names cover the
 * sites is asked separately with moat_chain_covers_name. Nothing is taken over. *kind (may be
 * NULL) is the kind that failed, MOAT_V_OK on success (warnings are not failures).
 */
MOAT_MUST_USE moat_rc moat_chain_check_with(const struct moat_chain *c,
                                            const struct moat_chain_check_opts *o,
                                            enum moat_verify_kind *kind, struct moat_err *err);
/* moat_chain_check_with with only `key`, `trust` and `now` (warnings dropped). */
MOAT_MUST_USE moat_rc moat_chain_check(const struct moat_chain *c, EVP_PKEY *key, X509_STORE *trust,
                                       time_t now, struct moat_err *err);
/* Same, also reporting which kind failed (MOAT_V_OK on success) in *kind (may be NULL). */
MOAT_MUST_USE moat_rc moat_chain_check_kind(const struct moat_chain *c, EVP_PKEY *key,
                                            X509_STORE *trust, time_t now,
                                            enum moat_verify_kind *kind, struct moat_err *err);

/*
 * 1 when the leaf covers `name` the way browsers check it (RFC 6125 §6.4): a DNS name against
 * the DNS SANs, a "*." wildcard matching exactly one leftmost label, never the subject CN; an IP
 * address (v4, v6, or "[v6]") against the IP SANs. A trailing dot is ignored. 0 otherwise.
 */
int moat_chain_covers_name(const struct moat_chain *c, const char *name);

/*
 * Build a store of trusted roots: the system's default locations when `system_defaults`, plus
 * every certificate of each of the `n` files in `extra_files` (PEM bundles, e.g. the local CA's
 * root.pem). A file that cannot be read or holds no certificate fails with its name.
 * *out is owned by the caller (X509_STORE_free).
 */
MOAT_MUST_USE moat_rc moat_trust_store_new(const char *const *extra_files, size_t n,
                                           int system_defaults, X509_STORE **out,
                                           struct moat_err *err);

#endif
