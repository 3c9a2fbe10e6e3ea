/*
 * ca.h: certificate authorities: moat's local CA (used by zero-config `moat serve` for localhost
 * certificates) and the CAs people make with `moat ca init`.
 *
 * Shaped like a real CA: a root (10 years) that only signs intermediates (5 years), and the
 * intermediate signs leaves, so the root key can be moved offline and the intermediate replaced
 * without every client trusting a new root. Key types: ECDSA P-256 (default), P-384, RSA
 * 2048/3072/4096 and Ed25519 (see key.h).
 *
 * Folder layout (created 0700): root.pem, root.key, intermediate.pem, intermediate.key (keys
 * 0600, certificates 0644, each written atomically), plus .lock for concurrent openers, and
 * optionally `policy` (which names the CA signs, see policy.h), `settings` (where its CRLs are
 * published, see crlurl.h), `index.txt`, `crl.pem` and `root-crl.pem` (issued and revoked
 * certificates, see crl.h). A folder made by `moat ca intermediate --out`
 * holds root.pem without root.key: an issuing CA whose root key stays elsewhere.
 */
#ifndef MOAT_PKI_CA_H
#define MOAT_PKI_CA_H

#include "core/err.h"
#include "pki/key.h"
#include "pki/policy.h"

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* An opened CA. All fields owned; the root's private key is never kept in memory. */
struct moat_ca {
    EVP_PKEY *key; /* the issuing CA's (intermediate's) private key */
    X509 *cert;    /* the issuing CA (intermediate) */
    X509 *root;    /* the root; what clients must trust */
    char *dir;
    struct moat_policy *policy; /* <dir>/policy; an empty policy when the file is absent */
    char *crl_url;      /* <dir>/settings: the intermediate's CRL, which leaves point at; NULL */
    char *root_crl_url; /* <dir>/settings: the root's CRL, which intermediates point at; NULL */
};

/* Longest validity of a server certificate: Apple platforms refuse TLS server certificates
 * valid for more than 825 days, whoever issued them. */
#define MOAT_CA_MAX_LEAF_DAYS 825
/* Longest validity of a client certificate (no client enforces a limit; ten years). */
#define MOAT_CA_MAX_CLIENT_DAYS 3650
/* Defaults of `moat cert issue` and `moat ca sign`: short-lived server certificates (as ACME
 * CAs issue them), a year for client certificates that people install by hand. */
#define MOAT_CA_DEFAULT_SERVER_DAYS 90
#define MOAT_CA_DEFAULT_CLIENT_DAYS 365
/* A new certificate starts this long in the past, so clients with a slightly slow clock accept
 * it at once. */
#define MOAT_CA_BACKDATE_SECONDS 3600

/* How to make a CA (root or intermediate). Zeroed means the defaults. */
struct moat_ca_opts {
    const char *name;            /* CN; NULL: "moat local CA <user>@<host>" (64 bytes used) */
    enum moat_key_type key_type; /* of the new CA keys; default ECDSA P-256 */
    const char *const *permit;   /* name constraints (policy.h moat_policy_constraints_new) */
    size_t npermit;
    const char *const *exclude;
    size_t nexclude;
    /* CRL addresses (crlurl.h; checked with moat_crlurl_check), NULL: none (init) or unchanged
     * (intermediate). crl_url: where the CRL of the intermediate made now is published, kept
     * in the settings of the folder that issues with it; root_crl_url: where the root's CRL is
     * published, kept in the root's folder and written into the intermediate. */
    const char *crl_url;
    const char *root_crl_url;
};

/* What a leaf certificate is for. Borrowed pointers only. */
struct moat_ca_leaf {
    const char *const *names; /* 1..MOAT_NAMES_MAX names, see names.h; the first is the CN */
    size_t n;
    int days;      /* 1..MOAT_CA_MAX_LEAF_DAYS (server) or MOAT_CA_MAX_CLIENT_DAYS (client) */
    int client;    /* 1: clientAuth (e-mail and URI names allowed); 0: serverAuth */
    EVP_PKEY *pub; /* the public key to certify (a private key works too; only read) */
};

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
 * not signed by the root, key not matching its certificate, a certificate that is not a CA),
 * when the root or intermediate has expired, or when the settings file is bad (its line).
 * *out is freed with moat_ca_free.
 */
MOAT_MUST_USE moat_rc moat_ca_open_or_create(const char *dir, const char *name,
                                             struct moat_ca **out, int *created,
                                             struct moat_err *err);
/* NULL does nothing. */
void moat_ca_free(struct moat_ca *ca);

/*
 * Create a new CA in `dir` (made 0700 with parents): a root and an intermediate signed by it,
 * both with keys of o->key_type (NULL `o`: defaults) and, when o->permit/o->exclude are given,
 * critical nameConstraints (RFC 5280 §4.2.1.10) on both. o->root_crl_url goes into the
 * intermediate as its CRL distribution point; both URLs are kept in <dir>/settings. Refuses
 * (MOAT_E_USAGE) a bad URL before anything is made, and a folder that already holds any CA
 * file: a CA is never replaced by accident (the message names `moat ca set` when URLs were
 * given). *out may be NULL.
 */
MOAT_MUST_USE moat_rc moat_ca_init(const char *dir, const struct moat_ca_opts *o,
                                   struct moat_ca **out, struct moat_err *err);

/*
 * Open the existing CA in `dir` (the same checks as moat_ca_open_or_create) and its policy.
 * A folder without a CA is MOAT_E_NOTFOUND, saying how to create one; a bad policy file is
 * MOAT_E_CONFIG with its line.
 */
MOAT_MUST_USE moat_rc moat_ca_open(const char *dir, struct moat_ca **out, struct moat_err *err);

/* moat's local CA folder: $MOAT_STATE/ca, else $HOME/.local/share/moat/ca (the same folder
 * `moat serve` uses). Malloc'ed into *out; nothing is created. */
MOAT_MUST_USE moat_rc moat_ca_default_dir(char **out, struct moat_err *err);

/*
 * Make a new intermediate signed by the root of the CA in `root_dir` (whose root.key must be
 * there), valid 5 years but never past the root, with keys and name constraints from `o`.
 *  - `out_dir` NULL or the same folder: the CA's intermediate is replaced (renewal, or after a
 *    compromise); the old intermediate.pem/.key are kept as intermediate-<YYYYmmddHHMMSS>.*.
 *  - another folder: a new issuing CA is made there (root.pem copied, no root.key), which can
 *    go to another machine while the root key stays here. The folder must hold no CA.
 * The new intermediate points at the root's CRL: o->root_crl_url when given (then also stored
 * in the root's folder), else the root folder's setting. o->crl_url, when given, becomes the
 * crl_url of the folder that issues with the new intermediate; otherwise an in-place renewal
 * keeps the folder's, and a new issuing CA has none (the root folder's crl_url is the CRL of
 * another intermediate, never the right one for it).
 * *out (may be NULL) is the CA that now issues with the new intermediate.
 */
MOAT_MUST_USE moat_rc moat_ca_intermediate(const char *root_dir, const char *out_dir,
                                           const struct moat_ca_opts *o, struct moat_ca **out,
                                           struct moat_err *err);

/*
 * Sign a leaf for `l` at time `now` (0: the clock), after every check a CA owes: names
 * (names.h), days, the CA's policy and name constraints (policy.h), and that the CA is still
 * valid. The certificate has subject CN = the first name (when it fits in 64 bytes; else an
 * empty subject and a critical SAN), the names as SANs, CA:FALSE, keyUsage digitalSignature
 * (plus keyEncipherment for an RSA server key), extendedKeyUsage serverAuth or clientAuth, key
 * identifiers, ca->crl_url as crlDistributionPoints when set, a random 128-bit serial and the
 * validity of moat_ca_leaf_validity.
 * Refusals are MOAT_E_USAGE; *out is owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_ca_sign(struct moat_ca *ca, const struct moat_ca_leaf *l, time_t now,
                                   X509 **out, struct moat_err *err);

/*
 * A self-signed leaf for `l`, signed with `key` (which must be the private half of l->pub, or
 * l->pub NULL to certify `key` itself). Same profile as moat_ca_sign (CA:FALSE: it can
 * identify one server, never issue), no policy. *out is owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_ca_self_signed(const struct moat_ca_leaf *l, EVP_PKEY *key, time_t now,
                                          X509 **out, struct moat_err *err);

/*
 * The validity of a new leaf: from now - MOAT_CA_BACKDATE_SECONDS to now + days, cut at
 * `issuer_not_after` (0: no issuer) because no leaf may outlive its issuer (RFC 5280 §6.1.3
 * checks each link, so the leaf would fail the day its issuer expires). *cut says whether it
 * was cut (may be NULL). Refuses (MOAT_E_CONFIG) when the issuer has expired or has less than
 * one day left: renew the issuer first.
 */
MOAT_MUST_USE moat_rc moat_ca_leaf_validity(time_t now, int days, time_t issuer_not_after,
                                            time_t *not_before, time_t *not_after, int *cut,
                                            struct moat_err *err);

/*
 * Write `n` certificates as PEM, in order, to `path` (mode 0644, atomically). When `replace`
 * is 0 an existing file is refused (MOAT_E_IO with EEXIST, naming the file).
 */
MOAT_MUST_USE moat_rc moat_ca_write_certs(const char *path, X509 *const *certs, size_t n,
                                          int replace, struct moat_err *err);

/* The time in a certificate field as seconds since the epoch (0 when unreadable). */
time_t moat_ca_asn1_time(const ASN1_TIME *t);

/*
 * Issue a server certificate for `names` (1 to 100; each an IP address, possibly "[v6]", which
 * becomes an IP SAN, or a DNS name, possibly "*.wildcard", which becomes a DNS SAN) with a new
 * key of type `kt`: moat_ca_sign with client 0, so the same profile and checks. Writes nothing.
 * Bad names or days are MOAT_E_USAGE. *cert_out and *key_out are owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_ca_issue_server(struct moat_ca *ca, const char *const *names, size_t n,
                                           int days, enum moat_key_type kt, X509 **cert_out,
                                           EVP_PKEY **key_out, struct moat_err *err);

/*
 * 1 when moat_ca_ensure_leaf would reuse the files at cert_path and key_path as they are at
 * `now` (they load, belong together, come from ca->cert, cover `names` and have more than a
 * third of their validity left), 0 when it would issue a new certificate. Reads only ca->cert
 * and the two files; writes nothing (what `moat serve --check` needs).
 */
int moat_ca_leaf_reusable(struct moat_ca *ca, const char *cert_path, const char *key_path,
                          const char *const *names, size_t n, time_t now);

/*
 * For zero-config serving: make sure `<certs_dir>/<label>.pem` and `.key` hold a certificate from
 * this CA for all of `names`. They are reused when they load, belong together, were issued by
 * this CA's current intermediate (which follows the leaf in the file), cover every name, point
 * at the CA's current crl_url (or at none when it has none) and have more than a third of
 * their validity left; otherwise a new ECDSA P-256 certificate valid 30
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

/*
 * Change the CRL addresses kept in ca->dir/settings, under the folder's lock: each of
 * `crl_url` and `root_crl_url` is NULL (unchanged), "" (removed) or a URL (checked with
 * moat_crlurl_check, MOAT_E_USAGE when bad). Setting root_crl_url needs root.key in the
 * folder (it is used when the root signs an intermediate; MOAT_E_USAGE otherwise, with the
 * fix). ca->crl_url and ca->root_crl_url follow. Certificates already issued keep what they
 * carry.
 */
MOAT_MUST_USE moat_rc moat_ca_set_crl_urls(struct moat_ca *ca, const char *crl_url,
                                           const char *root_crl_url, struct moat_err *err);

#endif
