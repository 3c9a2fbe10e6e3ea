/*
 * ca.h: moat's local certificate authority, used by zero-config `moat serve` for localhost
 * certificates and later by `moat ca`.
 *
 * Shaped like a real CA: a root (10 years) that only signs an intermediate (5 years), and the
 * intermediate signs server certificates, so the root key could be moved offline and the
 * intermediate replaced without every client trusting a new root. All keys are ECDSA P-256.
 *
 * Folder layout (created 0700): root.pem, root.key, intermediate.pem, intermediate.key (keys
 * 0600, certificates 0644, each written atomically), plus .lock for concurrent openers.
 */
#ifndef MOAT_PKI_CA_H
#define MOAT_PKI_CA_H

#include "core/err.h"
#include "pki/key.h"

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* An opened CA. All fields owned; the root's private key is never kept in memory. */
struct moat_ca {
    EVP_PKEY *key; /* the issuing CA's (intermediate's) private key */
    X509 *cert;    /* the issuing CA (intermediate) */
    X509 *root;    /* the root; what clients must trust */
    char *dir;
};

/* Longest validity moat_ca_issue_server accepts: Apple platforms refuse TLS server
 * certificates valid for more than 825 days, whoever issued them. */
#define MOAT_CA_MAX_LEAF_DAYS 825

/*
 * Open the CA in `dir`, creating it when the folder holds none of its files: the folder (0700,
 * with parents), a root "moat local CA <user>@<host>" (or `name` when not NULL; at most 64 bytes
 * are used) valid 10 years with basicConstraints CA:TRUE pathlen 1 and keyUsage keyCertSign,
 * cRLSign (both critical) and a subjectKeyIdentifier, then an intermediate (CA:TRUE pathlen 0,
 * 5 years, never past the root) signed by it. *created says which happened (may be NULL).
 *
 * An existing CA needs root.pem, intermediate.pem and intermediate.key (root.key may have been
 * moved offline). Refuses (MOAT_E_CONFIG, naming the files) when only some files are there, when
 * a file cannot be read (the loader's message), when they do not belong together (intermediate
 * not signed by the root, key not matching its certificate, a certificate that is not a CA) or
 * when the root or intermediate has expired. *out is freed with moat_ca_free.
 */
MOAT_MUST_USE moat_rc moat_ca_open_or_create(const char *dir, const char *name,
                                             struct moat_ca **out, int *created,
                                             struct moat_err *err);
/* NULL does nothing. */
void moat_ca_free(struct moat_ca *ca);

/*
 * Issue a server certificate for `names` (1 to 100; each an IP address, possibly "[v6]", which
 * becomes an IP SAN, or a DNS name, possibly "*.wildcard", which becomes a DNS SAN; CN = the
 * first name when it fits in 64 bytes) with a new key of type `kt`: extendedKeyUsage serverAuth,
 * keyUsage digitalSignature (critical; plus keyEncipherment for RSA keys, for TLS 1.2 RSA key
 * exchange), CA:FALSE, subject and authority key identifiers, a random 128-bit serial,
 * notBefore one hour ago (clocks drift) and `days` (1..MOAT_CA_MAX_LEAF_DAYS) of validity,
 * cut at the issuer's notAfter. Writes nothing. Bad names or days are MOAT_E_USAGE.
 * *cert_out and *key_out are owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_ca_issue_server(struct moat_ca *ca, const char *const *names, size_t n,
                                           int days, enum moat_key_type kt, X509 **cert_out,
                                           EVP_PKEY **key_out, struct moat_err *err);

/*
 * For zero-config serving: make sure `<certs_dir>/<label>.pem` and `.key` hold a certificate from
 * this CA for all of `names`. They are reused when they load, belong together, were issued by
 * this CA's current intermediate (which follows the leaf in the file), cover every name and have
 * more than a third of their validity left; otherwise a new ECDSA P-256 certificate valid 30
 * days is issued and written atomically: the key 0600, then the certificate followed by the
 * intermediate (so clients get the whole chain). `certs_dir` is created 0700 when missing.
 * `label` is a plain file name ([A-Za-z0-9._-], not starting with '.'). *cert_path and
 * *key_path are malloc'ed (free them); *issued says whether a new certificate was made (may be
 * NULL).
 */
MOAT_MUST_USE moat_rc moat_ca_ensure_leaf(struct moat_ca *ca, const char *certs_dir,
                                          const char *label, const char *const *names, size_t n,
                                          char **cert_path, char **key_path, int *issued,
                                          struct moat_err *err);

#endif
