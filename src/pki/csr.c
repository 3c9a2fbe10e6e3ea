/*
 * csr.c: make, load, check and save certificate signing requests.
 *
 * Loading looks at what the file holds first (like key.c), so that a certificate or a key given
 * where a CSR belongs is named for what it is. Every CSR that leaves this file has had its
 * self-signature checked: a CA must not sign a key whose holder did not sign the request
 * (RFC 2986 §3: the signature proves possession of the private key).
 */
#include "pki/csr.h"

#include "pki/fsutil.h"
#include "pki/key.h"
#include "pki/names.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define CN_MAX 64 /* RFC 5280 Appendix A: ub-common-name */

static const EVP_MD *digest_for(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448")) {
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) > 256) {
        return EVP_PKEY_get_bits(k) > 384 ? EVP_sha512() : EVP_sha384();
    }
    return EVP_sha256();
}

moat_rc moat_csr_new(const char *const *names, size_t n, EVP_PKEY *key, X509_REQ **out,
                     struct moat_err *err)
{
    *out = NULL;
    MOAT_TRY(moat_names_check(names, n, 1, err));
    X509_REQ *req = X509_REQ_new();
    GENERAL_NAMES *gens = moat_names_to_general(names, n);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = gens ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
    /* Version 1 is the only one PKCS#10 defines (encoded as 0). */
    int ok = req != NULL && exts != NULL && san != NULL && X509_REQ_set_version(req, 0) == 1 &&
             sk_X509_EXTENSION_push(exts, san) > 0;
    if (ok) {
        san = NULL; /* now owned by exts */
    }
    if (ok && strlen(names[0]) <= CN_MAX) {
        ok = X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                        (const unsigned char *)names[0], -1, -1, 0) == 1;
    }
    ok = ok && X509_REQ_add_extensions(req, exts) == 1 && X509_REQ_set_pubkey(req, key) == 1 &&
         X509_REQ_sign(req, key, digest_for(key)) > 0;
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    if (!ok) {
        X509_REQ_free(req);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot build the signing request for %s", names[0]);
    }
    *out = req;
    return MOAT_RC_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* What a file that holds no CSR holds instead, for the message. */
struct seen {
    int cert, key;
};

/* The DER of the first CSR block, or NULL; *seen notes the other blocks. */
static X509_REQ *read_pem(const unsigned char *data, size_t len, struct seen *seen, int *damaged)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    X509_REQ *req = NULL;
    while (bio != NULL && req == NULL) {
        char *label = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (PEM_read_bio(bio, &label, &header, &der, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
                *damaged = 1;
            }
            ERR_clear_error();
            break;
        }
        if (strcmp(label, "CERTIFICATE REQUEST") == 0 ||
            strcmp(label, "NEW CERTIFICATE REQUEST") == 0) {
            const unsigned char *p = der;
            req = d2i_X509_REQ(NULL, &p, dlen);
            if (req == NULL || p != der + dlen) {
                X509_REQ_free(req);
                req = NULL;
                *damaged = 1;
            }
        } else if (ends_with(label, "CERTIFICATE")) {
            seen->cert++;
        } else if (ends_with(label, "PRIVATE KEY")) {
            seen->key++;
        }
        OPENSSL_free(label);
        OPENSSL_free(header);
        OPENSSL_clear_free(der, dlen > 0 ? (size_t)dlen : 0);
        if (*damaged) {
            break;
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return req;
}

static moat_rc check_req(X509_REQ *req, const char *name, struct moat_err *err)
{
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL) {
        ERR_clear_error();
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds a public key moat cannot read (an unsupported key type?)", name);
    }
    if (X509_REQ_verify(req, pub) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "the signature of %s does not verify: the request was altered after it was "
                  "signed, or signed with a key other than the one it holds; make a new CSR",
                  name);
    }
    return moat_key_check_supported(pub, name, err);
}

moat_rc moat_csr_load_mem(const void *data, size_t len, const char *name, X509_REQ **out,
                          struct moat_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "<memory>";
    }
    if (len > INT_MAX) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s is too big to be a CSR", name);
    }
    struct seen seen = {0};
    int damaged = 0;
    X509_REQ *req = NULL;
    if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        req = read_pem(data, len, &seen, &damaged);
    } else if (len > 0) {
        const unsigned char *p = data;
        req = d2i_X509_REQ(NULL, &p, (long)len);
        if (req != NULL && p != (const unsigned char *)data + len) {
            X509_REQ_free(req);
            req = NULL;
        }
        ERR_clear_error();
    }
    if (req == NULL) {
        moat_err_where(err, "%s", name);
        if (damaged) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "the CSR in %s is damaged (cut short or altered): copy the file again in "
                      "full",
                      name);
        }
        if (seen.cert > 0) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "%s holds a certificate, not a signing request: a CSR is what you send to "
                      "a CA to get a certificate (moat csr new)",
                      name);
        }
        if (seen.key > 0) {
            MOAT_FAIL(err, MOAT_E_CERT,
                      "%s holds a private key, not a signing request: make the CSR from it with "
                      "`moat csr new NAME... --key %s --out FILE`",
                      name, name);
        }
        if (len == 0) {
            MOAT_FAIL(err, MOAT_E_CERT, "%s is empty: it should hold a PEM CSR", name);
        }
        MOAT_FAIL(err, MOAT_E_CERT,
                  "%s holds no signing request: a CSR is PEM (-----BEGIN CERTIFICATE "
                  "REQUEST-----) or DER",
                  name);
    }
    moat_rc rc = check_req(req, name, err);
    if (!moat_ok(rc)) {
        X509_REQ_free(req);
        return rc;
    }
    *out = req;
    return MOAT_RC_OK;
}

moat_rc moat_csr_load(const char *path, X509_REQ **out, struct moat_err *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    *out = NULL;
    MOAT_TRY(moat_fs_read_file(path, MOAT_KEY_FILE_MAX, &data, &len, err));
    moat_rc rc = moat_csr_load_mem(data, len, path, out, err);
    /* The file may hold a private key next to the request. */
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

moat_rc moat_csr_names(X509_REQ *req, char ***names, size_t *n, struct moat_err *err)
{
    *names = NULL;
    *n = 0;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    moat_rc rc = moat_names_from_general(gens, names, n, NULL, err);
    GENERAL_NAMES_free(gens);
    MOAT_TRY(rc);
    if (*n > 0) {
        return MOAT_RC_OK;
    }
    char cn[256];
    int len =
        X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
    ERR_clear_error();
    if (len > 0 && (size_t)len < sizeof(cn) && moat_name_kind_of(cn) != MOAT_NAME_INVALID) {
        (*names)[0] = strdup(cn);
        if ((*names)[0] == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        *n = 1;
        return MOAT_RC_OK;
    }
    moat_names_free(*names, 0);
    *names = NULL;
    MOAT_FAIL(err, MOAT_E_CERT,
              "the CSR asks for no name a certificate can carry (no subjectAltName, and no host "
              "name, address or e-mail in its CN): make it again with the names, e.g. `moat csr "
              "new example.com --key KEY --out FILE`");
}

moat_rc moat_csr_save(const char *path, X509_REQ *req, int force, struct moat_err *err)
{
    struct stat st;
    if (!force && lstat(path, &st) == 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_USAGE, "%s already exists: give another --out, or --force", path);
    }
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509_REQ(bio, req) != 1) {
        BIO_free(bio);
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot encode the signing request");
    }
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    moat_rc rc = moat_fs_write_atomic(path, pem, (size_t)len, 0644, err);
    BIO_free(bio);
    return rc;
}
