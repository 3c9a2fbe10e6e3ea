/*
 * verify.h: the one list of ways a certificate can fail, with a stable name, plain words and
 * the fix for each.
 *
 * `moat verify`, `moat trace`, the server's start-up checks and mTLS refusals in the log all
 * speak this list, so a failure reads the same wherever it shows up. OpenSSL's many X509_V_ERR_*
 * codes are folded into these kinds by moat_verify_kind_from_x509 (BearSSL's BR_ERR_X509_* list
 * served as the checklist).
 */
#ifndef MOAT_PKI_VERIFY_H
#define MOAT_PKI_VERIFY_H

#include <openssl/x509.h>

enum moat_verify_kind {
    MOAT_V_OK = 0,
    MOAT_V_EXPIRED,
    MOAT_V_NOT_YET_VALID,
    MOAT_V_UNKNOWN_ISSUER,       /* the chain ends at a root this machine does not trust */
    MOAT_V_MISSING_INTERMEDIATE, /* the server did not send a certificate between leaf and root */
    MOAT_V_SELF_SIGNED,          /* a lone self-signed certificate that is not trusted */
    MOAT_V_NAME_MISMATCH,
    MOAT_V_BAD_KEY_USAGE, /* KU/EKU forbid this use (e.g. no serverAuth) */
    MOAT_V_NOT_CA,        /* an issuer that is not allowed to issue, or a leaf that is a CA */
    MOAT_V_PATH_LENGTH,
    MOAT_V_REVOKED,
    MOAT_V_WEAK_KEY,
    MOAT_V_WEAK_SIGNATURE,
    MOAT_V_BAD_SIGNATURE, /* also: certificates in the wrong order */
    MOAT_V_KEY_MISMATCH,  /* certificate and private key do not belong together */
    MOAT_V_OTHER,
    MOAT_V_KIND_COUNT /* keep last */
};

/* Stable snake_case identifier ("expired", "missing_intermediate"), for logs, JSON and tests.
 * Never NULL: an out-of-range kind gives "other". */
const char *moat_verify_kind_name(enum moat_verify_kind k);
/* What is wrong, in plain words (one sentence, no trailing period). Never NULL. */
const char *moat_verify_kind_message(enum moat_verify_kind k);
/* How to fix it, in plain words. Never NULL. */
const char *moat_verify_kind_fix(enum moat_verify_kind k);
/* The kind named by moat_verify_kind_name, or MOAT_V_KIND_COUNT when the name is unknown. */
enum moat_verify_kind moat_verify_kind_from_name(const char *name);

/*
 * Fold an X509_V_ERR_* code (from X509_STORE_CTX_get_error or SSL_get_verify_result) into a kind.
 * `cert` is the certificate the error is about (X509_STORE_CTX_get_current_cert), may be NULL;
 * it separates a missing intermediate (a leaf whose issuer cannot be found) from an unknown root
 * (a CA certificate whose issuer cannot be found). It is only read.
 */
enum moat_verify_kind moat_verify_kind_from_x509(int x509_v_err, X509 *cert);

#endif
