/*
 * verify.c: the table of certificate failure kinds and the mapping from OpenSSL's codes.
 *
 * Keep the names stable: they appear in logs, JSON output and test data files. Messages and
 * fixes may be improved freely.
 */
#include "pki/verify.h"

#include <string.h>

#include <openssl/x509v3.h>

struct kind_row {
    const char *name;
    const char *message;
    const char *fix;
};

static const struct kind_row kinds[MOAT_V_KIND_COUNT] = {
    [MOAT_V_OK] = {"ok", "the certificate is valid", "nothing to fix"},
    [MOAT_V_EXPIRED] = {"expired", "the certificate has expired",
                        "renew the certificate and install the new one"},
    [MOAT_V_NOT_YET_VALID] = {"not_yet_valid", "the certificate is not valid yet",
                              "check the system clock; if it is right, wait or reissue the "
                              "certificate with a start date in the past"},
    [MOAT_V_UNKNOWN_ISSUER] = {"unknown_issuer",
                               "the certificate was issued by a certificate authority this "
                               "machine does not trust",
                               "add the issuing root to the trust store (--ca-file), or use a "
                               "certificate from a publicly trusted authority"},
    [MOAT_V_MISSING_INTERMEDIATE] = {"missing_intermediate",
                                     "an intermediate certificate is missing from the chain",
                                     "append the intermediate certificate(s) after the leaf "
                                     "(use the 'fullchain' file your authority gave you)"},
    [MOAT_V_SELF_SIGNED] = {"self_signed", "the certificate is self-signed and not trusted",
                            "trust it explicitly (--ca-file) or use a certificate issued by a "
                            "trusted authority (moat's local CA or ACME)"},
    [MOAT_V_NAME_MISMATCH] = {"name_mismatch", "the certificate does not cover the name asked for",
                              "issue a certificate whose subjectAltName lists this name"},
    [MOAT_V_BAD_KEY_USAGE] = {"bad_key_usage",
                              "the certificate's key usage does not allow this use (e.g. no "
                              "serverAuth in extendedKeyUsage)",
                              "reissue the certificate for TLS server (or client) use"},
    [MOAT_V_NOT_CA] = {"not_ca",
                       "a certificate in the chain acts as an authority it is not allowed to be "
                       "(or a leaf is marked as a CA)",
                       "use a chain where only CA:TRUE certificates issue others and the leaf "
                       "is CA:FALSE"},
    [MOAT_V_PATH_LENGTH] = {"path_length",
                            "the chain is longer than an authority's pathLenConstraint allows",
                            "have the certificate issued by an authority allowed to issue at "
                            "this depth"},
    [MOAT_V_REVOKED] = {"revoked", "the certificate has been revoked by its issuer",
                        "get a new certificate; never reuse the revoked one"},
    [MOAT_V_WEAK_KEY] = {"weak_key", "a key in the chain is too small to be safe",
                         "reissue with an ECDSA P-256 or RSA 2048+ key"},
    [MOAT_V_WEAK_SIGNATURE] = {"weak_signature",
                               "a certificate is signed with a broken algorithm (MD5 or SHA-1)",
                               "reissue the certificate signed with SHA-256 or better"},
    [MOAT_V_BAD_SIGNATURE] = {"bad_signature",
                              "a signature in the chain does not verify (damaged certificate or "
                              "wrong order)",
                              "put the certificates in order, leaf first then each issuer, and "
                              "check none was altered"},
    [MOAT_V_KEY_MISMATCH] = {"key_mismatch", "the certificate does not match the private key",
                             "use the key the CSR was made from"},
    [MOAT_V_OTHER] = {"other", "the certificate could not be verified",
                      "run `moat verify` on it for details"},
};

static const struct kind_row *row(enum moat_verify_kind k)
{
    if ((unsigned)k >= MOAT_V_KIND_COUNT) {
        return &kinds[MOAT_V_OTHER];
    }
    return &kinds[k];
}

const char *moat_verify_kind_name(enum moat_verify_kind k)
{
    return row(k)->name;
}

const char *moat_verify_kind_message(enum moat_verify_kind k)
{
    return row(k)->message;
}

const char *moat_verify_kind_fix(enum moat_verify_kind k)
{
    return row(k)->fix;
}

enum moat_verify_kind moat_verify_kind_from_name(const char *name)
{
    for (int k = 0; name != NULL && k < MOAT_V_KIND_COUNT; k++) {
        if (strcmp(kinds[k].name, name) == 0) {
            return (enum moat_verify_kind)k;
        }
    }
    return MOAT_V_KIND_COUNT;
}

/*
 * OpenSSL reports "unable to get issuer" for both a missing intermediate and an untrusted root.
 * Today's public CAs never issue leaves straight from a root, so when the certificate whose
 * issuer is missing is a leaf, the likely cause is a server that did not send its intermediate;
 * when it is itself a CA, the root above it is what is missing from the trust store.
 */
static enum moat_verify_kind issuer_missing(X509 *cert)
{
    if (cert == NULL) {
        return MOAT_V_UNKNOWN_ISSUER;
    }
    if ((X509_get_extension_flags(cert) & EXFLAG_CA) != 0) {
        return MOAT_V_UNKNOWN_ISSUER;
    }
    return MOAT_V_MISSING_INTERMEDIATE;
}

enum moat_verify_kind moat_verify_kind_from_x509(int x509_v_err, X509 *cert)
{
    switch (x509_v_err) {
    case X509_V_OK:
        return MOAT_V_OK;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return MOAT_V_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return MOAT_V_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return issuer_missing(cert);
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        /* A root was sent but is not trusted here. */
        return MOAT_V_UNKNOWN_ISSUER;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return MOAT_V_SELF_SIGNED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
        return MOAT_V_NAME_MISMATCH;
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
        return MOAT_V_BAD_KEY_USAGE;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_INVALID_NON_CA:
        return MOAT_V_NOT_CA;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: /* deeper than the verifier's depth limit */
        return MOAT_V_PATH_LENGTH;
    case X509_V_ERR_CERT_REVOKED:
        return MOAT_V_REVOKED;
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
        return MOAT_V_WEAK_KEY;
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return MOAT_V_WEAK_SIGNATURE;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return MOAT_V_BAD_SIGNATURE;
    default:
        return MOAT_V_OTHER;
    }
}
